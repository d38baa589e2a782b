"""`vidgen train`: fit a VideoPredictor (or a VideoGAN around one) and write a run directory.

What the run directory holds is described in `vidgen.run_dir`. One call
trains with the loop the strategy needs (`model.fit`, or vidgen's own loop
under MultiWorkerMirroredStrategy, `vidgen.training.multiworker`) and then
finishes the run the same way for both (`_finish`): the final model, the
training summary, the calibrated output floor (recorded in config.json, so
the config always describes model.keras), and the evaluation.

Example:

    vidgen train --preset quick --run-dir runs/quick
    vidgen train --run-dir runs/quick --resume
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import keras
import numpy as np

from vidgen import fileio
from vidgen.calibration import calibrate_output_floor
from vidgen.config import Config
from vidgen.data.pipeline import make_dataset
from vidgen.data.sources import resolve_channels
from vidgen.evaluate import evaluate
from vidgen.fileio import read_json, write_json_atomic
from vidgen.models import VideoGAN, VideoPredictor
from vidgen.run_dir import (
    RunPaths,
    load_model,
    predictor_of,
    prepare_run_dir,
    save_model,
    saved_strategy,
)
from vidgen.training import callbacks as cb
from vidgen.training import multiworker
from vidgen.training.backup import AtomicBackup
from vidgen.training.build import budget_schedules, build_compiled, precision_policy
from vidgen.training.distribute import make_strategy, per_replica_batch
from vidgen.training.finite import FiniteGuard

log = logging.getLogger(__name__)


def _with_floor(cfg: Config, floor: float) -> Config:
    """`cfg` with `model.output_floor` set to `floor`."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, output_floor=floor))


def calibrate_floor(run_dir: str, cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Calibrates the output floor of the run's model on the validation split.

    See `vidgen.calibration`: the floor with the best validation SSIM among
    those within `train.output_floor_tolerance` of the unfloored MSE. The
    model is saved with it and config.json records it (`model.output_floor`),
    so the config keeps describing the model. Returns the calibration's result.

    Holds the run folder's lock (a second writer fails with one sentence; within
    `train`, which holds it already, it is taken again).
    """
    with fileio.exclusive_lock(run_dir, flag="--run-dir", what="floor calibration"):
        return _calibrate_floor(run_dir, cfg, progress)


def _calibrate_floor(run_dir: str, cfg: Config, progress: bool) -> dict[str, Any]:
    paths = RunPaths(run_dir)
    saved = load_model(run_dir, compile=True)   # re-saved with its compile config
    predictor = predictor_of(saved)
    result = calibrate_output_floor(predictor, make_dataset(cfg, "val"),
                                    cfg.train.output_floor_tolerance, progress=progress)
    chosen = next(c for c in result["candidates"] if c["floor"] == result["floor"])
    raw = result["candidates"][0]
    log.info(f"Output floor {result['floor']:.2f} (validation, {result['clips']} clips): MSE "
             f"{raw['mse']:.1f} -> {chosen['mse']:.1f}, SSIM {raw['ssim']:.3f} -> "
             f"{chosen['ssim']:.3f}")
    predictor.output_floor = result["floor"]
    save_model(saved, paths.model)
    _with_floor(cfg, result["floor"]).to_json(paths.config)
    return result


def _as_trained(cfg: Config) -> Config:
    """The config the model trains with: unfloored when training calibrates the floor.

    With `train.output_floor_tolerance` the floor is the calibration's (chosen at the
    end, recorded in config.json); training and validation run on the raw frames, so a
    resumed run compares its validation loss with the one it recorded before.
    """
    return _with_floor(cfg, 0.0) if cfg.train.output_floor_tolerance else cfg


def _sample_batch(cfg: Config, n: int):
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
        strategy: tf.distribute strategy name overriding `cfg.runtime.strategy`
            (a resumed run may train on other hardware).
        resume_overrides: with `resume`, "KEY=VALUE" changes of the saved
            config (only `vidgen.run_dir.RESUME_OVERRIDABLE` keys, e.g. a lower
            learning rate).

    Returns:
        A summary: epochs run, time, throughput, whether the time budget
        stopped it, whether it was interrupted, the calibrated output floor.

    Raises:
        NonFiniteError: the loss or a weight became NaN or infinite (nothing
            non-finite is saved; `resume` continues from the last backup).
        DiskFullError: the disk filled up while writing the run (the file being
            written keeps its previous version; `resume` continues after space
            is freed).
        VidgenError: `run_dir` is being written by another process.
    """
    try:
        return _train_locked(cfg, run_dir, resume, evaluate_after, extra_callbacks, strategy,
                             resume_overrides)
    except fileio.DiskFullError as e:
        raise e.with_advice(_after_freeing_space(run_dir)) from e
    except OSError as e:
        # Not through an atomic write (the CSV log, TensorBoard events): those files may
        # end in half a line, but backups and checkpoints are only ever replaced whole.
        code = fileio.disk_full_errno(e)
        if code is None:
            raise
        path = e.filename or run_dir
        raise fileio.DiskFullError(
            path, fileio.free_bytes(path), False, code, then=_after_freeing_space(run_dir),
            kept="the backups and checkpoints, replaced only whole, are intact") from e


