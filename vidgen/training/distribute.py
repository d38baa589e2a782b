"""Choosing the tf.distribute strategy a run trains under.

    auto         MultiWorkerMirroredStrategy when TF_CONFIG is set, MirroredStrategy
                 when the machine has several GPUs, else the default strategy (one
                 device: measured on a 2-core CPU, MirroredStrategy on one CPU costs
                 2.4x per step).
    default      the default strategy: one device.
    mirrored     MirroredStrategy over every local GPU (or the CPU).
    multiworker  MultiWorkerMirroredStrategy over the workers in TF_CONFIG.
    tpu          TPUStrategy on the TPU the cluster resolver finds.

Batch sizes in the config are global: each replica gets batch / replicas.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from vidgen.config import STRATEGIES
from vidgen.errors import ArgumentError, ConfigError, VidgenError


def resolve_name(name: str) -> str:
    """The concrete strategy `auto` stands for on this machine."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}. Received: {name!r}")
    if name != "auto":
        return name
    if os.environ.get("TF_CONFIG"):
        return "multiworker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str = "auto"):
    """Returns (strategy, concrete name)."""
    name = resolve_name(name)
    if name == "default":
        return tf.distribute.get_strategy(), name
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), name
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ArgumentError("{strategy} multiworker needs TF_CONFIG (the cluster and this "
                                "worker's task), e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                                "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": "
                                "\"worker\", \"index\": 0}}'.", "strategy")
        try:
            spec = json.loads(raw)
        except ValueError as e:
            raise VidgenError(f"TF_CONFIG is not valid JSON: {e}") from None
        check_tf_config(spec)
        # The coordination service lets PreemptionCheckpointHandler agree on a step.
        return tf.distribute.MultiWorkerMirroredStrategy(), name
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ArgumentError(f"{{strategy}} tpu: no TPU could be reached ({e}).",
                            "strategy") from None
    return tf.distribute.TPUStrategy(resolver), name


def check_tf_config(spec) -> None:
    """Rejects a TF_CONFIG without a cluster of workers or without this task in it."""
    example = ('expected {"cluster": {"worker": ["host1:port", ...]}, "task": {"type": '
               '"worker", "index": 0}}')
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise VidgenError(f"TF_CONFIG has no \"cluster\": {example}. Received: {spec!r}")
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise VidgenError(f"TF_CONFIG has no \"task\" with type and index: {example}. "
                          f"Received: {spec!r}")
    jobs = spec["cluster"]
    members = jobs.get(task["type"])
    if not isinstance(members, list) or not (0 <= int(task["index"]) < len(members)):
        raise VidgenError(f"TF_CONFIG's task {task['type']} {task['index']} is not in its "
                          f"cluster {jobs!r}.")


def per_replica_batch(global_batch: int, replicas: int) -> int:
    """The batch each replica computes; the global batch must divide evenly."""
    if global_batch % replicas:
        raise ConfigError(f"train.batch_size ({global_batch}) is the global batch and must be "
                          f"divisible by the {replicas} replicas of this strategy.")
    return global_batch // replicas
