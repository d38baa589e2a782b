"""The keras-io tutorial's ConvLSTM, made causal: the baseline `make bench` trains beside ours.

`TutorialConvLSTM` is the architecture of the keras-io example "Next-frame
video prediction with ConvLSTMs" (ConvLSTM2D 64 filters 5x5, BatchNorm,
ConvLSTM2D 64 3x3, BatchNorm, ConvLSTM2D 64 1x1, Conv3D 3x3x3 sigmoid, every
layer at full resolution, ReLU activations in the ConvLSTMs), with one
change: the Conv3D pads time only on the past (two frames before, none
after), so the output at step t depends on frames <= t and predicts frame
t + 1. The tutorial's "same" padding also looks at frame t + 1, which a
next-frame predictor must not see. It is trained as the tutorial trains it:
teacher forcing (frames 0..T-2 in, 1..T-1 out), binary cross-entropy, Adam
1e-3, batch 5.

Prediction is autoregressive, like ours. `rerun_rollout` is what the
tutorial does (run the whole clip again for every new frame, take the last
output); `rollout` computes the same frames streaming, one step per frame
with the recurrent states and the last two feature maps kept (tested equal),
because re-running costs O(T) per frame and would not fit the benchmark's
evaluation budget. Both are measured in the benchmark's cost-vs-length
section.

Train it (what `python -m bench.run` does in a subprocess):

    python -m bench.baselines --data data/digits-quick --run-dir runs/tutorial --budget-min 7

Reference:
    A. Joshi, "Next-Frame Video Prediction with Convolutional LSTMs",
    keras-io examples, 2021; Shi et al., "Convolutional LSTM Network",
    NeurIPS 2015.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Optional

import keras
import tensorflow as tf
from keras import ops

from vidgen.cli_common import run_command
from vidgen.config import apply_overrides
from vidgen.data.pipeline import make_dataset
from vidgen.fileio import write_json_atomic
from vidgen.presets import get_preset
from vidgen.run_dir import RunPaths, prepare_run_dir, save_model
from vidgen.training import callbacks as cb

TUTORIAL_TRAIN = {"train.batch_size": 5, "train.learning_rate": 1e-3,
                  "train.lr_schedule": "constant", "train.warmup_steps": 0,
                  "train.clipnorm": 0.0, "train.bce_weight": 1.0, "train.mse_weight": 0.0,
                  "train.l1_weight": 0.0, "train.ssim_weight": 0.0}
# One epoch without validation, longer than any budget: the time budget ends training
# (and the throughput, which leaves out each epoch's first batch, leaves out only the trace).
EPOCH_STEPS = 1_000_000


class _StepLog(keras.callbacks.Callback):
    """Prints step, loss and elapsed time every `seconds`, and at the end (fit stays quiet)."""

    def __init__(self, seconds: float = 60.0):
        super().__init__()
        self.seconds = seconds
        self.start = self.last = None

    def on_train_begin(self, logs=None):
        self.start = self.last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last >= self.seconds:
            self.last = now
            self._print(batch + 1, logs, now)

    def on_train_end(self, logs=None):
        self._print(int(self.model.optimizer.iterations.numpy()), logs, time.perf_counter())

    def _print(self, step, logs, now):
        print(f"step {step}: loss {float((logs or {}).get('loss', float('nan'))):.4f}, "
              f"{now - self.start:.0f} s", flush=True)


@keras.saving.register_keras_serializable(package="vidgen")
class TutorialConvLSTM(keras.Model):
    """Three full-resolution ConvLSTM2D layers and a causal Conv3D head (the keras-io tutorial).

    Args:
        frame_size: height and width of the square frames.
        channels: 1 or 3.
        filters: channels of every ConvLSTM2D layer (64 in the tutorial).
        kernel_sizes: kernel of each ConvLSTM2D layer, one per layer ((5, 3, 1)
            in the tutorial); BatchNormalization follows every layer but the last.
        horizon: frames predicted by `predict_future`-style calls (`rollout`
            takes any horizon).

    Example:

        model = TutorialConvLSTM(frame_size=64, channels=1)
        next_frames = model(clip[:, :-1])        # (batch, T - 1, 64, 64, 1): frame t + 1 at t
        future = model.rollout(clip[:, :10], 10)
    """

    def __init__(self, frame_size: int = 64, channels: int = 1, filters: int = 64,
                 kernel_sizes=(5, 3, 1), horizon: int = 10, **kwargs):
        super().__init__(**kwargs)
        if frame_size <= 0:
            raise ValueError(f"frame_size must be positive. Received: frame_size={frame_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
        if filters <= 0:
            raise ValueError(f"filters must be positive. Received: filters={filters}")
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or min(kernel_sizes) <= 0 or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError("kernel_sizes must be positive odd integers, one per layer. "
                             f"Received: kernel_sizes={kernel_sizes}")
        if horizon <= 0:
            raise ValueError(f"horizon must be positive. Received: horizon={horizon}")
        self.frame_size = frame_size
        self.channels = channels
        self.filters = filters
        self.kernel_sizes = kernel_sizes
        self.horizon = horizon
        self.recurrent = [
            keras.layers.ConvLSTM2D(filters, k, padding="same", return_sequences=True,
                                    activation="relu", name=f"conv_lstm_{i}")
            for i, k in enumerate(kernel_sizes)]
        self.norms = [keras.layers.BatchNormalization(name=f"norm_{i}")
                      for i in range(len(kernel_sizes) - 1)]
        # "valid" after padding by hand: two past frames in time, one pixel in space.
        self.head = keras.layers.Conv3D(channels, 3, activation="sigmoid", padding="valid",
                                        name="head")
        self.build((None, None, frame_size, frame_size, channels))

    def build(self, input_shape):
        s, f = self.frame_size, self.filters
        shape = (None, None, s, s, self.channels)
        for i, layer in enumerate(self.recurrent):
            layer.build(shape)
            shape = (None, None, s, s, f)
            if i < len(self.norms):
                self.norms[i].build(shape)
        self.head.build((None, None, s + 2, s + 2, f))
        super().build(input_shape)

    # Attributes vidgen's evaluation and FLOP profiler read from a predictor.
    latent_dim = 0
    noise_shape = None

    def _features(self, frames, training=False):
        x = frames
        for i, layer in enumerate(self.recurrent):
            x = layer(x, training=training)
            if i < len(self.norms):
                x = self.norms[i](x, training=training)
        return x

    def _head(self, features):
        """Causal Conv3D: output t sees features t-2..t (zeros before the clip starts)."""
        return self.head(ops.pad(features, [[0, 0], [2, 0], [1, 1], [1, 1], [0, 0]]))

    def call(self, frames, training=False):
        """frames (batch, T, H, W, C) -> (batch, T, H, W, C): output t predicts frame t + 1."""
        return self._head(self._features(frames, training=training))

    # ----------------------------------------------------------------- streaming

    def initial_states(self, batch_size) -> list:
        """(h, c) of every ConvLSTM layer, then the head's last two feature maps, all zeros."""
        shape = (batch_size, self.frame_size, self.frame_size, self.filters)
        return [ops.zeros(shape) for _ in range(2 * len(self.recurrent) + 2)]

    def step(self, frame, states):
        """One frame in, the prediction of the next frame out (inference mode).

        Args:
            frame: (batch, H, W, C).
            states: `initial_states()` or the states the previous call returned.

        Returns:
            (next frame (batch, H, W, C), new states).
        """
        x, new_states = frame, []
        for i, layer in enumerate(self.recurrent):
            x, (h, c) = layer.cell(x, states[2 * i:2 * i + 2], training=False)
            new_states += [h, c]
            if i < len(self.norms):
                # The layer was built on sequences: give it a sequence of one frame.
                x = self.norms[i](x[:, None], training=False)[:, 0]
        window = ops.stack([states[-2], states[-1], x], axis=1)
        return self._head(window)[:, -1], new_states + [states[-1], x]

    def rollout(self, context, horizon: int, num_samples=None, seed=None):
        """Predicts `horizon` frames after `context`, feeding predictions back, streaming.

        The same frames as `rerun_rollout` at one step per frame. `num_samples`
        and `seed` are accepted for the predictor interface; the model is
        deterministic and must be called without them.
        """
        if num_samples is not None:
            raise ValueError("TutorialConvLSTM is deterministic: num_samples is not supported.")
        return self.unrolled_rollout(context, horizon)

    def unrolled_rollout(self, context, horizon: int, noise=None):
        """`rollout` as a static Python loop over the context length (for tf.function, FLOPs)."""
        horizon = int(horizon)
        if horizon <= 0:
            raise ValueError(f"horizon must be positive. Received: horizon={horizon}")
        states = self.initial_states(ops.shape(context)[0])
        for t in range(context.shape[1]):
            frame, states = self.step(context[:, t], states)
        frames = [frame]
        for _ in range(horizon - 1):
            frame, states = self.step(frame, states)
            frames.append(frame)
        return ops.stack(frames, axis=1)

    def predict_next(self, frames):
        """The tutorial's way to the next frame: run the whole clip, keep the last output."""
        return self(frames, training=False)[:, -1]

    def rerun_rollout(self, context, horizon: int):
        """The tutorial's autoregressive loop: the whole clip again for every new frame."""
        frames, out = context, []
        for _ in range(int(horizon)):
            frame = self.predict_next(frames)
            out.append(frame)
            frames = ops.concatenate([frames, frame[:, None]], axis=1)
        return ops.stack(out, axis=1)

    def get_config(self):
        return {**super().get_config(), "frame_size": self.frame_size,
                "channels": self.channels, "filters": self.filters,
                "kernel_sizes": list(self.kernel_sizes), "horizon": self.horizon}


