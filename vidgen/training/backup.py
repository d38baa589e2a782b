"""Crash-safe training backups: resume after a kill from the last finished epoch.

Keras' BackupAndRestore writes its weights file in place (a kill while
writing leaves a truncated file) and, when the latest file cannot be read,
falls back only on OSError. This callback writes every backup under a
temporary name and renames it into place, records it in `state.json`
(itself replaced atomically: the commit point), keeps the previous backup,
and on restart loads the latest one that reads, reporting any it skips. If
backups exist but none can be read it stops with an error instead of
silently training from scratch.

What a backup holds: the model's weights and both optimizers' states
(iterations, moments; `save_weights` includes them), the epoch, and the
state of every `keras.random.SeedGenerator` of the model (not part of
`save_weights`), so scheduled sampling, frame choices and latent noise
continue where they were. A constant learning rate is an optimizer variable
too, so the backup holds it; the restored run keeps the rate it was
configured with instead (`keep_configured_learning_rates`): a resumed run
with `--set train.learning_rate=...` trains at the new rate.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from collections.abc import Iterator
from typing import Optional

import keras
import numpy as np

from vidgen import fileio
from vidgen.errors import VidgenError
from vidgen.fileio import write_json_atomic
from vidgen.training.finite import check_finite_weights

log = logging.getLogger(__name__)

STATE = "state.json"


def seed_generators(model) -> dict[str, keras.random.SeedGenerator]:
    """Every SeedGenerator reachable from the model and its generator, by attribute path."""
    found = {}
    for prefix, obj in (("model", model), ("generator", getattr(model, "generator", None))):
        generator = getattr(obj, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator):
            found[prefix] = generator
    return found


def _constant_rate_optimizers(model) -> list:
    """The optimizers of `model` whose learning rate is a variable (not a schedule).

    A LossScaleOptimizer is unwrapped to the optimizer that holds the rate.
    """
    found = []
    for name in ("optimizer", "g_optimizer", "d_optimizer"):
        optimizer = getattr(model, name, None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        rate = getattr(optimizer, "_learning_rate", None)
        if isinstance(rate, keras.Variable) and all(optimizer is not o for o in found):
            found.append(optimizer)
    return found


@contextlib.contextmanager
def keep_configured_learning_rates(model) -> Iterator[None]:
    """Restores inside the `with`; the constant learning rates stay those of the config.

    Keras saves a constant learning rate as an optimizer variable, so
    restoring a backup or checkpoint would bring back the rate the run was
    saved with and silently ignore a resumed run's new `train.learning_rate`.
    A scheduled rate is computed from the config and the restored step count,
    so it needs nothing here.
    """
    optimizers = _constant_rate_optimizers(model)
    configured = [float(keras.ops.convert_to_numpy(o._learning_rate)) for o in optimizers]
    try:
        yield
    finally:
        for optimizer, rate in zip(optimizers, configured):
            restored = float(keras.ops.convert_to_numpy(optimizer._learning_rate))
            if not np.isclose(restored, rate, rtol=1e-6, atol=0.0):
                log.info(f"learning rate {rate:g} (configured) replaces the {restored:g} of "
                         "the restored state.")
            optimizer._learning_rate.assign(rate)


class AtomicBackup(keras.callbacks.Callback):
    """Backs up model, optimizers, epoch and RNG state after every epoch, atomically.

    Args:
        directory: the run's backup folder.
        keep: backups kept (the latest and the previous ones).
    """

    def __init__(self, directory: str, keep: int = 2):
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep must be >= 1. Received: {keep}")
        self.directory = directory
        self.keep = keep
        self.restored_epoch: Optional[int] = None

    # ---------------------------------------------------------------- saving

    def _weights_path(self, epoch: int) -> str:
        return os.path.join(self.directory, f"epoch-{epoch:04d}.weights.h5")

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        path = self._weights_path(epoch + 1)
        check_finite_weights(self.model, f"backing up epoch {epoch + 1}")
        with fileio.atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        backups = self._listed() + [os.path.basename(path)]
        backups = list(dict.fromkeys(backups))[-self.keep:]
        write_json_atomic(os.path.join(self.directory, STATE), {
            "epoch": epoch + 1,
            "backups": backups,
            "seeds": {name: np.asarray(g.state.value).tolist()
                      for name, g in seed_generators(self.model).items()},
        })
        for old in glob.glob(os.path.join(self.directory, "epoch-*.weights.h5")):
            if os.path.basename(old) not in backups:
                os.remove(old)

    def _listed(self) -> list[str]:
        state = self._read_state()
        return list(state.get("backups", [])) if state else []

    def _read_state(self) -> Optional[dict]:
        path = os.path.join(self.directory, STATE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise VidgenError(f"Backup state {path!r} is unreadable ({e}); it is written "
                              "atomically, so the file was changed by hand or the disk is "
                              "failing. Delete the backup folder to start over.") from None

    # ------------------------------------------------------------- restoring

    def on_train_begin(self, logs=None):
        state = self._read_state()
        if state is None:
            if glob.glob(os.path.join(self.directory, "epoch-*.weights.h5")):
                raise VidgenError(f"{self.directory!r} holds backups but no {STATE}; refusing "
                                  "to guess which is complete. Delete the folder to start over.")
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            # Slots must exist for their saved values to load (else Keras skips them).
            optimizer.build(self.model.trainable_variables)
        # A resumed run trains at its configured rate, not the one saved with the backup.
        with keep_configured_learning_rates(self.model):
            self._load_latest(state)

    def _load_latest(self, state: dict) -> None:
        """Loads the newest listed backup that reads; VidgenError when none does."""
        errors = []
        for name in reversed(state.get("backups", [])):
            path = os.path.join(self.directory, name)
            try:
                self.model.load_weights(path)
            except Exception as e:  # h5py and Keras raise many types for a damaged file
                errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
                log.warning(f"backup {path} could not be loaded ({errors[-1]}); trying the "
                        "previous one.")
                continue
            epoch = int(name.split("-")[1].split(".")[0])
            if epoch == state["epoch"]:
                for key, value in state.get("seeds", {}).items():
                    generator = seed_generators(self.model).get(key)
                    if generator is not None:
                        generator.state.assign(np.asarray(value, generator.state.dtype))
            self.model._initial_epoch = epoch
            self.restored_epoch = epoch
            log.info(f"resumed from {path} (epoch {epoch}).")
            return
        raise VidgenError(f"No backup in {self.directory!r} could be loaded ({'; '.join(errors)})."
                          " Not restarting from scratch silently: delete the folder to start "
                          "over.")
