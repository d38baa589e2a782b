"""The server under load and faults: bounded work in flight, deadlines, REST hygiene.

The model call is held on an event (the servable's `run` is wrapped), so the
number of requests in flight is known exactly; waits poll with a deadline.
"""

import http.client
import json
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export import contract as C
from serving import rest, tensors
from serving.batching import Batcher
from serving.batching_parameters import BatchingOptions
from serving.client import PredictionClient
from serving.core import Limits
from serving.errors import ServingError
from tests.serving.conftest import (
    MODEL,
    Held,
    clip,
    make_server,
    wait_for,
)

LIMIT = 2
REQUEST_BYTES = 20 << 10    # a clip(8, 2) request (~16.5 KB) fits; two do not fit in flight
IN_FLIGHT_BYTES = 24 << 10
JSON_BYTES = 16 << 10       # a REST clip(1, 2) body is ~10 KB



@pytest.fixture(scope="module")
def limited(exported, tmp_path_factory):
    server = make_server(
        exported, tmp_path_factory.mktemp("limited"), max_in_flight_requests=LIMIT,
        max_in_flight_bytes=IN_FLIGHT_BYTES,
        limits=Limits(max_request_bytes=REQUEST_BYTES, max_json_request_bytes=JSON_BYTES))
    yield server
    server.stop(grace=5)


@pytest.fixture
def held(limited, monkeypatch):
    servable = limited.core.models.resolve(MODEL)
    hold = Held(servable)
    monkeypatch.setattr(servable, "run", hold)
    yield hold
    hold.release.set()
    assert wait_for(lambda: limited.admission.requests == 0)


def grpc_predict(server, batch=1):
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=30, retries=0) as c:
        try:
            return c.predict(clip(batch, 2), 1).shape
        except ServingError as e:
            return e.code


