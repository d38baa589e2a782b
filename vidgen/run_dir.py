"""The run directory: where each part of a run lives, how it is loaded, how a model is saved.

`vidgen train --run-dir RUN` writes, and every other command reads:

    RUN/config.json          the resolved config; always describes RUN/model.keras
    RUN/model.keras          the best model by validation rollout loss
    RUN/training.json        the training summary (time, throughput, output floor)
    RUN/checkpoints/         last.keras (after every epoch), best.json, interrupted.keras
    RUN/backup/              the last two epochs' weights, optimizers and RNG state (--resume)
    RUN/logs/                TensorBoard events and history.csv
    RUN/samples/*.gif        predictions on fixed validation clips, per epoch
    RUN/metrics.json, plots/ written by `vidgen evaluate` (and at the end of training)

Example:

    from vidgen.run_dir import RunPaths, load_run

    cfg, predictor = load_run("runs/quick")
    print(RunPaths("runs/quick").metrics)       # runs/quick/metrics.json
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import keras

from vidgen import fileio
from vidgen.config import Config
from vidgen.errors import VidgenError
from vidgen.models import VideoGAN, VideoPredictor
from vidgen.training.finite import check_finite_weights


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where each part of the run in `root` lives (the names every command uses)."""

    root: str

    def _join(self, *names: str) -> str:
        return os.path.join(self.root, *names)

    @property
    def config(self) -> str:
        return self._join("config.json")

    @property
    def model(self) -> str:
        return self._join("model.keras")

    @property
    def training(self) -> str:
        return self._join("training.json")

    @property
    def metrics(self) -> str:
        return self._join("metrics.json")

    @property
    def checkpoints(self) -> str:
        return self._join("checkpoints")

    @property
    def last_checkpoint(self) -> str:
        return self._join("checkpoints", "last.keras")

    @property
    def best_state(self) -> str:
        return self._join("checkpoints", "best.json")

    @property
    def interrupted_checkpoint(self) -> str:
        return self._join("checkpoints", "interrupted.keras")

    @property
    def backup(self) -> str:
        return self._join("backup")

    @property
    def logs(self) -> str:
        return self._join("logs")

    @property
    def history(self) -> str:
        return self._join("logs", "history.csv")

    @property
    def samples(self) -> str:
        return self._join("samples")

    @property
    def plots(self) -> str:
        return self._join("plots")

    def writer_folders(self) -> tuple[str, ...]:
        """The folders `vidgen train` creates (the run folder itself first)."""
        return (self.root, self.checkpoints, self.backup, self.logs, self.samples)


def read_json(path: str, default: Optional[Any] = None) -> Any:
    """The JSON document at `path`, or `default` when the file does not exist."""
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def save_model(model: keras.Model, path: str) -> None:
    """Saves a `.keras` file under a temporary name, fsyncs it, then renames it into place.

    Refuses (NonFiniteError) a model with a NaN or infinite weight: nothing
    non-finite is ever written over a good file.
    """
    check_finite_weights(model, f"saving {path}")
    with fileio.atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_config(run_dir: str) -> Config:
    """The validated config of a run directory, with a clear error when it is not one."""
    path = RunPaths(run_dir).config
    if not os.path.isfile(path):
        raise VidgenError(
            f"{run_dir!r} is not a run directory: config.json is missing (expected the "
            "folder given to `vidgen train --run-dir`).")
    return Config.from_json(path).validate()


def load_model(run_dir: str, model_file: str = "model.keras",
               compile: bool = False) -> VideoPredictor | VideoGAN:
    """The saved model of a run as it was trained (a VideoGAN for adversarial runs)."""
    path = os.path.join(run_dir, model_file)
    if not os.path.isfile(path):
        raise VidgenError(
            f"Run {run_dir!r} has no {model_file}: training has not finished an epoch yet "
            "(or was started elsewhere). Train it first.")
    try:
        return keras.saving.load_model(path, compile=compile)
    except (OSError, ValueError) as e:
        raise VidgenError(f"Model file {path!r} could not be loaded: {e}") from None


def predictor_of(model: VideoPredictor | VideoGAN) -> VideoPredictor:
    """The predictor of a saved model: a VideoGAN's generator, or the model itself."""
    return model.generator if isinstance(model, VideoGAN) else model


def load_run(run_dir: str, model_file: str = "model.keras") -> tuple[Config, VideoPredictor]:
    """Returns (config, predictor) of a run directory, with clear errors.

    For an adversarial run the predictor is the VideoGAN's generator: what
    evaluation, generation and export use.
    """
    cfg = load_config(run_dir)
    return cfg, predictor_of(load_model(run_dir, model_file))
