"""Training callbacks: atomic checkpoints, sample GIFs, time budget, throughput."""

from __future__ import annotations

import logging
import math
import os
import time

import keras
import numpy as np

from vidgen import viz
from vidgen.fileio import read_json, write_json_atomic
from vidgen.run_dir import save_model

log = logging.getLogger(__name__)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Writes the model to `path` whenever `monitor` improves, atomically.

    The best value so far is kept in `state_path`, so a resumed run does not
    overwrite a better model with a worse one.
    """

    def __init__(self, path: str, state_path: str, monitor: str = "val_frame_mse"):
        super().__init__()
        self.path, self.state_path, self.monitor = path, state_path, monitor
        self.best = read_json(state_path, default={"best": math.inf})["best"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        save_model(self.model, self.path)
        write_json_atomic(self.state_path,
                          {"best": self.best, "epoch": epoch + 1, "monitor": self.monitor})
        log.info(f"\nepoch {epoch + 1}: {self.monitor} improved to {value:.2f}, saved {self.path}")


class LastModelCheckpoint(keras.callbacks.Callback):
    """Writes the model after every epoch to `path`, atomically."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.path)


class SampleWriter(keras.callbacks.Callback):
    """After each epoch: a GIF of predictions on fixed validation clips, and TensorBoard images."""

    def __init__(self, context: np.ndarray, target: np.ndarray, samples_dir: str,
                 log_dir: str | None = None):
        super().__init__()
        self.context, self.target = context, target
        self.samples_dir, self.log_dir = samples_dir, log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        prediction = np.asarray(self.model.rollout(self.context, self.target.shape[1]))
        video = viz.sample_video(self.context, self.target, prediction)
        viz.write_gif(os.path.join(self.samples_dir, f"epoch_{epoch + 1:03d}.gif"), video)
        if self.log_dir:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "samples"))
            rows = [np.concatenate([t, p], axis=0) for t, p in zip(self.target, prediction)]
            strip = viz.filmstrip(rows).astype(np.float32)[None] / 255.0
            with self._writer.as_default():
                tf.summary.image("truth_then_prediction", strip, step=epoch + 1)
            self._writer.flush()


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `minutes` of wall time have passed (checked every batch).

    Args:
        minutes: the budget (0: none).
        schedules: `BudgetCosineDecay` schedules told, after every batch, the
            share of the budget spent, so the learning rate anneals within it.
    """

    def __init__(self, minutes: float, schedules=()):
        super().__init__()
        self.seconds = minutes * 60.0
        self.schedules = list(schedules)
        self.start = None
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if not self.seconds:
            return
        spent = (time.perf_counter() - self.start) / self.seconds
        for schedule in self.schedules:
            schedule.time_progress.assign(min(spent, 1.0))
        if spent > 1.0:
            self.model.stop_training = True
            if not self.stopped:
                minutes = self.seconds / 60
                log.info(f"\nTime budget of {minutes:.1f} min reached; finishing the run.")
            self.stopped = True


class Throughput(keras.callbacks.Callback):
    """Measures training sequences per second, excluding each epoch's first batch (tracing)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.seconds = 0.0
        self.batches = 0
        self._t = None
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._first:
            self._first = False
            return
        self.seconds += time.perf_counter() - self._t
        self.batches += 1

    @property
    def sequences_per_second(self) -> float:
        return self.batches * self.batch_size / self.seconds if self.seconds else 0.0
