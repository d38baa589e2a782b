"""`vidgen-export savedmodel`: a run's model as a versioned SavedModel for TF Serving.

Layout `BASE/NAME/VERSION/` with `saved_model.pb`, `variables/`,
`batching_params.pbtxt` (TF Serving's per-model batching parameters: it reads
them from the version directory itself with `--enable_batching
--enable_per_model_batching_parameters`) and
`assets.extra/{tf_serving_warmup_requests, vidgen_model_card.json}`. The
version directory is written under a hidden temporary name inside
`BASE/NAME` (TF Serving only loads numeric directories), checked against
the Keras model, and renamed into place only when complete.

Example:

    vidgen-export savedmodel runs/quick --base models --name vidgen
    # -> models/vidgen/1/, then models/vidgen/2/ on the next export
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Optional

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

import vidgen
from export import contract as C
from export import signatures
from vidgen import fileio
from vidgen.errors import ArgumentError, VidgenError
from vidgen.fileio import read_json
from vidgen.run_dir import RunPaths, load_run

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# TF Serving's BatchingParameters (text format) written beside the model. A rollout
# request takes tens to hundreds of ms on a CPU, so waiting 2 ms for company costs
# little; 8 batches of 16 may queue before requests are refused (UNAVAILABLE). No
# allowed_batch_sizes: padding a batch up to a fixed size computes the padding rows
# too, which on a CPU (no per-shape compilation) only costs time.
BATCHING_PARAMS = """\
# TF Serving BatchingParameters for this model, read from the version directory by
#   tensorflow_model_server --enable_batching --enable_per_model_batching_parameters
# (and by vidgen-serve start with the same flags). num_batch_threads and thread_pool_name
# come from the server's --batching_parameters_file, shared by every model.
# Requests merged into one batch must have the same horizon and context length:
# see export/contract.py.
max_batch_size { value: 16 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 8 }
pad_variable_length_inputs: false
"""


def next_version(model_dir: str) -> int:
    """1 + the largest numeric version directory in `model_dir` (1 when there is none)."""
    if not os.path.isdir(model_dir):
        return 1
    # The names the server serves (serving/manager.py): ASCII digits, no leading zero,
    # at most 18 of them; anything else ('01', Unicode digits, 5000 digits) is not a version.
    versions = [int(d) for d in os.listdir(model_dir)
                if re.fullmatch(r"0|[1-9][0-9]{0,17}", d)
                and os.path.isdir(os.path.join(model_dir, d))]
    return max(versions, default=0) + 1


def model_card(cfg, model, run_dir: str, name: str, version: int) -> dict[str, Any]:
    """What a deployer needs to know about the model, as JSON-ready data."""
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "vidgen_version": vidgen.__version__,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "run": os.path.basename(os.path.abspath(run_dir)),
        "parameters": int(model.count_params()),
        "frames": {"size": model.frame_size, "channels": model.channels,
                   "range": "float32 in [0, 1] (serving_default) or uint8 (predict_uint8)",
                   "context_trained": cfg.data.context, "horizon_trained": cfg.data.horizon},
        "max_horizon": C.MAX_HORIZON,
        "output_floor": {
            "value": model.output_floor,
            "meaning": "serving_default and predict_uint8 set predicted values below it to 0; "
                       "the step signature returns unfloored frames: feed those back, and "
                       "floor them yourself for display"},
        "signatures": C.for_model(model).to_dict(),
        "batching": {
            "file": C.BATCHING_PARAMS_FILE,
            "meaning": "every input is batched on dimension 0: horizon holds one value per "
                       "clip, equal within a request; requests that TF Serving merges must "
                       "share horizon and context length (export/contract.py)"},
        "config": cfg.to_dict(),
    }
    metrics = read_json(RunPaths(run_dir).metrics)
    if metrics is not None:
        card["metrics"] = {
            "split": metrics.get("split"), "clips": metrics.get("clips"),
            **{name: {k: v["mean"] for k, v in r.items() if isinstance(v, dict)}
               for name, r in metrics.get("results", {}).items()}}
    return card


def warmup_requests(model, name: str, context: int, horizon: int) -> list:
    """One PredictionLog per signature, a batch of one black clip each."""
    spec = C.for_model(model)
    shape = (1, context) + spec.frame_shape
    feeds = {
        C.SERVING_DEFAULT: {C.CONTEXT: np.zeros(shape, np.float32),
                            C.HORIZON: C.horizon_input(horizon, 1)},
        C.PREDICT_UINT8: {C.CONTEXT: np.zeros(shape, np.uint8),
                          C.HORIZON: C.horizon_input(horizon, 1)},
        C.STEP: {n: np.zeros((1,) + info.shape[1:], np.float32)
                 for n, info in spec.inputs(C.STEP).items()},
    }
    logs = []
    for signature, inputs in feeds.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def verify(path: str, model, context: np.ndarray, horizon: int, atol: float = 1e-5) -> float:
    """Reloads the SavedModel and compares it with the Keras model.

    A deterministic model's `serving_default` must reproduce `model.rollout`;
    a stochastic model's `step`, given the same noise, must reproduce `model.step`.

    Returns:
        The largest absolute difference; raises VidgenError above `atol`.
    """
    loaded = tf.saved_model.load(path)
    if model.noise_shape:
        spec = C.for_model(model)
        rng = np.random.default_rng(0)
        feeds = {name: rng.random((len(context),) + tuple(info.shape[1:]), dtype=np.float32)
                 for name, info in spec.inputs(C.STEP).items()}
        feeds[C.NOISE] = rng.standard_normal(feeds[C.NOISE].shape).astype(np.float32)
        got = loaded.signatures[C.STEP](**{k: tf.constant(v) for k, v in feeds.items()})
        got = got[C.NEXT_FRAME].numpy()
        want, _ = model.step(feeds[C.FRAME], [feeds[n] for n in spec.state_names()],
                             noise=feeds[C.NOISE])
    else:
        got = loaded.signatures[C.SERVING_DEFAULT](
            context=tf.constant(context),
            horizon=tf.constant(C.horizon_input(horizon, len(context))))[C.FRAMES]
        got = got.numpy()
        want = model.rollout(context, horizon)
    diff = float(np.max(np.abs(got - np.asarray(want))))
    logger.debug("SavedModel %s: largest difference from Keras %.3g", path, diff)
    if diff > atol:
        raise VidgenError(f"The exported SavedModel differs from the Keras model by {diff:.3g} "
                          f"(allowed {atol:g}); nothing was published.")
    return diff


def export_savedmodel(run_dir: str, base: str, name: str, version: Optional[int] = None,
                      model_file: Optional[str] = None) -> str:
    """Exports a run's model as `base/name/version` for TF Serving.

    Args:
        run_dir: a training run directory (`vidgen.run_dir.RunPaths`: its config and model).
        base: TF Serving's model base path parent; created when missing.
        name: the model name (TF Serving's `--model_name`).
        version: a positive integer; default one more than the largest existing.
        model_file: the model inside the run to export (default: the run's model).

    Returns:
        The version directory written.
    """
    if not _NAME.match(name):
        raise VidgenError(f"Model name {name!r} is not valid: expected letters, digits, '_', "
                          "'-' or '.', starting with a letter or digit.")
    if version is not None and version <= 0:
        raise ArgumentError(f"{{version}} must be a positive integer. Received: {version}",
                            "version")
    cfg, model = load_run(run_dir) if model_file is None else load_run(run_dir, model_file)
    model_dir = os.path.join(base, name)
    version = next_version(model_dir) if version is None else version
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise ArgumentError(f"Version directory {final!r} already exists; TF Serving may be "
                            "serving it. Choose another {version} or leave it out for the next "
                            "one.", "version")
    os.makedirs(model_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir)
    try:
        path = os.path.join(tmp, "model")
        signatures.write_archive(model, path, signatures.serving_functions(model))
        extra = os.path.join(path, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(extra, C.WARMUP_FILE)) as writer:
            for log in warmup_requests(model, name, cfg.data.context, cfg.data.horizon):
                writer.write(log.SerializeToString())
        with open(os.path.join(extra, C.MODEL_CARD), "w") as f:
            json.dump(model_card(cfg, model, run_dir, name, version), f, indent=2)
        with open(os.path.join(path, C.BATCHING_PARAMS_FILE), "w") as f:
            f.write(BATCHING_PARAMS)
        rng = np.random.default_rng(0)
        probe = rng.random((2, 3) + C.for_model(model).frame_shape, dtype=np.float32)
        verify(path, model, probe, horizon=2)
        if os.path.exists(final):
            raise VidgenError(f"Version directory {final!r} appeared while exporting; "
                              "nothing was overwritten.")
        # Durable before visible: every file and folder fsynced, then the rename (TF
        # Serving loads a version directory as soon as it appears), then the parent.
        fileio.fsync_tree(path)
        os.rename(path, final)
        fileio.fsync_path(model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
