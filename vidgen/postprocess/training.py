"""Training the learned denoiser of a run on the run's own data.

Two kinds of pairs, both from the run's *training* split (validation clips
score it; the test split is never seen):

- `prediction`: the run's model sees the context and generates the horizon;
  each generated frame (with its generated neighbours) is paired with the
  true frame. This makes the denoiser a refiner of the model's own defects,
  above all the faint grey halo it leaves on black backgrounds.
- `noise`: true frames plus Gaussian noise (sigma uniform in [0, max_sigma]
  per frame, clipped to [0, 1]) paired with the clean frames: a denoiser in
  the usual sense.

Example:

    vidgen postprocess train-denoiser runs/quick --minutes 4
    # -> runs/quick/denoiser.keras and runs/quick/denoiser.json
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from vidgen import fileio
from vidgen import metrics as M
from vidgen.config import apply_overrides
from vidgen.data.pipeline import make_dataset
from vidgen.errors import ArgumentError, VidgenError
from vidgen.fileio import write_json_atomic
from vidgen.postprocess.denoise import learned
from vidgen.postprocess.residual_denoiser import ResidualDenoiser
from vidgen.run_dir import RunPaths, load_run, save_model

PAIRS = ("prediction", "noise", "both")
LOSSES = {"l1": "mean_absolute_error", "l2": "mean_squared_error"}


class _ProgressBar(keras.callbacks.Callback):
    """A tqdm bar over training steps, showing the loss."""

    def __init__(self, steps: int, enabled: bool):
        super().__init__()
        self.bar = tqdm(total=steps, desc="train denoiser", unit="step", disable=not enabled,
                        leave=False)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

    def on_train_end(self, logs=None):
        self.bar.close()


class _Budget(keras.callbacks.Callback):
    """Stops after `seconds` of training (checked every step); records the steps taken."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.steps, self.stopped = seconds, 0, False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.seconds and time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped = True


