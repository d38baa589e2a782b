"""Training never saves NaN: a non-finite loss or weight stops the run before any write.

Keras' own `TerminateOnNaN` only sets `stop_training`, after which the
epoch-end callbacks still run, so a NaN model would be backed up and
checkpointed. `FiniteGuard` raises instead, from the batch where the loss
first went non-finite, so no epoch-end writer runs; the backup and
checkpoint writers also refuse non-finite weights themselves
(`check_finite_weights`), so nothing non-finite replaces a good file.
`vidgen train --resume` then continues from the last backup, which is finite.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional

import keras
import numpy as np

from vidgen.errors import VidgenError


class NonFiniteError(VidgenError):
    """A loss, metric or weight became NaN or infinite; nothing non-finite was written."""


def _optimizers(model) -> list:
    found = []
    for name in ("optimizer", "g_optimizer", "d_optimizer"):
        opt = getattr(model, name, None)
        if opt is not None and all(opt is not o for o in found):
            found.append(opt)
    return found


def non_finite_variables(model) -> list[str]:
    """Paths of the model's weights and optimizer variables holding a NaN or infinity."""
    bad = []
    variables = list(model.weights)
    for opt in _optimizers(model):
        variables += list(getattr(opt, "variables", []))
    for v in variables:
        value = np.asarray(keras.ops.convert_to_numpy(v.value))
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad.append(getattr(v, "path", None) or v.name)
    return bad


def check_finite_weights(model, doing: str) -> None:
    """Raises NonFiniteError, naming up to three variables, if any is NaN or infinite."""
    bad = non_finite_variables(model)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteError(
            f"Refusing {doing}: {len(bad)} variable(s) hold NaN or infinity "
            f"({', '.join(bad[:3])}{more}); the file already there was left as it was.")


def last_good_backup(backup_dir: str) -> Optional[tuple[str, int]]:
    """(path, epoch) of the newest backup listed in BACKUP/state.json, or None."""
    try:
        with open(os.path.join(backup_dir, "state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    backups = state.get("backups") or []
    if not backups:
        return None
    return os.path.join(backup_dir, backups[-1]), int(state.get("epoch", 0))


class FiniteGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss or metric, before anything is saved.

    Put it first in the callback list: its `on_epoch_end` checks the weights
    before the backup and checkpoint writers run.

    Args:
        run_dir: the run directory (named in the error's resume command).
        backup_dir: the backup folder, to name the last good backup.
    """

    def __init__(self, run_dir: str, backup_dir: str):
        super().__init__()
        self.run_dir, self.backup_dir = run_dir, backup_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _fail(self, what: str) -> None:
        good = last_good_backup(self.backup_dir)
        where = (f"the last good backup is {good[0]} (epoch {good[1]})" if good else
                 "no backup was written yet")
        raise NonFiniteError(
            f"Training stopped at step {self._step()} (epoch {self._epoch + 1}): {what}; "
            f"nothing from this epoch was saved and {where}. Continue with `vidgen train "
            f"--run-dir {self.run_dir} --resume`, adding --set train.learning_rate=<lower "
            "value> if it happens again.")

    def on_train_batch_end(self, batch, logs=None):
        bad = {}
        for key, value in (logs or {}).items():
            try:
                number = float(np.asarray(keras.ops.convert_to_numpy(value)))
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):
                bad[key] = number
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in bad.items())
            self._fail(f"the training loss went non-finite ({terms})")

    def on_epoch_end(self, epoch, logs=None):
        bad = non_finite_variables(self.model)
        if bad:
            self._fail(f"{len(bad)} variable(s) became NaN or infinite ({', '.join(bad[:3])})")
