"""BudgetCosineDecay: a warm-up then cosine learning rate that also anneals within a time budget."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vidgen")
class BudgetCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then a cosine decay to `final_fraction * peak`.

    The decay's progress is the larger of two fractions: optimizer steps done
    out of `total_steps`, and `time_progress`, the share of the run's time
    budget already spent (set every batch by `vidgen.training.callbacks.TimeBudget`;
    it stays 0 without a budget). A run stopped by its time budget therefore
    ends at the low learning rate instead of wherever the step-sized cosine had
    got to; measured on the quick preset, a 13-minute budget stopped a
    9-epoch cosine after 7 epochs with the rate still at a third of its peak.

    A resumed run restarts its budget (and so its time progress) from zero;
    the step fraction, restored with the optimizer, keeps the rate from
    rising above where the step-sized schedule would be.

    Args:
        peak: learning rate after the warm-up.
        total_steps: optimizer steps of the whole run (warm-up included).
        warmup_steps: steps of the linear warm-up from 0.
        final_fraction: the last learning rate as a share of `peak`.

    Example:

        schedule = BudgetCosineDecay(3e-3, total_steps=900, warmup_steps=50)
        optimizer = keras.optimizers.Adam(schedule)
        schedule.time_progress.assign(0.5)   # half the budget spent
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 final_fraction: float = 0.1):
        if peak <= 0:
            raise ValueError(f"peak must be positive. Received: peak={peak}")
        if total_steps <= 0 or warmup_steps < 0:
            raise ValueError(f"total_steps must be positive and warmup_steps >= 0. Received: "
                             f"total_steps={total_steps}, warmup_steps={warmup_steps}")
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(
                f"final_fraction must be in [0, 1]. Received: final_fraction={final_fraction}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_fraction = float(final_fraction)
        self.time_progress = keras.Variable(0.0, dtype="float32", trainable=False,
                                            name="time_progress")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        decay_steps = float(max(1, self.total_steps - self.warmup_steps))
        by_steps = ops.clip((step - warmup) / decay_steps, 0.0, 1.0)
        progress = ops.maximum(by_steps, ops.clip(self.time_progress, 0.0, 1.0))
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        decayed = self.peak * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
        if not self.warmup_steps:
            return decayed
        return ops.where(step < warmup, self.peak * step / warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "final_fraction": self.final_fraction}