def teacher_forcing(context, target):
    """(context, target) batches -> (frames 0..T-2, frames 1..T-1): the tutorial's pairs."""
    clip = ops.concatenate([context, target], axis=1)
    return clip[:, :-1], clip[:, 1:]


def tutorial_config(data: str, overrides=(), budget_minutes: float = 0.0,
                    max_steps: int = 0):
    """The vidgen Config of a tutorial run: the quick preset's data, the tutorial's training."""
    steps = [f"{k}={v}" for k, v in TUTORIAL_TRAIN.items()]
    if max_steps:
        steps += ["train.epochs=1", f"train.steps_per_epoch={max_steps}"]
    else:
        steps += ["train.epochs=1", f"train.steps_per_epoch={EPOCH_STEPS}"]
    return apply_overrides(get_preset("quick"), [f"data.source={data}", *overrides, *steps,
                                                f"train.time_budget_minutes={budget_minutes}"])


def train_tutorial(cfg, run_dir: str) -> dict[str, Any]:
    """Fits a TutorialConvLSTM for `cfg.train`'s budget; writes config.json, model.keras,
    training.json (the keys `vidgen train` writes) into `run_dir`.
    """
    cfg = prepare_run_dir(cfg, run_dir, resume=False)
    t, d = cfg.train, cfg.data
    keras.utils.set_random_seed(t.seed)
    model = TutorialConvLSTM(d.frame_size, d.channels, horizon=d.horizon,
                             name="tutorial_conv_lstm")
    model.compile(optimizer=keras.optimizers.Adam(t.learning_rate),
                  loss=keras.losses.BinaryCrossentropy())
    ds = make_dataset(cfg, "train").map(teacher_forcing, num_parallel_calls=tf.data.AUTOTUNE)
    budget = cb.TimeBudget(t.time_budget_minutes)
    throughput = cb.Throughput(t.batch_size)
    print(f"Training the tutorial ConvLSTM ({model.count_params():,} parameters) on "
          f"{d.source!r}, batch {t.batch_size}, budget {t.time_budget_minutes:g} min; "
          f"run directory {run_dir}", flush=True)
    start = time.perf_counter()
    history = model.fit(ds, epochs=t.epochs, steps_per_epoch=t.steps_per_epoch,
                        callbacks=[budget, throughput, _StepLog()], shuffle=False,
                        verbose=0)
    seconds = time.perf_counter() - start
    paths = RunPaths(run_dir)
    save_model(model, paths.model)
    losses = history.history.get("loss", [])
    summary = {
        "epochs_run": len(losses),
        "steps": int(model.optimizer.iterations.numpy()),
        "train_seconds": round(seconds, 1),
        "sequences_per_second": round(throughput.sequences_per_second, 3),
        "stopped_by_time_budget": budget.stopped,
        "interrupted": False,
        "parameters": int(model.count_params()),
        "total_train_seconds": round(seconds, 1),
        "mean_training_loss": float(losses[-1]) if losses else None,
    }
    write_json_atomic(paths.training, summary)
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared dataset (or another source)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--budget-min", type=float, default=7.0,
                        help="wall-clock training budget in minutes")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop after this many steps as well (0: the budget alone)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="data.* overrides, as for `vidgen train`")
    args = parser.parse_args(argv)

    def run(args):
        cfg = tutorial_config(args.data, args.overrides, args.budget_min, args.max_steps)
        print(train_tutorial(cfg, args.run_dir))
        return 0

    args.func = run
    return run_command("bench.baselines", args)


if __name__ == "__main__":
    sys.exit(main())
