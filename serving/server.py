"""A local server with TF Serving's gRPC and REST APIs, for one exported vidgen model.

Example:

    from serving.server import Server
    server = Server("models/vidgen", "vidgen", port=8500, rest_api_port=8501)
    server.start(); server.wait_for_model(); ...; server.stop()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving import rest
from serving.core import BatchingOptions, Limits, ServingCore
from serving.errors import HTTP_STATUS, ServingError, invalid

log = logging.getLogger("vidgen.serving")

# Said at start-up, so nobody mistakes this server for all of TF Serving.
NOT_IMPLEMENTED = (
    "one model per server (no --model_config_file, no model config reloading: "
    "HandleReloadConfigRequest answers UNIMPLEMENTED)",
    "version policy 'latest' only (no 'all' or 'specific' policies, no version labels)",
    "Classify, Regress and MultiInference answer TF Serving's error for predict-only "
    "signatures (vidgen exports only predict signatures)",
    "no tf.Example inputs, no base64 string tensors in REST, no SSL, no Prometheus metrics, "
    "no TFRT / TFLite / GPU options",
    "REST row format: a scalar input (horizon) is passed once, not stacked",
    "responses use tensor_content rather than repeated value fields",
)


def _abort(context, error: ServingError):
    context.abort(error.code, error.message)


def _deadline(context) -> Optional[float]:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        try:
            return self.core.predict(request, _deadline(context))
        except ServingError as e:
            _abort(context, e)

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            return self.core.metadata(request)
        except ServingError as e:
            _abort(context, e)

    def Classify(self, request, context):  # noqa: N802
        _abort(context, self._not_predict(request.model_spec, "classification",
                                          "tensorflow/serving/classify"))

    def Regress(self, request, context):  # noqa: N802
        _abort(context, self._not_predict(request.model_spec, "regression",
                                          "tensorflow/serving/regress"))

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
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "This server serves one model from --model_base_path; it has no model "
                      "config to reload.")


def _rest_handler(core: ServingCore, timeout: Optional[float], max_body: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                self._reply(400, {"error": "Content-Length must be a non-negative integer. "
                                           f"Received: {self.headers.get('Content-Length')!r}"})
                return
            if length > max_body:
                # Read nothing more: the connection is closed after the answer.
                self.close_connection = True
                error = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"Request body of {length} bytes exceeds the server's "
                                     f"limit of {max_body} bytes (--max_request_bytes).")
                self._reply(413, {"error": error.message})
                return
            body = self.rfile.read(length) if length else b""
            deadline = None if timeout is None else time.monotonic() + timeout
            status, out = rest.handle(core, method, self.path, body, deadline)
            self._reply(status, out)

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def log_message(self, fmt, *args):
            log.debug("REST %s", fmt % args)

    return Handler


class Server:
    """gRPC (PredictionService, ModelService) and REST front ends over one ServingCore.

    Args:
        model_base_path: BASE/NAME, holding numeric version directories.
        model_name: the name requests use.
        port: gRPC port (0 = any free port; read `.port` after start()).
        rest_api_port: REST port (0 = any free port, None = no REST).
        host: address to bind; 127.0.0.1 unless you mean to expose it.
        poll_interval: seconds between version scans.
        limits: request limits.
        batching: BatchingOptions or None.
        rest_api_timeout: seconds a REST request may take (TF Serving's --rest_api_timeout_in_ms).
        grpc_threads: concurrent gRPC requests.
    """

    def __init__(self, model_base_path: str, model_name: str, port: int = 8500,
                 rest_api_port: Optional[int] = 8501, host: str = "127.0.0.1",
                 poll_interval: float = 1.0, limits: Optional[Limits] = None,
                 batching: Optional[BatchingOptions] = None,
                 rest_api_timeout: Optional[float] = 30.0, grpc_threads: int = 32):
        limits = limits or Limits()
        self.core = ServingCore(model_name, model_base_path, limits, poll_interval, batching)
        self.host = host
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(grpc_threads, thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", limits.max_request_bytes),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.core), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.core),
                                                                  self._grpc)
        self.port = self._grpc.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"Could not bind gRPC to {host}:{port}.")
        self._http = None
        self.rest_api_port = None
        if rest_api_port is not None:
            self._http = ThreadingHTTPServer(
                (host, rest_api_port),
                _rest_handler(self.core, rest_api_timeout, limits.max_request_bytes))
            self._http.daemon_threads = False
            self._http.block_on_close = True
            self.rest_api_port = self._http.server_address[1]
        self._http_thread = None
        self._started = False

    def start(self, wait_for_model: bool = False,
              interrupt: Optional[threading.Event] = None) -> bool:
        """Starts polling versions and the front ends.

        Args:
            wait_for_model: open the ports only once a version serves, as TF Serving does
                (clients see UNAVAILABLE until then, which they retry).
            interrupt: an event that ends the wait early (e.g. set by SIGTERM).

        Returns:
            False if `interrupt` ended the wait before a version loaded.
        """
        self.core.start()
        while wait_for_model and not self.core.manager.loaded.wait(0.1):
            if interrupt is not None and interrupt.is_set():
                return False
        self._grpc.start()
        if self._http is not None:
            self._http_thread = threading.Thread(target=self._http.serve_forever,
                                                 name="rest", daemon=True)
            self._http_thread.start()
        self._started = True
        return True

    def wait_for_model(self, timeout: float = 60.0) -> bool:
        """True once a version serves (False after `timeout` seconds)."""
        return self.core.manager.loaded.wait(timeout)

    def stop(self, grace: float = 30.0) -> None:
        """Stops accepting requests, lets the ones in flight finish, then shuts down."""
        if self._http is not None:
            if self._started:
                self._http.shutdown()
            self._http.server_close()  # joins the REST request threads
        self._grpc.stop(grace).wait()
        self.core.stop()


__all__ = ["Server", "Limits", "BatchingOptions", "NOT_IMPLEMENTED", "HTTP_STATUS"]
