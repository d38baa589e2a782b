"""The request handling shared by the gRPC and REST front ends.

`ServingCore` turns a PredictRequest (or the REST equivalent) into a
response, in TF Serving's order of checks: model and version, signature,
input names, TensorProto structure, dtype; then the checks TF Serving leaves
to the graph (rank, shape, sizes, NaN/Inf, horizon range, response size),
all before TensorFlow is called.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Optional

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from export import contract as C
from serving import tensors
from serving.batching import Batcher
from serving.batching_parameters import BatchingOptions
from serving.errors import ServingError, invalid
from serving.model_registry import ModelRegistry
from serving.monitoring import Metrics
from serving.servable import Servable

SIGNATURE_DEF = "signature_def"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold and make.

    Args:
        max_request_bytes: largest serialized request (gRPC message or REST body).
        max_tensor_bytes: largest input tensor, decoded.
        max_elements: most elements in one input tensor.
        max_response_bytes: largest output a request may ask for (batch x horizon x frame).
        max_json_request_bytes: largest REST (JSON) body, checked before it is read: json.loads
            alone allocates 6-8 bytes of Python objects per body byte (a float object and
            its list slot per number; measured by bench/load.py), so this is kept well below
            `max_request_bytes`.
    """

    max_request_bytes: int = 256 << 20
    max_tensor_bytes: int = 256 << 20
    max_elements: int = 64 << 20
    max_response_bytes: int = 512 << 20
    max_json_request_bytes: int = 32 << 20


