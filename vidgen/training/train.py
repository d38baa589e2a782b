"""`vidgen train`: fit a VideoPredictor (or a VideoGAN around one) and write a run directory.

A run directory holds everything a run makes:

    RUN/config.json          the resolved config, written before the first step
    RUN/model.keras          the best model by validation rollout loss
    RUN/checkpoints/         last.keras (after every epoch) and best.json
    RUN/backup/              the last two epochs' weights, optimizers and RNG state (--resume)
    RUN/logs/                TensorBoard events and history.csv
    RUN/samples/*.gif        predictions on fixed validation clips, per epoch
    RUN/metrics.json, plots/ written by the evaluation at the end

Example:

    vidgen train --preset quick --run-dir runs/quick
    vidgen train --run-dir runs/quick --resume
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import keras
import numpy as np

from vidgen import fileio
from vidgen.config import Config, apply_overrides
from vidgen.errors import ConfigError, VidgenError
from vidgen.fileio import write_json_atomic
from vidgen.models import FrameDiscriminator, VideoDiscriminator, VideoGAN, VideoPredictor
from vidgen.run_dir import RunPaths, save_model
from vidgen.training import callbacks as cb
from vidgen.training import multiworker
from vidgen.training.backup import AtomicBackup
from vidgen.training.budget_cosine_decay import BudgetCosineDecay
from vidgen.training.distribute import make_strategy, per_replica_batch
from vidgen.training.finite import FiniteGuard
from vidgen.training.losses import ReconstructionLoss


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of `VideoPredictor` from the config (models never read it)."""
    m = cfg.model
    return dict(frame_size=cfg.data.frame_size, channels=cfg.data.channels,
                horizon=cfg.data.horizon, encoder_filters=m.encoder_filters,
                core_filters=m.core_filters, cell=m.cell, kernel_size=m.kernel_size,
                decoder_filters=m.decoder_filters, head=m.head, dna_kernel=m.dna_kernel,
                cdna_kernels=m.cdna_kernels, difference_input=m.difference_input,
                sampling_steps=m.sampling_steps, context_loss_weight=m.context_loss_weight,
                latent_dim=m.latent_dim, kl_weight=m.kl_weight,
                output_floor=m.output_floor, seed=cfg.train.seed)


def build_model(cfg: Config) -> VideoPredictor | VideoGAN:
    """The model of `cfg`: a VideoPredictor, or a VideoGAN when train.adversarial is set."""
    keras.utils.set_random_seed(cfg.train.seed)
    predictor = VideoPredictor(**model_kwargs(cfg), name="video_predictor")
    if cfg.train.adversarial == "none":
        return predictor
    m, d = cfg.model, cfg.data
    frame_critic = video_critic = None
    if m.frame_critic_filters:
        frame_critic = FrameDiscriminator(d.frame_size, d.channels, m.frame_critic_filters,
                                          name="frame_critic")
    if m.video_critic_filters:
        video_critic = VideoDiscriminator(d.frame_size, d.channels, m.video_critic_filters,
                                          name="video_critic")
    if frame_critic is None and video_critic is None:
        raise ConfigError("train.adversarial needs a critic: model.frame_critic_filters and "
                          "model.video_critic_filters are both empty.")
    return VideoGAN(predictor, frame_critic, video_critic, critic_frames=m.critic_frames,
                    seed=cfg.train.seed, name="video_gan")


def build_loss(cfg: Config) -> ReconstructionLoss:
    t = cfg.train
    return ReconstructionLoss(mse_weight=t.mse_weight, l1_weight=t.l1_weight,
                              bce_weight=t.bce_weight, ssim_weight=t.ssim_weight)


def build_optimizer(cfg: Config, learning_rate: Optional[float] = None
                    ) -> keras.optimizers.Optimizer:
    """Adam(W) with the configured schedule; `learning_rate` overrides the peak rate."""
    t = cfg.train
    peak = learning_rate or t.learning_rate
    total = t.epochs * t.steps_per_epoch
    if t.lr_schedule == "cosine":
        lr = BudgetCosineDecay(peak, total_steps=total, warmup_steps=t.warmup_steps,
                               final_fraction=t.lr_final_fraction)
    else:
        lr = peak
    kwargs = {"clipnorm": t.clipnorm} if t.clipnorm else {}
    if t.weight_decay:
        return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay, **kwargs)
    return keras.optimizers.Adam(lr, **kwargs)


