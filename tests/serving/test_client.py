"""Client behaviour: retries on UNAVAILABLE only, a deadline on every call."""

import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from export import contract as C
from serving import tensors
from serving.client import PredictionClient, RestPredictionClient
from serving.errors import ServingError


class Fake(prediction_service_pb2_grpc.PredictionServiceServicer,
           model_service_pb2_grpc.ModelServiceServicer):
    """Fails the first `fail` calls with `code`, then answers; records every deadline.

    With `hold`, each call waits for `release` first (the test sets it), so a call
    outlives any client deadline whatever the machine's speed.
    """

    def __init__(self, code=grpc.StatusCode.UNAVAILABLE, fail=0, hold=False):
        self.code, self.fail, self.hold = code, fail, hold
        self.release = threading.Event()
        self.calls, self.deadlines, self.requests = 0, [], []

    def _answer(self, context, response):
        self.calls += 1
        self.deadlines.append(context.time_remaining())
        if self.hold:
            self.release.wait(60)
        if self.calls <= self.fail:
            context.abort(self.code, "fake failure")
        return response

    def Predict(self, request, context):  # noqa: N802
        self.requests.append(request)
        response = predict_pb2.PredictResponse()
        response.outputs[C.FRAMES].CopyFrom(tensors.to_proto(np.zeros((1, 2, 4, 4, 1),
                                                                      np.float32)))
        return self._answer(context, response)

    def GetModelMetadata(self, request, context):  # noqa: N802
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.metadata["signature_def"].Pack(get_model_metadata_pb2.SignatureDefMap())
        return self._answer(context, response)

    def GetModelStatus(self, request, context):  # noqa: N802
        return self._answer(context, get_model_status_pb2.GetModelStatusResponse())


@pytest.fixture
def fake_server():
    servers = []

    def make(**kwargs):
        fake = Fake(**kwargs)
        server = grpc.server(futures.ThreadPoolExecutor(4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(fake, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return fake, PredictionClient(f"127.0.0.1:{port}", "m", timeout=5, backoff=0.01)

    yield make
    for s in servers:
        s.stop(0)


def test_retries_unavailable_then_succeeds(fake_server):
    fake, client = fake_server(fail=2)
    assert client.predict(np.zeros((1, 1, 4, 4, 1), np.float32), 2).shape == (1, 2, 4, 4, 1)
    assert fake.calls == 3


def test_gives_up_after_the_retries(fake_server):
    fake, client = fake_server(fail=100)
    client.retries = 2
    with pytest.raises(ServingError) as e:
        client.status()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and fake.calls == 3


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  grpc.StatusCode.DEADLINE_EXCEEDED])
def test_other_codes_are_not_retried(fake_server, code):
    fake, client = fake_server(code=code, fail=1)
    with pytest.raises(ServingError) as e:
        client.metadata()
    assert (e.value.code, e.value.message, fake.calls) == (code, "fake failure", 1)


def test_every_call_has_a_deadline(fake_server):
    fake, client = fake_server()
    client.predict(np.zeros((1, 1, 4, 4, 1), np.float32), 2)
    client.metadata()
    client.status()
    assert len(fake.deadlines) == 3
    assert all(d is not None and 0 < d <= 5.1 for d in fake.deadlines), fake.deadlines


def test_predict_sends_one_horizon_per_clip(fake_server):
    fake, client = fake_server()
    client.predict(np.zeros((3, 1, 4, 4, 1), np.float32), 2)
    horizon = fake.requests[0].inputs[C.HORIZON]
    # Rank 1, batch long: the form TF Serving's batching can concatenate.
    assert [d.size for d in horizon.tensor_shape.dim] == [3]
    assert tensors.from_proto(horizon).tolist() == [2, 2, 2]
    assert tensors.from_proto(horizon).dtype == np.int32


def test_deadline_exceeded(fake_server):
    fake, client = fake_server(hold=True)
    try:
        with pytest.raises(ServingError) as e:
            client.predict(np.zeros((1, 1, 4, 4, 1), np.float32), 2, timeout=0.1)
    finally:
        fake.release.set()
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_no_server_is_unavailable_after_retries():
    client = PredictionClient("127.0.0.1:1", "m", timeout=5, retries=1, backoff=0.01)
    with pytest.raises(ServingError) as e:
        client.status()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_bad_arguments():
    with pytest.raises(ValueError, match="Give version or version_label, not both"):
        PredictionClient("x:1", "m", version=1, version_label="a")
    with pytest.raises(ValueError, match="timeout must be positive"):
        PredictionClient("x:1", "m", timeout=0)


def test_rest_client_retries_503_only():
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            calls.append(self.path)
            status, body = ((503, {"error": "starting"}) if len(calls) <= 2 else
                            (200, {"model_version_status": [
                                {"version": "3", "state": "AVAILABLE",
                                 "status": {"error_code": "OK", "error_message": ""}}]}))
            if self.path.endswith("/bad"):
                status, body = 400, {"error": "no"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        client = RestPredictionClient(url, "m", backoff=0.01)
        assert client.status() == [{"version": 3, "state": "AVAILABLE", "error_code": "OK",
                                    "error_message": ""}]
        assert len(calls) == 3
        calls.clear()
        calls.extend([None, None])   # past the 503s
        with pytest.raises(ServingError) as e:
            RestPredictionClient(url, "m/bad", backoff=0.01).status()
        assert (e.value.code, e.value.http_status, e.value.message) == (
            grpc.StatusCode.INVALID_ARGUMENT, 400, "no")
        assert len(calls) == 3
    finally:
        httpd.shutdown()
        httpd.server_close()