class ServingCore:
    """The configured models, their versions, and how requests to them are checked and run.

    Args:
        config: a ModelServerConfig (serving/model_config.py; `single_model_config` for
            one model from BASE/NAME).
        limits: request limits.
        poll_interval: seconds between version scans.
        batching: BatchingOptions, or None for one model call per request.
        model_threads: model calls that may run at once (without batching).
        metrics: a `serving.monitoring.Metrics` (None: a new one).
        allow_version_labels_for_unavailable_models: TF Serving's flag of that name.
        admission: the server's `serving.admission.Admission`, or None (no bound): every
            Predict is charged its decoded size against its bytes in flight, before it
            is decoded.
        max_batch_bytes: most bytes in one merged batch, at the float32 working size
            (None: `limits.max_request_bytes`, the most one request may decode to).
    """

    def __init__(self, config, limits: Optional[Limits] = None,
                 poll_interval: float = 1.0, batching: Optional[BatchingOptions] = None,
                 model_threads: int = 4, metrics: Optional[Metrics] = None,
                 allow_version_labels_for_unavailable_models: bool = False,
                 admission=None, max_batch_bytes: Optional[int] = None):
        self.limits = limits = limits or Limits()
        self.admission = admission
        self.metrics = metrics or Metrics()
        self.models = ModelRegistry(
            config, limits, poll_interval, warmup=self.warmup, metrics=self.metrics,
            allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models)
        self.batching = batching
        self.max_batch_bytes = (limits.max_request_bytes if max_batch_bytes is None
                                else max_batch_bytes)
        self.batcher = (Batcher(batching.num_batch_threads, batching.thread_pool_name,
                                max_batch_bytes=self.max_batch_bytes)
                        if batching else None)
        self._pool = ThreadPoolExecutor(model_threads, thread_name_prefix="model")

    def start(self) -> None:
        self.models.start()

    def stop(self) -> None:
        self.models.stop()
        if self.batcher is not None:
            self.batcher.close()
        # Requests still queued have outlived the drain: their RPCs are gone.
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- predict ------------------------------------------------------------------

    def resolve(self, spec) -> Servable:
        version = spec.version.value if spec.HasField("version") else None
        label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" \
            else None
        return self.models.resolve(spec.name, version, label)

    def predict(self, request: predict_pb2.PredictRequest,
                deadline: Optional[float] = None) -> predict_pb2.PredictResponse:
        """Answers a gRPC PredictRequest (deadline: time.monotonic() value, or None)."""
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        servable = self.resolve(request.model_spec)
        return self.predict_on(servable, request, deadline)

    def predict_on(self, servable: Servable, request: predict_pb2.PredictRequest,
                   deadline: Optional[float] = None,
                   ticket=None) -> predict_pb2.PredictResponse:
        key, _ = servable.signature_def(request.model_spec.signature_name)
        servable.check_names(key, request.inputs.keys())
        parsed = {a: tensors.parse_proto(a, p, self.limits.max_elements)
                  for a, p in request.inputs.items()}
        output_filter = servable.check_output_filter(key, request.output_filter)
        shapes = {a: (p.dtype, p.shape) for a, p in parsed.items()}
        servable.check_inputs(key, shapes)
        # Charged before decode() allocates: a fill of a few bytes may decode to megabytes.
        with self._charge(shapes, ticket, getattr(ticket, "nbytes", 0)):
            arrays = {a: p.decode() for a, p in parsed.items()}
            outputs = self.run(servable, key, arrays, deadline, ticket, charged=True)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias, value in outputs.items():
            if not output_filter or alias in output_filter:
                response.outputs[alias].CopyFrom(tensors.to_proto(value))
        return response

    def predict_arrays(self, servable: Servable, signature: str,
                       arrays: dict[str, np.ndarray],
                       deadline: Optional[float] = None,
                       ticket=None) -> tuple[str, dict[str, np.ndarray]]:
        """The REST path: inputs already decoded with the signature's dtypes.

        Args:
            ticket: the request's admission ticket (or a wrapper of it), or None; see `run`.
        """
        key, _ = servable.signature_def(signature)
        servable.check_inputs(key, {a: (tensors.dt_of(v), v.shape) for a, v in arrays.items()})
        return key, self.run(servable, key, arrays, deadline, ticket)

    @contextlib.contextmanager
    def _charge(self, shapes: dict[str, tuple[int, tuple[int, ...]]], ticket, wire: int):
        """Holds the inputs' decoded size against the bytes in flight while the request runs.

        The request's own ticket is raised to the decoded size, and released with the
        request; a request without one holds a reservation of its own until the block ends.

        Args:
            shapes: input alias -> (DataType enum, shape), already checked.
            ticket: the request's admission ticket, or None.
            wire: the request's wire size, for the message (0: the ticket's, or unknown).

        Raises:
            ServingError: RESOURCE_EXHAUSTED (naming --max_in_flight_bytes) when the decoded
                size does not fit.
        """
        if self.admission is None:
            yield
            return
        need = sum(tensors.working_bytes(d, s) for d, s in shapes.values())
        if ticket is not None:
            ticket.charge(need, wire or ticket.nbytes)
            yield
            return
        reservation = self.admission.reserve(need, wire)
        try:
            yield
        finally:
            reservation.release()

    def run(self, servable: Servable, key: str, arrays: dict[str, np.ndarray],
            deadline: Optional[float], ticket=None, *,
            charged: bool = False) -> dict[str, np.ndarray]:
        """Value checks, then the model call (batched when enabled), within the deadline.

        The inputs' decoded size is charged against the bytes in flight first (see
        `_charge`), so every front end that gets here is bounded by it.

        Args:
            deadline: time.monotonic() by which to answer, or None.
            ticket: the request's `serving.admission` ticket (or a front end's wrapper of
                it), or None; once cancelled (the client went away), the queued call is
                dropped.
            charged: the caller already charged the inputs (`predict_on`, before decoding).
        """
        if not charged:
            shapes = {a: (tensors.dt_of(v), np.shape(v)) for a, v in arrays.items()}
            with self._charge(shapes, ticket, 0):
                return self.run(servable, key, arrays, deadline, ticket, charged=True)
        servable.check_values(key, arrays)
        _check_live(deadline, ticket)
        future = self._submit(servable, key, arrays, deadline, ticket)
        if ticket is not None:
            ticket.watch(future)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except CancelledError:
            raise ServingError(grpc.StatusCode.CANCELLED,
                               "The request was cancelled before its model call started "
                               "(client gone or server shutting down).") from None

    def _submit(self, servable: Servable, key: str, arrays: dict[str, np.ndarray],
                deadline: Optional[float] = None, ticket=None) -> Future:
        options = self._batching_for(servable)
        if options is None:
            return self._pool.submit(_started_live, deadline, ticket, servable.run, key, arrays)
        # Requests share a batch only when TF Serving's merge would succeed for them: the
        # same shapes beyond the batch dimension and the same horizon.
        merge_key = (servable, key, tuple((a, v.shape[1:]) for a, v in sorted(arrays.items())),
                     tuple((a, np.asarray(arrays[a]).reshape(-1)[:1].tobytes())
                           for a in C.UNIFORM_INPUTS if a in arrays))
        return self.batcher.submit(merge_key, options, lambda x: servable.run(key, x), arrays,
                                   deadline=deadline)

    def _batching_for(self, servable: Servable) -> Optional[BatchingOptions]:
        """The server's batching options, or the version's own ones (per-model batching)."""
        if self.batching is None or not self.batching.per_model:
            return self.batching
        return servable.batching_options(self.batching)

    def warmup(self, servable: Servable) -> int:
        """Replays the export's warm-up records on `servable`; any failure fails the load.

        Returns:
            The number of records replayed.
        """
        self._batching_for(servable)   # a bad per-model batching file fails the load too
        requests = servable.warmup_requests()
        for request in requests:
            key, _ = servable.signature_def(request.model_spec.signature_name)
            servable.check_names(key, request.inputs.keys())
            arrays = {a: tensors.from_proto(p) for a, p in request.inputs.items()}
            servable.check_inputs(key, {a: (tensors.dt_of(v), v.shape)
                                        for a, v in arrays.items()})
            servable.check_values(key, arrays)
            servable.run(key, arrays)
        return len(requests)

    # ---- metadata and status ------------------------------------------------------

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF:
                # Verbatim, "%s" included: TF Serving passes a printf pattern to a
                # function that concatenates its arguments.
                raise invalid(f"Metadata field %s is not supported{field}")
        servable = self.resolve(request.model_spec)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.meta_graph.signature_def.items():
            sig_map.signature_def[k].CopyFrom(v)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF].Pack(sig_map)
        return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest
               ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        enum = get_model_status_pb2.ModelVersionStatus.State
        for v, state in self.models.status(spec.name, version):
            entry = response.model_version_status.add()
            entry.version = v
            entry.state = enum.Value(state.state)
            entry.status.SetInParent()  # TF Serving always reports a status, OK included
            if state.error is not None:
                entry.status.error_code = state.error.code.value[0]
                entry.status.error_message = state.error.message
        return response


def _check_live(deadline: Optional[float], ticket) -> None:
    """Refuses to start work whose deadline passed or whose client went away."""
    if deadline is not None and time.monotonic() >= deadline:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    if ticket is not None and ticket.cancelled.is_set():
        raise ServingError(grpc.StatusCode.CANCELLED, "The client cancelled the request.")


def _started_live(deadline: Optional[float], ticket, fn, *args):
    """`fn(*args)` on a pool thread, unless the request died while it waited in the queue."""
    _check_live(deadline, ticket)
    return fn(*args)
