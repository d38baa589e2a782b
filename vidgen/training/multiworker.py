"""Multi-worker training: vidgen's own loop under MultiWorkerMirroredStrategy.

Keras 3.15's `model.fit` fails under MultiWorkerMirroredStrategy on every
worker (`Attempt to convert a value (PerReplica:{...}) to a Tensor` in its
symbolic build). This loop runs the model's own `train_step` (the code
`fit` runs on one host, so the loss logic exists once) through
`strategy.run`, and adds what `fit` would have done around it:

- Data: `strategy.distribute_datasets_from_function`, so every worker reads
  its own shard of the clips (input pipeline i of n takes clips i, i+n, ...)
  and batches its share of the global batch.
- Chief-only writing: the chief (task `chief`, or `worker` 0 when the
  cluster has no chief) validates, writes the run directory's checkpoints,
  logs, sample GIFs, final model and metrics, through the same Keras
  callbacks as a single-host run. Every other worker writes only to its own
  directory, `RUN/workers/<task>-<index>/` (its config and checkpoints).
- Preemption: a `tf.distribute.experimental.PreemptionCheckpointHandler`
  per worker, each with a CheckpointManager in the worker's own directory
  (`RUN/preemption/` on the chief). When any worker gets SIGTERM, all
  workers agree on a step, save model, optimizers, RNG state and the step
  counter there, and exit with code 42 (`PREEMPTED_EXIT_CODE`); rerunning
  the same command with `--resume` continues from that step. A checkpoint
  is also saved at the end of every epoch, so a SIGKILL loses at most the
  current epoch.
- Stopping: the time budget is decided collectively (the maximum of every
  worker's clock), so all workers stop after the same step.
- Never NaN: every worker checks every step whether the loss or a metric
  went non-finite on any replica (a flag summed over all replicas, so every
  worker gets the same answer at the same step and none waits in a
  collective for one that stopped), and at the end of every epoch whether
  any worker's weights did, before anything is saved; all stop with the
  same `NonFiniteError`. No checkpoint with a non-finite variable is
  written (the preemption save skips it too), and every checkpoint is
  fsynced, its files and its folder, so `--resume` after a power loss
  finds the last finite state.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import sys
import time
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from vidgen import fileio
from vidgen.config import Config
from vidgen.data.pipeline import make_dataset
from vidgen.models import VideoGAN
from vidgen.training.backup import keep_configured_learning_rates, seed_generators
from vidgen.training.callbacks import Throughput
from vidgen.training.finite import FiniteGuard, non_finite_logs, non_finite_variables

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 42


def task_of(strategy) -> tuple[str, int, bool]:
    """(task type, task index, is chief) of this process in the strategy's cluster."""
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    jobs = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                     and "chief" not in jobs)
    return task_type, task_id, chief


def worker_dir(run_dir: str, task_type: str, task_id: int, chief: bool) -> str:
    """Where this worker writes: the run directory on the chief, its own folder elsewhere."""
    return run_dir if chief else os.path.join(run_dir, "workers", f"{task_type}-{task_id}")


def _optimizers(model) -> dict[str, Any]:
    if isinstance(model, VideoGAN):
        return {"g_optimizer": model.g_optimizer, "d_optimizer": model.d_optimizer}
    return {"optimizer": model.optimizer}


def make_checkpoint(model):
    """A tf.train.Checkpoint of everything a resumed run needs.

    Model weights, every optimizer (slots and iterations, hence the
    scheduled-sampling position) and every SeedGenerator state.
    """
    optimizers = _optimizers(model)
    for optimizer in optimizers.values():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    seeds = {f"seed_{name}": g.state for name, g in seed_generators(model).items()}
    # Keras 3 models are not tf.train trackables with named children: their
    # variables (trainable or not, critics included) are listed explicitly.
    return tf.train.Checkpoint(model_variables=list(model.weights), **optimizers, **seeds)


def _validation(model):
    """A function (context, target) -> (loss, per-frame MSE): a full rollout, no teacher."""
    if isinstance(model, VideoGAN):
        fn = lambda c, t: model.generator.validation_losses(model.reconstruction_loss, c, t)  # noqa: E731
    else:
        fn = lambda c, t: model.validation_losses(model.loss, c, t)  # noqa: E731
    return tf.function(fn)


def validate(step, dataset) -> dict[str, float]:
    """Validation loss and per-frame MSE over `dataset` with `step` from `_validation`.

    Computed locally, on the chief only.
    """
    totals, count = np.zeros(2), 0
    for context, target in dataset:
        loss, frame_mse = step(context, target)
        n = int(context.shape[0])
        totals += n * np.array([float(loss), float(frame_mse)])
        count += n
    if not count:
        return {}
    loss, frame_mse = totals / count
    return {"val_loss": float(loss), "val_frame_mse": float(frame_mse)}


