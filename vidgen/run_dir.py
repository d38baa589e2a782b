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
    RUN/denoiser.keras       the learned denoiser (`vidgen postprocess train-denoiser`)

Example:

    from vidgen.run_dir import RunPaths, load_run

    cfg, predictor = load_run("runs/quick")
    print(RunPaths("runs/quick").metrics)       # runs/quick/metrics.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from typing import Any, Optional

import keras

from vidgen import __version__, fileio
from vidgen.config import Config, apply_overrides
from vidgen.errors import ArgumentError, ConfigArgumentError, VidgenError
from vidgen.models import VideoGAN, VideoPredictor
from vidgen.training.finite import check_finite_weights

log = logging.getLogger(__name__)


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

    @property
    def denoiser(self) -> str:
        """The learned denoiser (`vidgen postprocess train-denoiser`); its summary beside it."""
        return self._join("denoiser.keras")

    @property
    def denoiser_summary(self) -> str:
        return self._join("denoiser.json")

    def writer_folders(self) -> tuple[str, ...]:
        """The folders `vidgen train` creates (the run folder itself first)."""
        return (self.root, self.checkpoints, self.backup, self.logs, self.samples)


# What `--resume --set KEY=VALUE` may change in a saved run: how it goes on, not what
# it is (a lower learning rate after a NaN, more epochs).
# The runtime's strategy and XLA change speed, not what is learned.
RESUME_OVERRIDABLE = ("train.learning_rate", "train.critic_learning_rate", "train.epochs",
                      "runtime.strategy", "runtime.jit_compile")


def _resume_with(saved: Config, overrides: Sequence[str], path: str) -> Config:
    """`saved` with `overrides` (only RESUME_OVERRIDABLE keys); config.json rewritten."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    refused = [k for k in keys if k not in RESUME_OVERRIDABLE]
    if refused:
        raise ConfigArgumentError(
            f"{{resume_overrides}} can change only {', '.join(RESUME_OVERRIDABLE)} of a saved "
            f"run. Received: {', '.join(refused)}; start a new {{run_dir}} for other changes.",
            "resume_overrides", "run_dir")
    changed = apply_overrides(saved, list(overrides)).validate()
    if changed != saved:
        log.info(f"Resuming with {', '.join(overrides)} (config.json updated).")
        changed.to_json(path)
    return changed


def _flat(cfg: Config) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items()
            if isinstance(values, dict) for key, value in values.items()}


def _differences(a: Config, b: Config) -> list[str]:
    """The "section.field" keys whose values differ between two configs."""
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def prepare_run_dir(cfg: Optional[Config], run_dir: str, resume: bool,
                    writer: bool = True, resume_overrides: Sequence[str] = ()) -> Config:
    """Creates (or reopens with `resume`) a run directory; returns the run's config.

    `writer=False` (a non-chief worker's own directory) makes only the folder
    and its config.json: checkpoints, logs and samples are the chief's.
    `resume_overrides` ("train.learning_rate=1e-4", ...) change a resumed run.
    """
    paths = RunPaths(run_dir)
    exists = os.path.isfile(paths.config)
    if resume and not exists:
        if cfg is None:
            raise VidgenError(
                f"Cannot resume {run_dir!r}: it has no config.json (expected a run directory "
                "made by `vidgen train`).")
        # The same command restarts a preempted job: nothing to resume yet, so start.
        log.info(f"Nothing to resume in {run_dir!r} yet: starting a new run there.")
        resume = False
    if resume:
        saved = Config.from_json(paths.config).validate()
        if cfg is not None and cfg != saved:
            differ = _differences(saved, cfg)
            if saved.train.output_floor_tolerance and "model.output_floor" in differ:
                # Training calibrated the floor and recorded it: not the command's to set.
                differ.remove("model.output_floor")
                log.info(f"model.output_floor stays {saved.model.output_floor:g}, calibrated by "
                         "training (train.output_floor_tolerance); the given "
                         f"{cfg.model.output_floor:g} is not used.")
            if [k for k in differ if k not in RESUME_OVERRIDABLE]:
                raise ConfigArgumentError(
                    f"{{resume}} continues {run_dir!r} with its saved config.json, which differs "
                    f"from the given config in {', '.join(differ[:6])}; drop {{cfg}} "
                    f"({{resume_overrides}} may change only {', '.join(RESUME_OVERRIDABLE)}) or "
                    "start a new {run_dir}.", "resume", "cfg", "resume_overrides", "run_dir")
            resume_overrides = [f"{k}={json.dumps(_flat(cfg)[k])}" for k in differ] + list(
                resume_overrides)
        if resume_overrides:
            saved = _resume_with(saved, resume_overrides, paths.config)
        return saved
    if exists:
        raise ArgumentError(
            f"Run directory {run_dir!r} already holds a run; pass {{resume}} to continue it or "
            "choose another {run_dir}.", "resume", "run_dir")
    folders = paths.writer_folders()
    for folder in folders if writer else folders[:1]:
        os.makedirs(folder, exist_ok=True)
    cfg.to_json(paths.config)
    return cfg


def saved_strategy(run_dir: str) -> str:
    """The strategy a run was configured with ("auto" when it has no config yet)."""
    path = RunPaths(run_dir).config
    return Config.from_json(path).runtime.strategy if os.path.isfile(path) else "auto"


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
        raise VidgenError(
            f"Model file {path!r} could not be loaded: {e} (a model saved by vidgen 0.1.0 does "
            f"not load in {__version__}, whose model layers are split: train it again).") from None


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