def _after_freeing_space(run_dir: str) -> str:
    return f"free some space, then continue with `vidgen train --run-dir {run_dir} --resume`"


def _train_locked(cfg: Optional[Config], run_dir: str, resume: bool, evaluate_after: bool,
                  extra_callbacks: Sequence[keras.callbacks.Callback], strategy: Optional[str],
                  resume_overrides: Sequence[str]) -> dict[str, Any]:
    """`train` after its arguments: the strategy, then the run folder's lock, then `_train`."""
    # MultiWorkerMirroredStrategy must exist before TensorFlow's runtime starts.
    strategy, strategy_name = make_strategy(strategy or (cfg.runtime.strategy if cfg else
                                                         saved_strategy(run_dir)))
    chief, own_dir = True, run_dir
    if strategy_name == "multiworker":
        task_type, task_id, chief = multiworker.task_of(strategy)
        own_dir = multiworker.worker_dir(run_dir, task_type, task_id, chief)
        log.info(f"Multi-worker task {task_type} {task_id} ({'chief' if chief else 'worker'}); "
                 f"writes to {own_dir}")
    # One process per run folder: a second `train` there fails at once.
    with fileio.exclusive_lock(own_dir, flag="--run-dir", what="vidgen train"):
        if cfg is not None:
            # data.channels=0 (auto) becomes the source's count before config.json is written.
            cfg = dataclasses.replace(cfg, data=resolve_channels(cfg.data))
        cfg = prepare_run_dir(cfg, own_dir, resume, writer=chief,
                              resume_overrides=resume_overrides)
        return _train(cfg, run_dir, own_dir, chief, strategy, strategy_name,
                      evaluate_after, extra_callbacks)


def _train(cfg: Config, run_dir: str, own_dir: str, chief: bool, strategy, strategy_name: str,
           evaluate_after: bool, extra_callbacks) -> dict[str, Any]:
    """Builds, fits with the strategy's loop, and finishes; holds the lock of `own_dir`."""
    paths = RunPaths(run_dir)
    t = cfg.train
    replicas = strategy.num_replicas_in_sync
    log.info(f"Strategy {strategy_name} ({type(strategy).__name__}): {replicas} replica(s), "
             f"global batch {t.batch_size}, {per_replica_batch(t.batch_size, replicas)} per "
             "replica")
    model = build_compiled(_as_trained(cfg), strategy)
    policy = precision_policy(cfg)
    if policy != "float32":
        log.info(f"Mixed precision: {policy} (variables, states and frames in float32)")
    val_ds = make_dataset(cfg, "val")
    if t.val_batches:
        val_ds = val_ds.take(t.val_batches)
    sample_context, sample_target = _sample_batch(cfg, t.sample_clips)
    throughput = cb.Throughput(t.batch_size)
    # The guard runs before every writer: nothing non-finite is written.
    guard = FiniteGuard(run_dir, paths.backup, learning_rate=t.learning_rate)
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
    log.info(f"Training {model.count_params():,} parameters on {cfg.data.source!r} "
             f"({cfg.data.context} -> {cfg.data.horizon} frames, {cfg.data.frame_size}px); "
             f"run directory {run_dir}")
    start = time.perf_counter()
    if strategy_name == "multiworker":
        # The multi-worker loop runs its own guard on every worker, collectively.
        result = multiworker.fit_multiworker(model, cfg, strategy, own_dir, chief, val_ds,
                                             writers, verbose, run_dir=run_dir)
        summary = {k: v for k, v in result.items() if k != "logs"}
        summary.update(chief=chief, interrupted=False)
    else:
        summary = _fit(model, cfg, paths, guard, writers, val_ds, verbose)
    seconds = time.perf_counter() - start
    summary.update(train_seconds=round(seconds, 1),
                   sequences_per_second=round(throughput.sequences_per_second, 2),
                   parameters=int(model.count_params()))
    return _finish(model, cfg, run_dir, own_dir, chief, summary, seconds, evaluate_after,
                   progress=verbose == 1)