def rest_post(server, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    conn.request("POST", f"/v1/models/{MODEL}:predict", body,
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


def json_body(batch=1) -> bytes:
    return json.dumps({"inputs": {C.CONTEXT: clip(batch, 2).tolist(),
                                  C.HORIZON: C.horizon_input(1, batch).tolist()}}).encode()


def in_threads(calls):
    """Starts each call on a thread; returns the queue their results arrive on."""
    results = queue.Queue()
    for call in calls:
        threading.Thread(target=lambda c=call: results.put(c()), daemon=True).start()
    return results


def test_grpc_beyond_the_in_flight_limit_is_resource_exhausted_at_once(limited, held):
    results = in_threads([lambda: grpc_predict(limited)] * (LIMIT + 3))
    refused = [results.get(timeout=20) for _ in range(3)]   # while LIMIT are held
    assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
    assert wait_for(lambda: held.calls == LIMIT)   # the admitted ones reach the model
    held.release.set()
    assert [results.get(timeout=30) for _ in range(LIMIT)] == [(1, 1, 16, 16, 1)] * LIMIT


def test_rest_beyond_the_in_flight_limit_is_429_json(limited, held):
    body = json_body()
    results = in_threads([lambda: rest_post(limited, body)] * (LIMIT + 2))
    refused = [results.get(timeout=20) for _ in range(2)]
    assert [status for status, _ in refused] == [429, 429]
    assert "--max_in_flight_requests 2" in refused[0][1]["error"]
    held.release.set()
    answered = [results.get(timeout=30) for _ in range(LIMIT)]
    assert [status for status, _ in answered] == [200] * LIMIT


def test_bytes_in_flight_limit(limited, held):
    big = in_threads([lambda: grpc_predict(limited, batch=8)])
    assert wait_for(lambda: held.calls == 1)
    assert grpc_predict(limited, batch=8) == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = in_threads([lambda: grpc_predict(limited, batch=1)])   # still fits
    assert wait_for(lambda: held.calls == 2)
    held.release.set()
    assert big.get(timeout=30) == (8, 1, 16, 16, 1)
    assert small.get(timeout=30) == (1, 1, 16, 16, 1)


def test_cancelled_and_expired_requests_are_not_run(limited, held, monkeypatch):
    pool = ThreadPoolExecutor(1)   # one model thread: the second call queues behind the first
    monkeypatch.setattr(limited.core, "_pool", pool)
    first = in_threads([lambda: grpc_predict(limited)])
    assert wait_for(lambda: held.calls == 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{limited.port}")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[C.CONTEXT].CopyFrom(tensors.to_proto(clip(1, 2)))
    request.inputs[C.HORIZON].CopyFrom(tensors.to_proto(C.horizon_input(1, 1)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    gone = stub.Predict.future(request)            # no deadline; the client goes away
    assert wait_for(lambda: limited.admission.requests == 2 or gone.done())
    assert not gone.done(), gone.exception()
    gone.cancel()
    assert wait_for(lambda: limited.admission.requests == 1)   # its handler let go at once
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, timeout=0.5)          # expires while queued
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    held.release.set()
    assert first.get(timeout=30) == (1, 1, 16, 16, 1)
    pool.submit(lambda: None).result(30)            # the queue has been worked through
    assert held.calls == 1
    channel.close()
    pool.shutdown()


def test_json_limit_is_413_before_the_body_is_read(limited):
    with socket.create_connection(("127.0.0.1", limited.rest_api_port), timeout=20) as s:
        s.sendall(f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {JSON_BYTES + 1}\r\n\r\n".encode())
        response = http.client.HTTPResponse(s)
        response.begin()                            # no body sent: the answer comes anyway
        assert response.status == 413
        assert "--max_json_request_bytes" in json.loads(response.read())["error"]


def test_handler_exceptions_are_json_500_and_keep_the_connection(limited, monkeypatch):
    def boom(*args):
        raise RuntimeError("boom")

    conn = http.client.HTTPConnection("127.0.0.1", limited.rest_api_port, timeout=20)
    monkeypatch.setattr(rest, "handle", boom)
    conn.request("GET", f"/v1/models/{MODEL}")
    response = conn.getresponse()
    assert response.status == 500 and "error" in json.loads(response.read())
    monkeypatch.undo()
    conn.request("GET", f"/v1/models/{MODEL}/versions/" + "9" * 5000)   # int() refuses it
    response = conn.getresponse()
    assert response.status >= 400 and "error" in json.loads(response.read())
    conn.request("GET", f"/v1/models/{MODEL}")     # the same connection still answers
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["model_version_status"]
    conn.close()


def test_a_slow_client_is_cut_off_after_the_read_timeout(exported, tmp_path):
    server = make_server(exported, tmp_path, rest_api_timeout=1.0)
    try:
        with socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=20) as s:
            s.sendall(b"POST /v1/mod")             # half a request line, then nothing
            start = time.monotonic()
            while s.recv(1 << 16):                  # a 400 at most, then closed
                pass
            assert time.monotonic() - start < 10
    finally:
        server.stop(grace=2)


def test_stop_returns_within_the_drain_while_slow_and_idle_clients_are_open(exported, tmp_path):
    # Read timeout 30 s: the drain itself must close them. Three connections at most.
    server = make_server(exported, tmp_path, max_rest_connections=3)
    slow = socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=20)
    slow.sendall(b"POST /v1/mod")
    idle = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=20)
    idle.request("GET", f"/v1/models/{MODEL}")
    assert idle.getresponse().read()                # keep-alive: the connection stays open
    other = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=20)
    other.request("POST", f"/v1/models/{MODEL}:predict", json_body())
    response = other.getresponse()                  # another client is not blocked
    assert response.status == 200 and "outputs" in json.loads(response.read())
    with socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=20) as s:
        response = http.client.HTTPResponse(s)      # a fourth: refused at once, in JSON
        response.begin()
        assert response.status == 503
        assert "--max_rest_connections" in json.loads(response.read())["error"]
    stopped = threading.Event()
    start = time.monotonic()
    threading.Thread(target=lambda: (server.stop(grace=2), stopped.set()), daemon=True).start()
    assert stopped.wait(15), "stop() hung on open REST connections"
    assert time.monotonic() - start < 5
    for conn in (slow, idle, other):
        conn.close()


def test_batcher_drops_expired_and_cancelled_tasks_and_close_cancels_the_queue():
    release, ran = threading.Event(), queue.Queue()

    def run(arrays):
        ran.put(int(arrays["x"][0, 0]))
        assert release.wait(30)
        return {"y": arrays["x"]}

    def x(value):
        return {"x": np.full((1, 1), value)}

    batcher = Batcher(1)
    options = BatchingOptions(max_batch_size=1, max_enqueued_batches=10)
    first = batcher.submit(("k",), options, run, x(0))
    assert ran.get(timeout=30) == 0                  # the only thread is busy with `first`
    expired = batcher.submit(("k",), options, run, x(1), deadline=time.monotonic())
    cancelled = batcher.submit(("k",), options, run, x(2))
    assert cancelled.cancel()
    second = batcher.submit(("k",), options, run, x(3))
    release.set()
    assert first.result(30)["y"].shape == (1, 1)
    with pytest.raises(ServingError) as e:
        expired.result(30)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert ran.get(timeout=30) == 3 and second.result(30)["y"][0, 0] == 3
    release.clear()
    third = batcher.submit(("k",), options, run, x(4))
    assert ran.get(timeout=30) == 4
    queued = batcher.submit(("k",), options, run, x(5))
    closing = threading.Thread(target=batcher.close)
    closing.start()
    assert wait_for(queued.cancelled)                # close() cancels what is still queued
    release.set()
    closing.join(30)
    assert third.result(30)["y"][0, 0] == 4 and ran.empty()
