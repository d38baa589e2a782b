"""A local server with TF Serving's gRPC and REST APIs for exported vidgen models.

Example:

    from serving.server import Server
    server = Server("models/vidgen", "vidgen", port=8500, rest_api_port=8501)
    server.start(); server.wait_for_model(); ...; server.stop()

    # Several models, version policies and labels: TF Serving's model config file.
    server = Server(model_config_file="models.config", model_config_file_poll_wait_seconds=5)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent import futures
from typing import Optional

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving import model_config, monitoring
from serving.admission import Admission
from serving.core import BatchingOptions, Limits, ServingCore
from serving.errors import HTTP_STATUS, ServingError, invalid
from serving.http_server import RestServer, make_handler

log = logging.getLogger("vidgen.serving")

# gRPC calls beyond the admitted Predicts (status, metadata, reload) that may run at once.
CONTROL_RPCS = 8

# Said at start-up, so nobody mistakes this server for all of TF Serving.
NOT_IMPLEMENTED = (
    "model configs: model_config_list only (no custom_model_config, no logging_config, no "
    "model_config_list_root_dir, so base_path must be absolute), local directories only; "
    "HandleReloadConfigRequest ignores metric_names",
    "Classify, Regress and MultiInference answer TF Serving's error for predict-only "
    "signatures (vidgen exports only predict signatures)",
    "no tf.Example inputs, no base64 string tensors in REST, no SSL, "
    "no TFRT / TFLite / GPU options",
    "Prometheus: the request, load and warm-up metrics only, not TensorFlow's own "
    "(:tensorflow:core:...); counters are exported untyped to keep TF Serving's sample names",
    "responses use tensor_content rather than repeated value fields",
)


def _abort(context, error: ServingError):
    context.abort(error.code, error.message)


def _deadline(context) -> Optional[float]:
    remaining = context.time_remaining()
    # A call without a deadline reports an "infinite" remaining time, too large for a wait.
    if remaining is None or remaining > 1e7:
        return None
    return time.monotonic() + remaining


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore, admission: Optional[Admission] = None):
        self.core = core
        self.admission = admission

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        try:
            with self.core.metrics.request(request.model_spec.name, "Predict", "GRPC") as call:
                if not request.HasField("model_spec"):
                    raise invalid("Missing ModelSpec")
                servable = self.core.resolve(request.model_spec)
                call.version = servable.version
                if self.admission is None:
                    return self.core.predict_on(servable, request, _deadline(context))
                with self.admission.admit(request.ByteSize()) as ticket:
                    # Called when the RPC ends, cancelled by the client or the drain included.
                    context.add_callback(ticket.cancel)
                    if not context.is_active():
                        ticket.cancel()
                    return self.core.predict_on(servable, request, _deadline(context),
                                                ticket)
        except ServingError as e:
            _abort(context, e)

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            return self.core.metadata(request)
        except ServingError as e:
            _abort(context, e)

    def Classify(self, request, context):  # noqa: N802
        try:
            with self.core.metrics.request(request.model_spec.name, "Classify", "GRPC"):
                raise self._not_predict(request.model_spec, "classification",
                                        "tensorflow/serving/classify")
        except ServingError as e:
            _abort(context, e)

    def Regress(self, request, context):  # noqa: N802
        try:
            with self.core.metrics.request(request.model_spec.name, "Regress", "GRPC"):
                raise self._not_predict(request.model_spec, "regression",
                                        "tensorflow/serving/regress")
        except ServingError as e:
            _abort(context, e)

    def MultiInference(self, request, context):  # noqa: N802
        try:
            if not request.tasks:
                raise invalid("Found ModelSpec with an empty model name.")
            names = {t.model_spec.name for t in request.tasks}
            if "" in names:
                raise invalid("Found ModelSpec with an empty model name.")
            if len(names) > 1:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same "
                              "model name.")
            task = request.tasks[0]
            servable = self.core.resolve(task.model_spec)
            seen = set()
            for task in request.tasks:
                key = task.model_spec.signature_name or "serving_default"
                if key in seen:
                    raise invalid(f"Duplicate evaluation of signature: {key}")
                seen.add(key)
                if key not in servable.signature_defs:
                    raise invalid(f"Requested signature not found in model graph: {key}")
                if task.method_name == "tensorflow/serving/classify":
                    raise self._not_predict(task.model_spec, "classification", task.method_name)
                if task.method_name == "tensorflow/serving/regress":
                    raise self._not_predict(task.model_spec, "regression", task.method_name)
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"Unsupported signature method_name: {task.method_name}")
        except ServingError as e:
            _abort(context, e)

    def _not_predict(self, spec, kind: str, method: str) -> ServingError:
        try:
            servable = self.core.resolve(spec)
        except ServingError as e:
            return e
        key = spec.signature_name or "serving_default"
        if key not in servable.signature_defs:
            return invalid(f"No signature was found with the name: {key}")
        return invalid(f"Expected {kind} signature method_name to be {method}. Was: "
                       f"{servable.signature_defs[key].method_name}")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            return self.core.status(request)
        except ServingError as e:
            _abort(context, e)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        """Replaces the model config, as TF Serving's ModelServiceImpl does.

        The answer comes once every newly added model serves (or failed to load); a
        refused config leaves the old one in force. `metric_names` is not supported.
        """
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid("ServerModelConfig type not supported by "
                              "HandleReloadConfigRequest. Only ModelConfigList is currently "
                              "supported")
            self.core.models.reload(request.config, wait=True,
                                    timeout=context.time_remaining())
        except ServingError as e:
            log.error("ReloadConfig failed: %s", e.message)
            _abort(context, e)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()   # error_code OK
        return response


class Server:
    """gRPC (PredictionService, ModelService) and REST front ends over one ServingCore.

    The models come from exactly one of: `model_base_path` with `model_name` (one
    model, TF Serving's default policy: the highest version), `model_config` (a
    ModelServerConfig), or `model_config_file` (its text format, re-read every
    `model_config_file_poll_wait_seconds` seconds when that is positive).

    Args:
        model_base_path: BASE/NAME, holding numeric version directories.
        model_name: the name requests use.
        port: gRPC port (0 = any free port; read `.port` after start()).
        rest_api_port: REST port (0 = any free port, None = no REST).
        host: address to bind; 127.0.0.1 unless you mean to expose it.
        poll_interval: seconds between version scans.
        limits: request limits.
        batching: BatchingOptions or None.
        rest_api_timeout: seconds a REST request may take (TF Serving's --rest_api_timeout_in_ms);
            also how long a REST connection may take to send a request, or stay idle.
        grpc_threads: gRPC handler threads (default: enough for every admitted RPC).
        model_config: a ModelServerConfig instead of `model_base_path`/`model_name`.
        model_config_file: a text ModelServerConfig file instead of them.
        model_config_file_poll_wait_seconds: how often to re-read `model_config_file`
            (0: never).
        allow_version_labels_for_unavailable_models: TF Serving's flag of that name.
        monitoring_config: a `monitoring.MonitoringConfig`; with prometheus_config.enable,
            metrics are served on the REST port.
        max_in_flight_requests: Predict requests (gRPC and REST together) in flight at most;
            beyond, RESOURCE_EXHAUSTED (REST 429) at once. gRPC itself refuses RPCs beyond
            this plus CONTROL_RPCS.
        max_in_flight_bytes: request bytes in flight at most (at least `max_request_bytes`).
            A request counts at the larger of its wire size and what it decodes to (at
            the float32 working size, one-value fills at their declared shape), charged
            from its shapes before anything is decoded.
        max_rest_connections: REST connections (threads) at most; beyond, a 503.
        max_batch_bytes: most bytes in one merged batch (stacked and padded, at the float32
            working size); a request that would make its batch larger starts the next
            batch, one larger alone runs alone. None: `max_request_bytes`. TF Serving's
            BatchingParameters has no such field.

    Raises:
        ValueError: the models are given in none or more than one of the three ways.
        ConfigFileError: `model_config_file` cannot be read or parsed.
        ServingError: the config is refused (TF Serving's checks and label rule).
    """

    def __init__(self, model_base_path: Optional[str] = None, model_name: Optional[str] = None,
                 port: int = 8500, rest_api_port: Optional[int] = 8501,
                 host: str = "127.0.0.1", poll_interval: float = 1.0,
                 limits: Optional[Limits] = None, batching: Optional[BatchingOptions] = None,
                 rest_api_timeout: Optional[float] = 30.0, grpc_threads: Optional[int] = None,
                 *,
                 model_config=None, model_config_file: Optional[str] = None,
                 model_config_file_poll_wait_seconds: float = 0.0,
                 allow_version_labels_for_unavailable_models: bool = False,
                 monitoring_config=None, max_in_flight_requests: int = 32,
                 max_in_flight_bytes: int = 1 << 30, max_rest_connections: int = 256,
                 max_batch_bytes: Optional[int] = None):
        limits = limits or Limits()
        if max_batch_bytes is not None and max_batch_bytes < 1:
            raise ValueError(f"max_batch_bytes must be positive. Received: {max_batch_bytes}")
        if max_in_flight_bytes < limits.max_request_bytes:
            raise ValueError("max_in_flight_bytes must be at least max_request_bytes, or the "
                             "largest request could never run. Received: max_in_flight_bytes="
                             f"{max_in_flight_bytes}, max_request_bytes="
                             f"{limits.max_request_bytes}")
        self.admission = Admission(max_in_flight_requests, max_in_flight_bytes)
        config = _models_config(model_base_path, model_name, model_config, model_config_file)
        self.model_config_file = model_config_file
        self.model_config_file_poll_wait_seconds = model_config_file_poll_wait_seconds
        self.metrics_path = monitoring.prometheus_path(monitoring_config)
        self.core = ServingCore(
            config, limits, poll_interval, batching, metrics=monitoring.Metrics(),
            allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
            admission=self.admission, max_batch_bytes=max_batch_bytes)
        self.metrics = self.core.metrics
        self.host = host
        max_rpcs = max_in_flight_requests + CONTROL_RPCS
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(grpc_threads or max_rpcs, thread_name_prefix="grpc"),
            maximum_concurrent_rpcs=max_rpcs,
            options=[("grpc.max_receive_message_length", limits.max_request_bytes),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.core, self.admission), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.core),
                                                                  self._grpc)
        self.port = self._grpc.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"Could not bind gRPC to {host}:{port}.")
        self._http = None
        self.rest_api_port = None
        if rest_api_port is not None:
            self._http = RestServer(
                (host, rest_api_port),
                make_handler(self.core, rest_api_timeout, limits.max_request_bytes,
                             self.metrics_path, self.admission,
                             limits.max_json_request_bytes),
                max_rest_connections, rest_api_timeout or 30.0)
            self.rest_api_port = self._http.server_address[1]
        self._http_thread = None
        self._started = False

    def start(self, wait_for_model: bool = False,
              interrupt: Optional[threading.Event] = None) -> bool:
        """Starts polling versions (and the config file) and the front ends.

        Args:
            wait_for_model: open the ports only once every model serves a version, as TF
                Serving does (clients see UNAVAILABLE until then, which they retry).
            interrupt: an event that ends the wait early (e.g. set by SIGTERM).

        Returns:
            False if `interrupt` ended the wait before the models loaded.
        """
        self.core.start()
        if self.model_config_file and self.model_config_file_poll_wait_seconds > 0:
            self.core.models.watch(self.model_config_file,
                                   self.model_config_file_poll_wait_seconds)
        if wait_for_model and not self.core.models.wait_until_available(interrupt=interrupt):
            return False
        self._grpc.start()
        if self._http is not None:
            self._http_thread = threading.Thread(target=self._http.serve_forever,
                                                 name="rest", daemon=True)
            self._http_thread.start()
        self._started = True
        return True

    def wait_for_model(self, timeout: float = 60.0) -> bool:
        """True once every model serves a version (False after `timeout` seconds)."""
        return self.core.models.wait_until_available(timeout)

    def stop(self, grace: float = 30.0) -> None:
        """Stops accepting requests, lets the ones in flight finish, then shuts down.

        Within `grace` seconds (plus the model calls already running): idle REST
        connections are closed at once, requests in flight may finish, then gRPC
        cancels the rest and queued model calls are dropped.
        """
        end = time.monotonic() + grace
        grpc_done = self._grpc.stop(grace)   # refuses new RPCs at once, in the background
        if self._http is not None:
            if self._started:
                self._http.shutdown()
            self._http.drain(grace)
        grpc_done.wait(max(0.0, end - time.monotonic()) + 1.0)
        self.core.stop()


def _models_config(base_path, name, config, config_file):
    given = [what for what, value in (("model_base_path/model_name", base_path or name),
                                      ("model_config", config is not None),
                                      ("model_config_file", config_file)) if value]
    if len(given) != 1:
        raise ValueError("Give the models one way: model_base_path with model_name, "
                         "model_config, or model_config_file. Received: "
                         f"{', '.join(given) if given else 'none of them'}.")
    if config_file:
        return model_config.read_model_config(config_file)
    if config is not None:
        return config
    if not (base_path and name):
        raise ValueError("model_base_path and model_name go together. Received: "
                         f"model_base_path={base_path!r}, model_name={name!r}.")
    # Unlike TF Serving, a relative BASE/NAME is taken relative to the working directory.
    return model_config.single_model_config(name, os.path.abspath(base_path))


__all__ = ["Server", "Limits", "BatchingOptions", "NOT_IMPLEMENTED", "HTTP_STATUS"]