def _fit(model, cfg: Config, paths: RunPaths, guard: FiniteGuard, writers: list, val_ds,
         verbose: int) -> dict[str, Any]:
    """`model.fit` on one host (one or more devices), with backups and the time budget."""
    t = cfg.train
    budget = cb.TimeBudget(t.time_budget_minutes, schedules=budget_schedules(model))
    # The backup comes after the guard and before the writers.
    callbacks = [guard, AtomicBackup(paths.backup), *writers, budget]
    # The validation split is finite by design (every clip once per epoch); Keras warns
    # when a dataset of unknown length ends. The training split repeats forever.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    interrupted, epochs_run = False, None
    try:
        history = model.fit(make_dataset(cfg, "train"), epochs=t.epochs,
                            steps_per_epoch=t.steps_per_epoch,
                            validation_data=val_ds, callbacks=callbacks,
                            shuffle=False, verbose=verbose)
        epochs_run = len(history.history.get("loss", []))
    except KeyboardInterrupt:
        interrupted = True
        # Keep what was learned: the last weights go to checkpoints/; the backup from
        # the last finished epoch stays, so --resume repeats only the unfinished epoch.
        save_model(model, paths.interrupted_checkpoint)
        log.info(f"\nInterrupted: weights saved to {paths.interrupted_checkpoint}; "
                 f"continue with `vidgen train --run-dir {paths.root} --resume`.")
    return {"epochs_run": epochs_run, "stopped_by_time_budget": budget.stopped,
            "interrupted": interrupted}


def _finish(model: VideoPredictor | VideoGAN, cfg: Config, run_dir: str, own_dir: str,
            chief: bool, summary: dict[str, Any], seconds: float, evaluate_after: bool,
            progress: bool) -> dict[str, Any]:
    """After either loop: the final model, the summary, the output floor, the evaluation.

    A non-chief worker writes only its summary into its own directory.
    """
    paths, own = RunPaths(run_dir), RunPaths(own_dir)
    previous = read_json(own.training, default={})
    summary["total_train_seconds"] = round(previous.get("total_train_seconds", 0) + seconds, 1)
    if not chief:
        write_json_atomic(own.training, summary)
        return summary
    if not os.path.isfile(paths.model):
        # No validation improvement was ever recorded (e.g. interrupted in epoch 1).
        save_model(model, paths.model)
    if cfg.train.output_floor_tolerance and not summary["interrupted"]:
        summary["output_floor"] = calibrate_floor(run_dir, cfg, progress)
    elif cfg.train.output_floor_tolerance:
        # Interrupted: no calibration; config.json takes the floor of the model on disk
        # (a model saved in this run is unfloored until `--resume` finishes and calibrates).
        floor = predictor_of(load_model(run_dir)).output_floor
        if floor != cfg.model.output_floor:
            _with_floor(cfg, floor).to_json(paths.config)
    write_json_atomic(paths.training, summary)
    if evaluate_after and not summary["interrupted"]:
        evaluate(run_dir)
    return summary