def save_finite(manager: tf.train.CheckpointManager, number: int, model) -> Optional[str]:
    """Saves checkpoint `number` durably unless a variable of `model` is non-finite.

    The checkpoint's files, the manager's `checkpoint` state file and the
    folder are fsynced after the save (tf.train writes them in place of
    vidgen's atomic helper). Returns the checkpoint's path, or None when it
    refused a non-finite model (the previous checkpoints stay).
    """
    bad = non_finite_variables(model)
    if bad:
        log.warning(f"not saving checkpoint {number} in {manager.directory}: {len(bad)} "
                    f"variable(s) hold NaN or infinity ({', '.join(bad[:3])}); the previous "
                    "checkpoints stay.")
        return None
    path = manager.save(checkpoint_number=number)
    for name in sorted(glob.glob(f"{path}.*")) + [os.path.join(manager.directory, "checkpoint")]:
        if os.path.isfile(name):
            fileio.fsync_path(name)
    fileio.fsync_path(manager.directory)
    return path


def _last_checkpoint(manager: tf.train.CheckpointManager) -> Optional[str]:
    """The newest checkpoint of `manager` as the guard names it, or None."""
    path = manager.latest_checkpoint
    return f"{path} (step {path.rsplit('-', 1)[-1]})" if path else None


def fit_multiworker(model, cfg: Config, strategy, own_dir: str, chief: bool, val_ds,
                    callbacks: list, verbose: int,
                    run_dir: Optional[str] = None) -> dict[str, Any]:
    """Trains `model` for cfg.train.epochs x steps_per_epoch steps on every worker.

    Args:
        model: a compiled VideoPredictor or VideoGAN built in `strategy.scope()`.
        cfg: the run's config.
        strategy: a MultiWorkerMirroredStrategy.
        own_dir: this worker's directory (checkpoints go to `own_dir/preemption`).
        chief: whether this worker validates and runs `callbacks`.
        val_ds: the validation dataset (used on the chief only).
        callbacks: Keras callbacks driven on the chief as `fit` would (other
            workers run only the Throughput ones: they write nothing).
        verbose: 1 for a progress bar, 2 for one line per epoch (chief only).
        run_dir: the run directory, named in the error's resume command
            (default: `own_dir`).

    Raises:
        NonFiniteError: on every worker at the same step, when the loss or a
            metric of any replica, or a variable of any worker, became NaN or
            infinite; nothing non-finite was saved.

    Returns:
        epochs_run, steps_run, resumed_from_step, stopped_by_time_budget,
        input_pipeline ([index, count]), first_batch_sha1 (of this worker's
        first batch: workers read different clips), final logs.
    """
    t = cfg.train
    # The handler and tf.distribute log every coordination step at INFO.
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with strategy.scope():
        checkpoint = make_checkpoint(model)
    # A local (not mirrored) counter: every worker counts the same steps.
    checkpoint.steps_done = steps_done = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(own_dir, "preemption"),
                                         max_to_keep=2)

    saved_at_preemption = []

    def save_at_preemption():
        saved_at_preemption.append(save_finite(manager, int(steps_done), model))

    def preempted():
        if saved_at_preemption and saved_at_preemption[-1] is None:
            log.info(f"preempted at step {int(steps_done)} with non-finite weights, which "
                     f"were not saved; run the same command with --resume to continue from "
                     f"{manager.latest_checkpoint}.")
        else:
            log.info(f"preempted; state saved to {manager.directory} at step "
                     f"{int(steps_done)}. Run the same command with --resume to continue.")
        sys.exit(PREEMPTED_EXIT_CODE)

    # The handler restores the latest checkpoint; a resumed run keeps its configured rate.
    with strategy.scope(), keep_configured_learning_rates(model):
        handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, manager,
            termination_config=tf.distribute.experimental.TerminationConfig(
                exit_fn=preempted,
                save_fn=save_at_preemption))
    start_step = int(steps_done)
    if start_step:
        log.info(f"resumed from {manager.latest_checkpoint} (step {start_step}).")

    contexts = []

    def shard(context):
        contexts.append(context)
        return make_dataset(cfg, "train", input_context=context)

    iterator = iter(strategy.distribute_datasets_from_function(shard))
    pipeline = contexts[0]
    first = next(iter(make_dataset(cfg, "train", input_context=pipeline)))
    digest = hashlib.sha1(np.asarray(first[0]).tobytes()).hexdigest()[:12]
    log.info(f"this worker reads input pipeline {pipeline.input_pipeline_id} of "
             f"{pipeline.num_input_pipelines}, "
             f"{pipeline.get_per_replica_batch_size(t.batch_size)} clips per step (first batch "
             f"{digest})")

    def replica_step(batch):
        logs = {k: tf.cast(v, tf.float32) for k, v in model.train_step(batch).items()}
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in logs.values()])
        return logs, tf.cast(tf.logical_not(finite), tf.float32)

    mean, total = tf.distribute.ReduceOp.MEAN, tf.distribute.ReduceOp.SUM

    @tf.function
    def distributed_step(iterator, over_budget):
        logs, non_finite = strategy.run(replica_step, args=(next(iterator),))
        # Each worker's trackers saw its own shard; the logs show the global mean.
        logs = {k: strategy.reduce(mean, v, axis=None) for k, v in logs.items()}
        # Over budget on any worker (flags are 0 or 1): every worker stops.
        flag = strategy.run(lambda: tf.identity(over_budget))
        # Replicas whose loss or metrics went non-finite: the same count on every worker.
        return (logs, strategy.reduce(total, flag, axis=None) > 0,
                strategy.reduce(total, non_finite, axis=None))

    @tf.function
    def workers_with(flag):
        """How many replicas raise `flag` (0 or 1 per worker), known to every worker."""
        return strategy.reduce(total, strategy.run(lambda: tf.identity(flag)), axis=None)

    def counted_step(over_budget):
        # Counted inside handler.run, so a preemption checkpoint holds the new count.
        result = distributed_step(iterator, over_budget)
        steps_done.assign_add(1)
        return result

    callback_list = keras.callbacks.CallbackList(
        callbacks if chief else [c for c in callbacks if isinstance(c, Throughput)],
        add_history=True, add_progbar=chief and verbose != 0,
        model=model, verbose=verbose, epochs=t.epochs, steps=t.steps_per_epoch)
    # Every worker checks (not only the chief) and all stop at the same step.
    guard = FiniteGuard(run_dir or own_dir, learning_rate=t.learning_rate,
                        last_good=lambda: _last_checkpoint(manager),
                        where="on every worker")
    guard.set_model(model)
    replicas = strategy.num_replicas_in_sync
    validation_step = _validation(model)  # traced once, not every epoch
    budget = t.time_budget_minutes * 60.0
    began = time.perf_counter()
    first_epoch = start_step // t.steps_per_epoch
    step, stop, logs, epochs_run = start_step, False, {}, 0
    callback_list.on_train_begin()
    for epoch in range(first_epoch, t.epochs):
        for metric in model.metrics:
            metric.reset_state()
        callback_list.on_epoch_begin(epoch)
        guard.on_epoch_begin(epoch)
        for batch in range(step % t.steps_per_epoch, t.steps_per_epoch):
            callback_list.on_train_batch_begin(batch)
            over = float(bool(budget) and time.perf_counter() - began > budget)
            logs, stop_flag, non_finite = handler.run(counted_step, tf.constant(over))
            logs = {k: float(v) for k, v in logs.items()}
            step += 1
            if float(non_finite):
                guard.fail(guard.describe_logs(
                    non_finite_logs(logs), on=f"on {int(non_finite)} of {replicas} replica(s)"))
            callback_list.on_train_batch_end(batch, logs)
            if float(stop_flag):
                stop = True
                log.info(f"\nTime budget of {budget / 60:.1f} min reached on a worker; every "
                         "worker stops after this step.")
                break
        # Before anything is saved: a non-finite variable on any worker stops every worker.
        bad = non_finite_variables(model)
        if float(workers_with(tf.constant(float(bool(bad))))):
            guard.fail(guard.describe_weights(bad) if bad else
                       "another worker's variables became NaN or infinite while the loss "
                       "was finite")
        if chief:
            logs = {**logs, **validate(validation_step, val_ds)}
        # Every worker saves (each to its own directory) at the same step.
        save_finite(manager, step, model)
        callback_list.on_epoch_end(epoch, logs)
        epochs_run += 1
        if stop:
            break
    callback_list.on_train_end(logs)
    return {"epochs_run": epochs_run, "steps_run": step - start_step,
            "resumed_from_step": start_step, "stopped_by_time_budget": stop,
            "input_pipeline": [pipeline.input_pipeline_id, pipeline.num_input_pipelines],
            "first_batch_sha1": digest, "logs": logs}