def budget_schedules(model: keras.Model) -> list[BudgetCosineDecay]:
    """The learning-rate schedules of a compiled model that a time budget anneals."""
    found = []
    for name in ("optimizer", "g_optimizer", "d_optimizer"):
        optimizer = getattr(model, name, None)
        # A LossScaleOptimizer wraps the optimizer that holds the schedule.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, BudgetCosineDecay) and schedule not in found:
            found.append(schedule)
    return found


def calibrate_floor(model_path: str, cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Calibrates the output floor of the saved model on the validation split; re-saves it.

    See `vidgen.calibration`: the floor with the best validation SSIM among
    those within `train.output_floor_tolerance` of the unfloored MSE.
    """
    from vidgen.calibration import calibrate_output_floor
    from vidgen.data.pipeline import make_dataset

    saved = keras.saving.load_model(model_path)
    predictor = saved.generator if isinstance(saved, VideoGAN) else saved
    result = calibrate_output_floor(predictor, make_dataset(cfg, "val"),
                                    cfg.train.output_floor_tolerance, progress=progress)
    chosen = next(c for c in result["candidates"] if c["floor"] == result["floor"])
    raw = result["candidates"][0]
    print(f"Output floor {result['floor']:.2f} (validation, {result['clips']} clips): MSE "
          f"{raw['mse']:.1f} -> {chosen['mse']:.1f}, SSIM {raw['ssim']:.3f} -> "
          f"{chosen['ssim']:.3f}")
    predictor.output_floor = result["floor"]
    save_model(saved, model_path)
    return result


def precision_policy(cfg: Config) -> str:
    """The Keras dtype policy of a run: float32, or mixed for the hardware it runs on."""
    import tensorflow as tf

    if not cfg.train.mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def _maybe_loss_scaled(optimizer, cfg: Config):
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
    if precision_policy(cfg) == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def compile_model(model: VideoPredictor | VideoGAN, cfg: Config) -> VideoPredictor | VideoGAN:
    t = cfg.train
    if isinstance(model, VideoGAN):
        model.compile(g_optimizer=_maybe_loss_scaled(build_optimizer(cfg), cfg),
                      d_optimizer=_maybe_loss_scaled(
                          build_optimizer(cfg, t.critic_learning_rate or None), cfg),
                      reconstruction_loss=build_loss(cfg), adversarial=t.adversarial,
                      adversarial_weight=t.adversarial_weight,
                      feature_matching_weight=t.feature_matching_weight,
                      jit_compile=t.jit_compile)
    else:
        model.compile(optimizer=_maybe_loss_scaled(build_optimizer(cfg), cfg),
                      loss=build_loss(cfg), jit_compile=t.jit_compile)
    return model


# What `--resume --set KEY=VALUE` may change in a saved run: how it goes on, not what
# it is (a lower learning rate after a NaN, more epochs).
RESUME_OVERRIDABLE = ("train.learning_rate", "train.critic_learning_rate", "train.epochs")


def _resume_with(saved: Config, overrides: Sequence[str], path: str) -> Config:
    """`saved` with `overrides` (only RESUME_OVERRIDABLE keys); config.json rewritten."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    refused = [k for k in keys if k not in RESUME_OVERRIDABLE]
    if refused:
        raise ConfigError(
            f"--resume can change only {', '.join(RESUME_OVERRIDABLE)} of a saved run. "
            f"Received: {', '.join(refused)}; start a new --run-dir for other changes.")
    changed = apply_overrides(saved, list(overrides)).validate()
    if changed != saved:
        print(f"Resuming with {', '.join(overrides)} (config.json updated).")
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
        print(f"Nothing to resume in {run_dir!r} yet: starting a new run there.")
        resume = False
    if resume:
        saved = Config.from_json(paths.config).validate()
        if cfg is not None and cfg != saved:
            differ = _differences(saved, cfg)
            if [k for k in differ if k not in RESUME_OVERRIDABLE]:
                raise ConfigError(
                    f"--resume continues {run_dir!r} with its saved config.json, which differs "
                    f"from this command's in {', '.join(differ[:6])}; drop --preset/--data "
                    f"(--set may change only {', '.join(RESUME_OVERRIDABLE)}) or start a new "
                    "--run-dir.")
            resume_overrides = [f"{k}={json.dumps(_flat(cfg)[k])}" for k in differ] + list(
                resume_overrides)
        if resume_overrides:
            saved = _resume_with(saved, resume_overrides, paths.config)
        return saved
    if exists:
        raise VidgenError(
            f"Run directory {run_dir!r} already holds a run; pass --resume to continue it or "
            "choose another --run-dir.")
    folders = (paths.root, paths.checkpoints, paths.backup, paths.logs, paths.samples)
    for folder in folders if writer else folders[:1]:
        os.makedirs(folder, exist_ok=True)
    cfg.to_json(paths.config)
    return cfg


def _saved_strategy(run_dir: str) -> str:
    """The strategy a resumed run was configured with ("auto" when unknown)."""
    path = RunPaths(run_dir).config
    if not os.path.isfile(path):
        return "auto"
    with open(path) as f:
        return json.load(f).get("train", {}).get("strategy", "auto")


def _sample_batch(cfg: Config, n: int):
    from vidgen.data.pipeline import make_dataset

    context, target = next(iter(make_dataset(cfg, "val", batch_size=n)))
    return np.asarray(context), np.asarray(target)


def train(cfg: Optional[Config], run_dir: str, resume: bool = False,
          evaluate_after: bool = True,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: Optional[str] = None,
          resume_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Trains a VideoPredictor (or VideoGAN), then evaluates it on the test split.

    Args:
        cfg: the resolved config (None with `resume`: read from the run).
        run_dir: the run directory.
        resume: continue the run in `run_dir` from its last backup.
        evaluate_after: write metrics.json, plots and test GIFs at the end.
        extra_callbacks: more Keras callbacks for `fit`.
        strategy: tf.distribute strategy name overriding `cfg.train.strategy`
            (a resumed run may train on other hardware).
        resume_overrides: with `resume`, "KEY=VALUE" changes of the saved
            config (only `RESUME_OVERRIDABLE` keys, e.g. a lower learning rate).

    Returns:
        A summary: epochs run, time, throughput, best validation MSE,
        whether it was interrupted.

    Raises:
        NonFiniteError: the loss or a weight became NaN or infinite (nothing
            non-finite is saved; `resume` continues from the last backup).
        VidgenError: `run_dir` is being written by another process.
    """
    # MultiWorkerMirroredStrategy must exist before TensorFlow's runtime starts.
    strategy, strategy_name = make_strategy(strategy or (cfg.train.strategy if cfg else
                                                         _saved_strategy(run_dir)))
    chief, own_dir = True, run_dir
    if strategy_name == "multiworker":
        task_type, task_id, chief = multiworker.task_of(strategy)
        own_dir = multiworker.worker_dir(run_dir, task_type, task_id, chief)
        print(f"Multi-worker task {task_type} {task_id} ({'chief' if chief else 'worker'}); "
              f"writes to {own_dir}")
    # One process per run folder: a second `train` there fails at once.
    with fileio.exclusive_lock(own_dir, flag="--run-dir", what="vidgen train"):
        return _train(cfg, run_dir, own_dir, chief, strategy, strategy_name, resume,
                      evaluate_after, extra_callbacks, resume_overrides)


def _train(cfg, run_dir, own_dir, chief, strategy, strategy_name, resume, evaluate_after,
           extra_callbacks, resume_overrides) -> dict[str, Any]:
    """The body of `train`, holding the lock of `own_dir`."""
    from vidgen.data.pipeline import make_dataset

    if cfg is not None:
        from vidgen.data.sources import resolve_channels

        # data.channels=0 (auto) becomes the source's count before config.json is written.
        cfg = dataclasses.replace(cfg, data=resolve_channels(cfg.data))
    cfg = prepare_run_dir(cfg, own_dir, resume, writer=chief,
                          resume_overrides=resume_overrides)
    paths = RunPaths(run_dir)
    t = cfg.train
    replicas = strategy.num_replicas_in_sync
    print(f"Strategy {strategy_name} ({type(strategy).__name__}): {replicas} replica(s), "
          f"global batch {t.batch_size}, {per_replica_batch(t.batch_size, replicas)} per replica")
    policy = precision_policy(cfg)
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        with strategy.scope():
            model = compile_model(build_model(cfg), cfg)
    finally:
        # The policy only shapes the layers built here; later code keeps float32.
        keras.mixed_precision.set_dtype_policy(previous_policy)
    if policy != "float32":
        print(f"Mixed precision: {policy} (variables, states and frames in float32)")
    train_ds = make_dataset(cfg, "train")
    val_ds = make_dataset(cfg, "val")
    if t.val_batches:
        val_ds = val_ds.take(t.val_batches)
    sample_context, sample_target = _sample_batch(cfg, t.sample_clips)
    budget = cb.TimeBudget(t.time_budget_minutes, schedules=budget_schedules(model))
    throughput = cb.Throughput(t.batch_size)
    writers = [
        cb.BestModelCheckpoint(paths.model, paths.best_state),
        cb.LastModelCheckpoint(paths.last_checkpoint),
        keras.callbacks.CSVLogger(paths.history, append=True),
        keras.callbacks.TensorBoard(paths.logs, write_graph=False, update_freq="epoch"),
        cb.SampleWriter(sample_context, sample_target, paths.samples, paths.logs),
        throughput,
        *extra_callbacks,
    ]
    verbose = 1 if sys.stdout.isatty() else 2
    print(f"Training {model.count_params():,} parameters on {cfg.data.source!r} "
          f"({cfg.data.context} -> {cfg.data.horizon} frames, {cfg.data.frame_size}px); "
          f"run directory {run_dir}")
    start = time.perf_counter()
    interrupted = False
    if strategy_name == "multiworker":
        result = multiworker.fit_multiworker(
            model, cfg, strategy, own_dir, chief, val_ds,
            [FiniteGuard(run_dir, paths.backup), *writers], verbose)
        seconds = time.perf_counter() - start
        summary = {**{k: v for k, v in result.items() if k != "logs"},
                   "train_seconds": round(seconds, 1),
                   "sequences_per_second": round(throughput.sequences_per_second, 2),
                   "parameters": int(model.count_params()), "chief": chief,
                   "interrupted": False}
        write_json_atomic(RunPaths(own_dir).training, summary)
        if chief:
            if not os.path.isfile(paths.model):
                save_model(model, paths.model)
            if evaluate_after:
                from vidgen.evaluate import evaluate

                evaluate(run_dir)
        return summary
    # The guard comes first: its epoch-end check runs before any writer.
    callbacks = [FiniteGuard(run_dir, paths.backup), AtomicBackup(paths.backup), *writers,
                 budget]
    # The validation split is finite by design (every clip once per epoch); Keras warns
    # when a dataset of unknown length ends. The training split repeats forever.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    try:
        history = model.fit(train_ds, epochs=t.epochs, steps_per_epoch=t.steps_per_epoch,
                            validation_data=val_ds, callbacks=callbacks, shuffle=False,
                            verbose=verbose)
        epochs_run = len(history.history.get("loss", []))
    except KeyboardInterrupt:
        interrupted = True
        epochs_run = None
        # Keep what was learned: the last weights go to checkpoints/; the backup from
        # the last finished epoch stays, so --resume repeats only the unfinished epoch.
        save_model(model, paths.interrupted_checkpoint)
        print(f"\nInterrupted: weights saved to {paths.checkpoints}/interrupted.keras; "
              f"continue with `vidgen train --run-dir {run_dir} --resume`.")
    seconds = time.perf_counter() - start
    summary = {
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "sequences_per_second": round(throughput.sequences_per_second, 2),
        "stopped_by_time_budget": budget.stopped,
        "interrupted": interrupted,
        "parameters": int(model.count_params()),
    }
    if not os.path.isfile(paths.model):
        # No validation improvement was ever recorded (e.g. interrupted in epoch 1).
        save_model(model, paths.model)
    previous = {}
    if os.path.isfile(paths.training):
        with open(paths.training) as f:
            previous = json.load(f)
    summary["total_train_seconds"] = round(previous.get("total_train_seconds", 0) + seconds, 1)
    if t.output_floor_tolerance and not interrupted:
        summary["output_floor"] = calibrate_floor(paths.model, cfg, verbose == 1)
    write_json_atomic(paths.training, summary)
    if interrupted:
        return summary
    if evaluate_after:
        from vidgen.evaluate import evaluate

        evaluate(run_dir)
    return summary
