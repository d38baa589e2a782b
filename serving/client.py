"""Clients for TF Serving's gRPC and REST APIs, written only against its public protocol.

Both work the same against the real `tensorflow_model_server` and against
`vidgen-serve start`, and take their signature and tensor names from
`export.contract`.

Example:

    from serving.client import PredictionClient
    with PredictionClient("localhost:8500", "vidgen") as client:
        frames = client.predict(context, horizon=10)   # (batch, 10, H, W, C)
        client.status()      # [{'version': 1, 'state': 'AVAILABLE', ...}]
        client.metadata()    # {'serving_default': {'inputs': {...}, 'outputs': {...}}, ...}
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Optional

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from export import contract as C
from serving import tensors
from serving.errors import CODE_FOR_HTTP, ServingError

# Video tensors pass gRPC's 4 MB default quickly: 20 frames of 256x256x3 float32 are 15 MB.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30


def _as_signature_dtype(context: np.ndarray, signature: str) -> np.ndarray:
    """float32 in [0, 1] for serving_default, uint8 for predict_uint8, converting if needed."""
    context = np.asarray(context)
    if signature == C.PREDICT_UINT8:
        if context.dtype == np.uint8:
            return context
        return np.round(np.clip(context, 0, 1) * 255).astype(np.uint8)
    if context.dtype == np.uint8:
        return context.astype(np.float32) / 255.0
    return context.astype(np.float32, copy=False)


def _signatures_to_dict(sig_map) -> dict:
    """{key: {"inputs": {name: {"dtype", "shape"}}, "outputs": ...}} from a SignatureDefMap."""
    def infos(m):
        return {k: {"dtype": tensors.dtype_name(v.dtype),
                    "shape": None if v.tensor_shape.unknown_rank
                    else [d.size for d in v.tensor_shape.dim]} for k, v in m.items()}
    return {k: {"method_name": v.method_name, "inputs": infos(v.inputs),
                "outputs": infos(v.outputs)}
            for k, v in sig_map.signature_def.items() if not k.startswith("__")}


def _set_request_options(client, model_name: str, version: Optional[int],
                         version_label: Optional[str], signature: str, timeout: float,
                         retries: int, backoff: float) -> None:
    """Checks and stores the options both clients share."""
    if version is not None and version_label is not None:
        raise ValueError("Give version or version_label, not both. "
                         f"Received: version={version}, version_label={version_label!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive. Received: timeout={timeout}")
    client.model_name = model_name
    client.version = version
    client.version_label = version_label
    client.signature = signature
    client.timeout = timeout
    client.retries = retries
    client.backoff = backoff


class PredictionClient:
    """gRPC client of TF Serving's PredictionService and ModelService.

    Args:
        target: "host:port" of the gRPC API.
        model_name: the served model's name.
        version: a specific version, or None for the latest.
        version_label: a version label (TF Serving with a model config), instead of `version`.
        signature: the signature `predict` uses (contract.SERVING_DEFAULT or PREDICT_UINT8).
        timeout: seconds allowed for each call (a deadline is always set).
        retries: extra attempts on UNAVAILABLE (server starting, restarting); no other code
            is retried, as a refused request would be refused again.
        backoff: first wait before a retry in seconds; doubles each time, with jitter.
        max_message_bytes: gRPC send and receive limits.
        credentials: grpc.ChannelCredentials for TLS, or None for an insecure channel.
    """

    def __init__(self, target: str, model_name: str, version: Optional[int] = None,
                 version_label: Optional[str] = None, signature: str = C.SERVING_DEFAULT,
                 timeout: float = 30.0, retries: int = 4, backoff: float = 0.1,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, credentials=None):
        _set_request_options(self, model_name, version, version_label, signature, timeout,
                             retries, backoff)
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = (grpc.secure_channel(target, credentials, options) if credentials
                         else grpc.insecure_channel(target, options))
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _spec(self, spec, signature: Optional[str] = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature is not None:
            spec.signature_name = signature

    def _call(self, method, request, timeout: Optional[float]):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        wait = self.backoff
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                return method(request, timeout=remaining)
            except grpc.RpcError as e:
                code = e.code()
                if code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries or \
                        time.monotonic() + wait >= deadline:
                    raise ServingError(code, e.details() or code.name) from None
            time.sleep(wait * random.uniform(0.5, 1.0))
            wait *= 2

    def predict_tensors(self, inputs: dict[str, np.ndarray], signature: Optional[str] = None,
                        timeout: Optional[float] = None) -> dict[str, np.ndarray]:
        """Any signature (e.g. contract.STEP): named arrays in, named arrays out."""
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature or self.signature)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tensors.to_proto(np.asarray(value)))
        response = self._call(self._predict.Predict, request, timeout)
        return {k: tensors.from_proto(v) for k, v in response.outputs.items()}

    def predict(self, context: np.ndarray, horizon: int,
                timeout: Optional[float] = None) -> np.ndarray:
        """Predicted frames (batch, horizon, H, W, C) after `context` (batch, time, H, W, C).

        `context` may be uint8 or float32 in [0, 1]; it is converted to the signature's
        dtype, and the frames come back in that dtype. The horizon travels as one value
        per clip (int32 (batch,)), which TF Serving's batching needs.
        """
        context = _as_signature_dtype(context, self.signature)
        out = self.predict_tensors(
            {C.CONTEXT: context, C.HORIZON: C.horizon_input(horizon, len(context))},
            timeout=timeout)
        return out[C.FRAMES]

    def metadata(self, timeout: Optional[float] = None) -> dict:
        """The served version's signatures: {key: {"method_name", "inputs", "outputs"}}."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._call(self._predict.GetModelMetadata, request, timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return _signatures_to_dict(sig_map)

    def status(self, timeout: Optional[float] = None) -> list[dict]:
        """[{"version", "state", "error_code", "error_message"}] for every known version."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        request.model_spec.ClearField("version_label")
        response = self._call(self._model.GetModelStatus, request, timeout)
        return [{"version": s.version,
                 "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                 "error_code": grpc.StatusCode(_code(s.status.error_code)).name,
                 "error_message": s.status.error_message}
                for s in response.model_version_status]


def _code(value: int):
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.value
    return grpc.StatusCode.UNKNOWN.value


class RestPredictionClient:
    """The same methods over TF Serving's REST API (JSON; slower and larger than gRPC).

    Args:
        base_url: e.g. "http://localhost:8501".
        model_name, version, version_label, signature, timeout, retries, backoff: as
            PredictionClient (503 is REST's UNAVAILABLE).
        row_format: send `{"instances": [...]}`, one object per example (every input,
            the horizon too, is stacked on a new first dimension by the server), instead
            of the columnar `{"inputs": {...}}`.
    """

    def __init__(self, base_url: str, model_name: str, version: Optional[int] = None,
                 version_label: Optional[str] = None, signature: str = C.SERVING_DEFAULT,
                 timeout: float = 30.0, retries: int = 4, backoff: float = 0.1,
                 row_format: bool = False):
        _set_request_options(self, model_name, version, version_label, signature, timeout,
                             retries, backoff)
        self.row_format = row_format
        self.base_url = base_url.rstrip("/")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        pass

    def _url(self, suffix: str = "") -> str:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{self.version}"
        elif self.version_label is not None:
            url += f"/labels/{self.version_label}"
        return url + suffix

    def _call(self, url: str, body: Optional[dict], timeout: Optional[float]) -> dict:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        data = None if body is None else json.dumps(body).encode()
        wait = self.backoff
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            request = urllib.request.Request(url, data=data,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=remaining) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                try:
                    message = json.loads(e.read()).get("error", e.reason)
                except ValueError:
                    message = str(e.reason)
                code = CODE_FOR_HTTP.get(e.code, grpc.StatusCode.UNKNOWN)
                error = ServingError(code, message, http_status=e.code)
            except (urllib.error.URLError, ConnectionError) as e:
                error = ServingError(grpc.StatusCode.UNAVAILABLE, f"{url}: {e}", http_status=503)
            except TimeoutError:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   "Deadline Exceeded") from None
            if error.code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries or \
                    time.monotonic() + wait >= deadline:
                raise error
            time.sleep(wait * random.uniform(0.5, 1.0))
            wait *= 2

    def predict_tensors(self, inputs: dict[str, np.ndarray], signature: Optional[str] = None,
                        timeout: Optional[float] = None) -> dict[str, np.ndarray]:
        """Any signature, named arrays in, named nested lists out (None: the only output)."""
        body = {"signature_name": signature or self.signature}
        if not self.row_format:
            body["inputs"] = {k: np.asarray(v).tolist() for k, v in inputs.items()}
            out = self._call(self._url(":predict"), body, timeout)["outputs"]
            return out if isinstance(out, dict) else {None: out}
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        batch = len(next(iter(arrays.values())))
        body["instances"] = [{k: v[i].tolist() for k, v in arrays.items()} for i in range(batch)]
        rows = self._call(self._url(":predict"), body, timeout)["predictions"]
        if rows and isinstance(rows[0], dict):
            return {k: [r[k] for r in rows] for k in rows[0]}
        return {None: rows}

    def predict(self, context: np.ndarray, horizon: int,
                timeout: Optional[float] = None) -> np.ndarray:
        """As PredictionClient.predict."""
        context = _as_signature_dtype(context, self.signature)
        out = self.predict_tensors(
            {C.CONTEXT: context, C.HORIZON: C.horizon_input(horizon, len(context))},
            timeout=timeout)
        (frames,) = out.values()
        return np.asarray(frames, dtype=context.dtype)

    def metadata(self, timeout: Optional[float] = None) -> dict:
        out = self._call(self._url("/metadata"), None, timeout)
        sig_map = json_format.ParseDict(out["metadata"]["signature_def"],
                                        get_model_metadata_pb2.SignatureDefMap())
        return _signatures_to_dict(sig_map)

    def status(self, timeout: Optional[float] = None) -> list[dict]:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{self.version}"
        out = self._call(url, None, timeout)
        return [{"version": int(s["version"]), "state": s["state"],
                 "error_code": s.get("status", {}).get("error_code", "OK"),
                 "error_message": s.get("status", {}).get("error_message", "")}
                for s in out["model_version_status"]]