def collect_clips(cfg, rollout, split: str, clips: int, batch_size: int = 32,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The first `clips` clips of a split and the run's predictions of their horizon.

    Args:
        cfg: the run's config (data source, context, horizon).
        rollout: context (B, context, H, W, C) -> prediction (B, horizon, H, W, C).
        split: "train" or "val".
        clips: how many clips.
        batch_size: clips per rollout call.
        progress: show a progress bar.

    Returns:
        (true clips (N, context + horizon, H, W, C), predictions (N, horizon, H, W, C)).
    """
    ds = make_dataset(cfg, split, batch_size=batch_size, shuffle=False, repeat=False)
    truths, preds, n = [], [], 0
    with tqdm(total=clips, desc=f"predict {split} clips", unit="clip", disable=not progress,
              leave=False) as bar:
        for context, target in ds:
            context, target = np.asarray(context), np.asarray(target)
            take = min(len(context), clips - n)
            context, target = context[:take], target[:take]
            preds.append(np.asarray(rollout(context)))
            truths.append(np.concatenate([context, target], axis=1))
            n += take
            bar.update(take)
            if n >= clips:
                break
    if not n:
        raise VidgenError(f"The {split} split of {cfg.data.source!r} has no clips to train the "
                          "denoiser on.")
    return np.concatenate(truths), np.concatenate(preds)


def _noisy(clean: np.ndarray, max_sigma: float, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.0, max_sigma, (len(clean),) + (1,) * (clean.ndim - 1))
    return np.clip(clean + rng.normal(0.0, 1.0, clean.shape) * sigma, 0.0, 1.0
                   ).astype(np.float32)


def batches(truths: np.ndarray, preds: np.ndarray, context: int, pairs: str, window: int,
            batch_size: int, patch: int, max_sigma: float, seed: int):
    """Endless (inputs, targets) batches of random patches; half of each kind for "both"."""
    rng = np.random.default_rng(seed)
    n, length, size = truths.shape[0], truths.shape[1], truths.shape[2]
    horizon = preds.shape[1]
    half = window // 2
    patch = min(patch, size)
    offsets = np.arange(-half, half + 1)
    counts = ({"prediction": batch_size - batch_size // 2, "noise": batch_size // 2}
              if pairs == "both" else {pairs: batch_size})
    while True:
        xs, ys = [], []
        for name, count in counts.items():
            clip = rng.integers(0, n, count)
            if name == "prediction":
                t = rng.integers(0, horizon, count)
                frames = np.clip(t[:, None] + offsets, 0, horizon - 1)
                x = preds[clip[:, None], frames]               # (B, window, H, W, C)
                y = truths[clip, context + t]
            else:
                t = rng.integers(0, length, count)
                frames = np.clip(t[:, None] + offsets, 0, length - 1)
                y = truths[clip, t]
                x = _noisy(truths[clip[:, None], frames], max_sigma, rng)
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        r, c = rng.integers(0, size - patch + 1, 2)
        x = x[:, :, r:r + patch, c:c + patch]
        y = y[:, r:r + patch, c:c + patch]
        yield _stack(x), y.astype(np.float32)


def _stack(x: np.ndarray) -> np.ndarray:
    """(B, window, H, W, C) -> (B, H, W, window * C), frames in order (the model's layout)."""
    b, w, h, wd, c = x.shape
    return np.ascontiguousarray(np.moveaxis(x, 1, -2).reshape(b, h, wd, w * c))


def score(model: ResidualDenoiser, truths: np.ndarray, preds: np.ndarray, context: int
          ) -> dict[str, float]:
    """PSNR / SSIM of the generated frames before and after the denoiser."""
    target = truths[:, context:]
    cleaned = np.stack([learned(p, model) for p in preds])
    return {"psnr_before": float(M.psnr_frames(preds, target).mean()),
            "psnr_after": float(M.psnr_frames(cleaned, target).mean()),
            "ssim_before": float(M.ssim_frames(preds, target).mean()),
            "ssim_after": float(M.ssim_frames(cleaned, target).mean())}


def train_denoiser(run_dir: str, out: Optional[str] = None, data: Optional[str] = None,
                   pairs: str = "both", clips: int = 512, steps: int = 4000,
                   minutes: float = 4.0, batch_size: int = 16, patch: int = 32,
                   window: int = 3, filters: int = 32, depth: int = 5,
                   learning_rate: float = 1e-3, loss: str = "l2", max_sigma: float = 0.2,
                   val_clips: int = 32,
                   seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Trains a `ResidualDenoiser` for a run and saves it (by default RUN/denoiser.keras).

    Args:
        run_dir: a run directory with config.json and model.keras.
        out: where to write the .keras file (default RUN/denoiser.keras); a
            JSON summary is written beside it (same name, .json).
        data: another source for the pairs (same frame size and channels).
        pairs: "prediction", "noise" or "both" (see the module docstring).
        clips: training clips to draw pairs from.
        steps: at most this many optimiser steps.
        minutes: at most this much training time (0: no limit).
        batch_size: patches per step.
        patch: side of the random square patches trained on.
        window, filters, depth: the `ResidualDenoiser`'s hyper-parameters.
        learning_rate: Adam's step size.
        loss: "l2" (the conditional mean: raises PSNR and SSIM of the quick
            model's predictions a little) or "l1" (the conditional median:
            drives faint or uncertain pixels on black to exactly zero; on the
            quick model it erases the blurred digits of later steps, which
            SSIM rewards much and PSNR punishes).
        max_sigma: largest noise standard deviation of the noise pairs.
        val_clips: validation clips scored before and after.
        seed: seed of the weights and of the batches.
        progress: show progress bars.

    Returns:
        The summary written beside the model: settings, steps, seconds, mean
        training loss, and the PSNR / SSIM of validation clips' generated
        frames before and after.
    """
    if loss not in LOSSES:
        raise ArgumentError(f"{{loss}} must be one of {', '.join(LOSSES)}. Received: {loss!r}",
                            "loss")
    if pairs not in PAIRS:
        raise ArgumentError(f"{{pairs}} must be one of {', '.join(PAIRS)}. Received: {pairs!r}",
                            "pairs")
    for name, value in (("clips", clips), ("steps", steps), ("batch_size", batch_size),
                        ("patch", patch)):
        if value <= 0:
            raise ArgumentError(f"{{{name}}} must be positive. Received: {value}", name)
    if minutes < 0:
        raise ArgumentError(f"{{minutes}} must be >= 0. Received: {minutes}", "minutes")
    out = out or RunPaths(run_dir).denoiser
    if not out.endswith(".keras"):
        raise ArgumentError(f"{{out}} must end in .keras. Received: {out!r}", "out")
    # Into the run folder: one writer at a time, as training (`fileio.exclusive_lock`).
    into_run = os.path.isdir(run_dir) and fileio.inside(os.path.dirname(os.path.abspath(out)),
                                                         run_dir)
    lock = (fileio.exclusive_lock(run_dir, flag="--out", what="vidgen postprocess "
                                  "train-denoiser", instead="pass --out FILE.keras to write "
                                  "the denoiser elsewhere")
            if into_run else contextlib.nullcontext())
    with lock:
        return _train_denoiser(run_dir, out, data, pairs, clips, steps, minutes, batch_size,
                               patch, window, filters, depth, learning_rate, loss, max_sigma,
                               val_clips, seed, progress)


def _train_denoiser(run_dir: str, out: str, data: Optional[str], pairs: str, clips: int,
                    steps: int, minutes: float, batch_size: int, patch: int, window: int,
                    filters: int, depth: int, learning_rate: float, loss: str,
                    max_sigma: float, val_clips: int, seed: int,
                    progress: bool) -> dict[str, Any]:
    """`train_denoiser` after its arguments are checked, holding the lock it needs."""
    cfg, predictor = load_run(run_dir)
    if data:
        cfg = apply_overrides(cfg, [f"data.source={data}"])
    context = cfg.data.context
    keras.utils.set_random_seed(seed)
    try:
        model = ResidualDenoiser(channels=cfg.data.channels, window=window, filters=filters,
                                 depth=depth, name="residual_denoiser")
    except ValueError as e:
        raise VidgenError(f"Bad denoiser setting: {e}") from None
    horizon = cfg.data.horizon
    rollout = tf.function(lambda x: predictor.rollout(x, horizon), reduce_retracing=True)
    truths, preds = collect_clips(cfg, rollout, "train", clips, progress=progress)
    val_truths, val_preds = (collect_clips(cfg, rollout, "val", val_clips, progress=progress)
                             if val_clips else (None, None))

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSSES[loss])
    dataset = _dataset(truths, preds, context, pairs, window, batch_size, patch, max_sigma,
                       seed, cfg.data.channels)
    budget = _Budget(minutes * 60.0)
    start = time.perf_counter()
    history = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                        callbacks=[budget, _ProgressBar(steps, progress)])
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {
        "run": run_dir, "data": cfg.data.source, "pairs": pairs, "train_clips": len(truths),
        "steps": budget.steps, "stopped_by_time_budget": budget.stopped,
        "train_seconds": round(seconds, 1), "mean_train_loss": float(history.history["loss"][-1]),
        "loss": loss, "batch_size": batch_size, "patch": patch, "learning_rate": learning_rate,
        "max_sigma": max_sigma, "parameters": int(model.count_params()),
        "model": {"window": window, "filters": filters, "depth": depth},
    }
    if val_clips:
        summary["validation"] = {"clips": len(val_truths),
                                 **score(model, val_truths, val_preds, context)}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_model(model, out)
    write_json_atomic(out[:-len(".keras")] + ".json", summary)
    return summary


def _dataset(truths, preds, context, pairs, window, batch_size, patch, max_sigma, seed,
             channels):
    size = min(patch, truths.shape[2])
    signature = (tf.TensorSpec((batch_size, size, size, window * channels), tf.float32),
                 tf.TensorSpec((batch_size, size, size, channels), tf.float32))
    return tf.data.Dataset.from_generator(
        lambda: batches(truths, preds, context, pairs, window, batch_size, patch, max_sigma,
                        seed),
        output_signature=signature).prefetch(2)


def load_denoiser(run_dir: str, path: Optional[str] = None) -> ResidualDenoiser:
    """Loads RUN/denoiser.keras (or `path`), with a clear error when it is absent."""
    path = path or RunPaths(run_dir).denoiser
    if not os.path.isfile(path):
        raise VidgenError(
            f"No learned denoiser at {path!r}: train one with `vidgen postprocess "
            f"train-denoiser {run_dir}` (a few minutes), or choose --denoise nlmeans.")
    try:
        model = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError) as e:
        raise VidgenError(f"Denoiser file {path!r} could not be loaded: {e}") from None
    if not isinstance(model, ResidualDenoiser):
        raise VidgenError(f"{path!r} holds a {type(model).__name__}, not a ResidualDenoiser.")
    return model
