"""Training never saves NaN: a non-finite loss or weight stops the run before any write.

Keras' own `TerminateOnNaN` only sets `stop_training`, after which the
epoch-end callbacks still run, so a NaN model would be backed up and
checkpointed. `FiniteGuard` raises instead, from the batch where the loss
first went non-finite, so no epoch-end writer runs; the backup and
checkpoint writers also refuse non-finite weights themselves
(`check_finite_weights`), so nothing non-finite replaces a good file.
`vidgen train --resume` then continues from the last backup, which is finite.

The error is one sentence: the step, what went non-finite (the logged loss
term, or the terms a logged `loss` adds up, `loss_terms`, or the variables),
the last good backup and the command that continues from it. Multi-worker
training runs the same checks on every worker, collectively
(`vidgen.training.multiworker`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
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


def _describe_backup(backup_dir: str) -> Optional[str]:
    good = last_good_backup(backup_dir)
    return f"{good[0]} (epoch {good[1]})" if good else None


# Logged values that are terms of the training loss (a VideoGAN logs its terms; a
# VideoPredictor logs only their sum, `loss`, and `kl`).
_TERM_KEYS = ("reconstruction", "kl", "g_adversarial", "feature_matching", "d_loss")


def loss_terms(model) -> list[str]:
    """The names of the terms the training loss of `model` adds up (as weighted there).

    For a VideoPredictor: the ReconstructionLoss weights that are on (mse,
    l1, bce, ssim), the context frames' next-frame loss and the latent KL;
    a VideoGAN adds its adversarial and feature-matching terms. Used to name
    what a non-finite `loss` is made of when its parts are not logged.
    """
    generator = getattr(model, "generator", model)
    reconstruction = getattr(model, "reconstruction_loss", None) or getattr(model, "loss", None)
    terms = [name for name in ("mse", "l1", "bce", "ssim")
             if getattr(reconstruction, f"{name}_weight", 0)]
    if not terms and reconstruction is not None:
        terms = [getattr(reconstruction, "name", None) or type(reconstruction).__name__]
    if getattr(generator, "context_loss_weight", 0):
        terms.append("context frames")
    if getattr(generator, "latent_dim", 0) and getattr(generator, "kl_weight", 0):
        terms.append("kl")
    if getattr(model, "adversarial_weight", 0):
        terms.append("g_adversarial")
    if getattr(model, "feature_matching_weight", 0):
        terms.append("feature_matching")
    return terms


def non_finite_logs(logs: Optional[dict]) -> dict[str, float]:
    """The logged numbers of `logs` that are NaN or infinite, by key."""
    bad = {}
    for key, value in (logs or {}).items():
        try:
            number = float(np.asarray(keras.ops.convert_to_numpy(value)))
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad[key] = number
    return bad


class FiniteGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss or metric, before anything is saved.

    Put it first in the callback list: its `on_epoch_end` checks the weights
    before the backup and checkpoint writers run. The error is one sentence:
    the step, the term that went non-finite, the last good backup, and the
    command that continues from it.

    Args:
        run_dir: the run directory (named in the error's resume command).
        backup_dir: the backup folder, to name the last good backup.
        learning_rate: the run's learning rate; the command suggests a tenth of it.
        last_good: instead of `backup_dir`, a function naming the last good
            saved state (None when there is none yet), e.g. a checkpoint.
        where: how the command is run, added to its description ("on every
            worker" for a multi-worker run).

    Example:

        guard = FiniteGuard("runs/quick", "runs/quick/backup", learning_rate=1e-3)
        model.fit(dataset, callbacks=[guard, AtomicBackup("runs/quick/backup")])
    """

    def __init__(self, run_dir: str, backup_dir: Optional[str] = None,
                 learning_rate: Optional[float] = None,
                 last_good: Optional[Callable[[], Optional[str]]] = None, where: str = ""):
        super().__init__()
        self.run_dir, self.backup_dir = run_dir, backup_dir
        self.learning_rate = learning_rate
        self.last_good = last_good or (lambda: _describe_backup(backup_dir)
                                       if backup_dir else None)
        self.where = where
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _resume_command(self) -> str:
        lower = (f"{self.learning_rate / 10:g}" if self.learning_rate else "<lower value>")
        return (f"vidgen train --run-dir {self.run_dir} --resume --set "
                f"train.learning_rate={lower}")

    def fail(self, what: str) -> None:
        """Raises the NonFiniteError of this run: `what` names what went non-finite."""
        good = self.last_good()
        where = f" {self.where}" if self.where else ""
        if good:
            then = (f"the last good backup is {good}, from which `{self._resume_command()}`"
                    f"{where} continues")
        else:
            then = (f"no backup was written yet, so `{self._resume_command()}`{where} "
                    "starts the run again")
        raise NonFiniteError(
            f"Training stopped at step {self._step()} (epoch {self._epoch + 1}) because "
            f"{what}, before anything of this epoch was saved; {then}.")

    def describe_logs(self, bad: dict[str, float], on: str = "") -> str:
        """Which loss term went non-finite, from the non-finite logged values `bad`.

        `on` says where ("on 1 of 2 replica(s)"), for a distributed step.
        """
        values = ", ".join(f"{k}={v}" for k, v in bad.items())
        on = f" {on}" if on else ""
        terms = [k for k in _TERM_KEYS if k in bad]
        if terms:
            named = (f"term {terms[0]}" if len(terms) == 1 else
                     f"terms {', '.join(terms[:-1])} and {terms[-1]}")
            return f"the loss {named} went non-finite{on} ({values})"
        if "loss" in bad:
            parts = loss_terms(self.model)
            made_of = f" (terms: {', '.join(parts)})" if parts else ""
            return f"the training loss{made_of} went non-finite{on} ({values})"
        if bad:
            return f"a training metric went non-finite{on} ({values})"
        return f"the training loss or a metric went non-finite{on}"

    def on_train_batch_end(self, batch, logs=None):
        bad = non_finite_logs(logs)
        if bad:
            self.fail(self.describe_logs(bad))

    def describe_weights(self, bad: list[str]) -> str:
        """`bad` variable paths, as the reason in the error."""
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        return (f"{len(bad)} variable(s) became NaN or infinite ({', '.join(bad[:3])}{more}) "
                "while the loss was finite")

    def on_epoch_end(self, epoch, logs=None):
        bad = non_finite_variables(self.model)
        if bad:
            self.fail(self.describe_weights(bad))
