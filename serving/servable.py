"""One loaded version of an exported model: its signatures, checked calls and warm-up."""

from __future__ import annotations

import math
import os
from typing import Optional

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from export import contract as C
from serving import tensors
from serving.batching_parameters import BatchingOptions
from serving.errors import ServingError, from_tf_error, invalid

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def read_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    """The serving MetaGraphDef of the SavedModel at `path` (its signature defs)."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    for graph in saved.meta_graphs:
        if "serve" in graph.meta_info_def.tags:
            return graph
    raise ValueError(f"{path} has no MetaGraph tagged 'serve'.")


class Servable:
    """A SavedModel version loaded for serving.

    Args:
        name: the model name.
        version: the version number (its directory name).
        path: the version directory.
        limits: `Limits` of the server.
    """

    def __init__(self, name: str, version: int, path: str, limits):
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        self.limits = limits
        self.meta_graph = read_meta_graph(path)
        self._loaded = tf.saved_model.load(path)
        # Only real signatures are callable; __saved_model_init_op is listed by
        # TF Serving's metadata too but is no prediction signature.
        self.signature_defs = {k: v for k, v in self.meta_graph.signature_def.items()
                               if k in self._loaded.signatures}
        self.functions = {k: self._loaded.signatures[k] for k in self.signature_defs}
        self.input_specs = {
            k: {a: tensors.InputSpec.from_tensor_info(i) for a, i in sorted(v.inputs.items())}
            for k, v in self.signature_defs.items()}
        self._batching: Optional[BatchingOptions] = None
        self._batching_read = False

    def batching_options(self, server: BatchingOptions) -> Optional[BatchingOptions]:
        """This version's `batching_params.pbtxt` (None when it has none), read once.

        Args:
            server: the server's options, whose thread pool is used (as TF Serving does).

        Raises:
            ValueError: the file does not parse or holds refused values.
        """
        if not self._batching_read:
            path = os.path.join(self.path, C.BATCHING_PARAMS_FILE)
            if os.path.isfile(path):
                self._batching = BatchingOptions.from_file(path, per_model=True, threads=server)
            self._batching_read = True
        return self._batching

    # ---- checks -------------------------------------------------------------------

    def signature_def(self, key: str):
        """The SignatureDef of `key` ("" = serving_default), or FAILED_PRECONDITION."""
        key = key or C.SERVING_DEFAULT
        if key not in self.signature_defs:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                              f'Serving signature key "{key}" not found.')
        return key, self.signature_defs[key]

    def check_names(self, key: str, names) -> None:
        """TF Serving's checks of the set of input names sent to signature `key`."""
        specs = self.input_specs[key]
        named = list(names)
        if len(named) != len(specs):
            sent, want = set(named), set(specs)
            raise invalid(
                f"input size does not match signature: {len(named)}!={len(specs)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(want))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - want))}}}. "
                f"Missing but required: {{{','.join(sorted(want - sent))}}}.")
        for alias in named:
            if alias not in specs:
                raise invalid(f"input tensor alias not found in signature: {alias}. Inputs "
                              f"expected to be in the set {{{','.join(sorted(specs))}}}.")

    def check_inputs(self, key: str, named: dict[str, tuple[int, tuple[int, ...]]]) -> None:
        """Input names, then dtype, rank, shape and size of every input, then the contract.

        Sizes are those of the decoded tensors (a one-value fill counts at its full
        size), checked from the shapes alone: nothing has been allocated yet. All inputs
        together may not decode into more than `max_request_bytes`, the most a request
        could carry value by value.

        Args:
            key: a signature key that exists.
            named: input alias -> (DataType enum, shape).
        """
        self.check_names(key, named)
        specs = self.input_specs[key]
        order = list(specs)
        for alias, (dtype, shape) in named.items():
            tensors.check_input(key, alias, order.index(alias), specs[alias], dtype, shape,
                                self.limits.max_elements, self.limits.max_tensor_bytes)
        total = sum(tensors.decoded_bytes(d, s) for d, s in named.values())
        if total > self.limits.max_request_bytes:
            raise invalid(f"Inputs of signature '{key}': expected at most "
                          f"{self.limits.max_request_bytes} bytes in all once decoded, "
                          f"received {total}.")
        self._check_contract(key, {a: s for a, (_, s) in named.items()})

    def _check_contract(self, key: str, shapes: dict[str, tuple[int, ...]]) -> None:
        """What the vidgen signatures need beyond their declared shapes."""
        batches = {a: s[0] for a, s in shapes.items() if len(s) >= 1}
        if batches:
            first = sorted(batches)[0]
            for alias, b in batches.items():
                if b != batches[first]:
                    raise invalid(f"Input '{alias}' of signature '{key}': expected batch size "
                                  f"{batches[first]} (as '{first}'), received {b}.")
            if batches[first] == 0:
                raise invalid(f"Input '{first}' of signature '{key}': expected at least one "
                              "example in the batch, received 0.")
        if key in (C.SERVING_DEFAULT, C.PREDICT_UINT8) and C.CONTEXT in shapes:
            if len(shapes[C.CONTEXT]) == 5 and shapes[C.CONTEXT][1] < 1:
                raise invalid(f"Input '{C.CONTEXT}' of signature '{key}': expected at least "
                              f"one frame, received shape {tuple(shapes[C.CONTEXT])}.")
            if len(shapes[C.CONTEXT]) == 5 and shapes[C.CONTEXT][1] > C.MAX_CONTEXT:
                raise invalid(f"Input '{C.CONTEXT}' of signature '{key}': expected at most "
                              f"{C.MAX_CONTEXT} frames, received {shapes[C.CONTEXT][1]} "
                              f"(shape {tuple(shapes[C.CONTEXT])}).")
        if key == C.STEP and batches:
            self._check_step_output(key, batches[sorted(batches)[0]])

    def _check_step_output(self, key: str, batch: int) -> None:
        """The step outputs (next frame and states) are known from the batch alone."""
        out = 0
        for info in self.signature_defs[key].outputs.values():
            dims = [d.size for d in info.tensor_shape.dim]
            out += math.prod(batch if d < 0 else d for d in dims) * \
                tensors.decoded_bytes(info.dtype, ())
        if out > self.limits.max_response_bytes:
            raise invalid(f"Outputs of signature '{key}': expected at most "
                          f"{self.limits.max_response_bytes} bytes, the request would make "
                          f"{out} (batch {batch}; the server's --max_response_bytes).")

    def check_values(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """NaN/Inf, the horizon range, and the size of the response it would make.

        serving_default counts its float32 frames; predict_uint8 counts the float32
        the graph works on (context and predicted frames, 4x its uint8 bytes) against
        the same `max_response_bytes`, since its uint8 output understates the cost.
        """
        for alias, array in arrays.items():
            tensors.check_values(key, alias, array)
        if key in (C.SERVING_DEFAULT, C.PREDICT_UINT8) and C.HORIZON in arrays:
            # One value per clip (an export from before batchable signatures: a scalar).
            values = np.asarray(arrays[C.HORIZON]).reshape(-1)
            bad = values[(values < 1) | (values > C.MAX_HORIZON)]
            if bad.size:
                raise invalid(f"Input '{C.HORIZON}' of signature '{key}': expected an integer "
                              f"in [1, {C.MAX_HORIZON}], received {int(bad[0])}.")
            tensors.check_uniform(key, C.HORIZON, values)
            horizon = int(values[0])
            context = arrays[C.CONTEXT]
            batch, frame = context.shape[0], math.prod(context.shape[2:])
            if key == C.PREDICT_UINT8:
                # The graph works in float32 on the context and the frames it makes.
                work = batch * (context.shape[1] + horizon) * frame * 4
                if work > self.limits.max_response_bytes:
                    raise invalid(
                        f"Signature '{key}': expected a float32 working size of at most "
                        f"{self.limits.max_response_bytes} bytes, the request would make "
                        f"{work} (batch {batch} x (context {context.shape[1]} + horizon "
                        f"{horizon}) frames x {frame} values x 4 bytes; the server's "
                        "--max_response_bytes).")
            out = batch * horizon * frame * 4
            if key == C.SERVING_DEFAULT and out > self.limits.max_response_bytes:
                raise invalid(f"Output '{C.FRAMES}' of signature '{key}': expected at most "
                              f"{self.limits.max_response_bytes} bytes, the request would make "
                              f"{out} (batch {batch} x horizon {horizon}; the server's "
                              "--max_response_bytes).")

    # ---- running ------------------------------------------------------------------

    def run(self, key: str, arrays: dict[str, np.ndarray],
            output_filter: Optional[list[str]] = None) -> dict[str, np.ndarray]:
        """Calls signature `key` on checked inputs; TensorFlow errors keep their code."""
        import tensorflow as tf

        fn = self.functions[key]
        try:
            out = fn(**{a: tf.constant(v) for a, v in arrays.items()})
        except tf.errors.OpError as e:
            raise from_tf_error(e) from None
        outputs = {k: v.numpy() for k, v in out.items()}
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    def check_output_filter(self, key: str, output_filter) -> list[str]:
        names = list(self.signature_defs[key].outputs)
        seen = []
        for alias in output_filter:
            if alias not in names:
                raise invalid(f"output tensor alias not found in signature: {alias} Outputs "
                              f"expected to be in the set {{{','.join(sorted(names))}}}.")
            if alias in seen:
                raise invalid(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen

    def warmup_requests(self) -> list:
        """The PredictRequests in `assets.extra/tf_serving_warmup_requests` (none if absent)."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(self.path, "assets.extra", C.WARMUP_FILE)
        if not os.path.isfile(path):
            return []
        requests = []
        # TF Serving replays at most 1000 warm-up records.
        for record in tf.data.TFRecordDataset(path).take(1000):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"Warm-up record of type {log.WhichOneof('log_type')} in {path}"
                                 ": this server replays predict_log records only.")
            requests.append(log.predict_log.request)
        return requests

