"""Refusals for size and time: a server with small limits, gRPC deadlines, the REST timeout.

A request that must outlive its deadline has its model call held on an event
(`Held`), so the deadline passes before the answer on any machine.
"""

import os

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export import contract as C
from serving.core import Limits
from tests.serving.conftest import MODEL, Held, clip, copy_version, start_server
from tests.serving.test_errors import INV, proto, request, rest

# Long enough to read a request on a loaded machine; a held model call outlives it.
REST_TIMEOUT = 0.5


def test_deadline_exceeded(server, stub, monkeypatch):
    servable = server.core.models.resolve(MODEL)
    held = Held(servable)   # no answer before the deadline, however fast the model is
    monkeypatch.setattr(servable, "run", held)
    try:
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request(clip(1, 3)), timeout=0.05)
    finally:
        held.release.set()
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.fixture(scope="module")
def strict(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("strict") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    srv = start_server(base, limits=Limits(max_request_bytes=200_000, max_tensor_bytes=20_000,
                                           max_elements=10_000, max_response_bytes=400_000),
                       rest_api_timeout=REST_TIMEOUT)
    assert srv.wait_for_model(60)
    yield srv
    srv.stop(grace=5)


def test_limits(strict):
    with grpc.insecure_channel(f"127.0.0.1:{strict.port}",
                               [("grpc.max_send_message_length", 1 << 30)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        cases = [
            (request(clip(1, 60)), INV,   # 15,360 elements
             "Input 'context' of signature 'serving_default': expected at most 10000 elements, "
             "received 15360 (shape (1, 60, 16, 16, 1))."),
            (request(clip(1, 30)), INV,   # 7,680 elements, 30,720 bytes
             "Input 'context' of signature 'serving_default': expected at most 20000 bytes, "
             "received 30720 (shape (1, 30, 16, 16, 1))."),
            (request(clip(1, 3), horizon=500), INV,
             "Output 'frames' of signature 'serving_default': expected at most 400000 bytes, "
             "the request would make 512000 (batch 1 x horizon 500; the server's "
             "--max_response_bytes)."),
            # A huge declared shape is refused before anything is allocated.
            (request(proto(dims=(1 << 20, 1 << 20, 16, 16, 1))), INV,
             "Input 'context' of signature 'serving_default': expected at most 10000 elements, "
             f"received {(1 << 40) * 256} (shape ({1 << 20}, {1 << 20}, 16, 16, 1))."),
        ]
        for req, code, message in cases:
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(req, timeout=30)
            assert (e.value.code(), e.value.details()) == (code, message)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request(clip(1, 300)), timeout=30)   # 307 KB > 200 KB
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status, body = rest(strict, "/v1/models/vidgen:predict", b"x" * 300_000)
    assert status == 413 and "exceeds the server's limit of 200000 bytes" in body["error"]


def test_rest_timeout_is_504(strict, monkeypatch):
    # The model call is held past the REST timeout: the deadline passes whatever the speed.
    servable = strict.core.models.resolve(MODEL)
    held = Held(servable)
    monkeypatch.setattr(servable, "run", held)
    try:
        status, body = rest(strict, "/v1/models/vidgen:predict",
                            {"inputs": {C.CONTEXT: clip(1, 15).tolist(), C.HORIZON: [10]}})
    finally:
        held.release.set()
    assert (status, body) == (504, {"error": "Deadline Exceeded"})
