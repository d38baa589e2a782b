"""REST under slow and vanishing clients: admission after the body, timeouts, JSON limits.

Slow clients are raw sockets that stop sending; the server's read timeout cuts
them off. A request that must stay queued has its model call held (`Held`) on
a single model thread, so it is queued on any machine; waits poll with a
deadline.
"""

import http.client
import json
import os
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from export import contract as C
from serving import rest, tensors
from serving.batching_parameters import BatchingOptions
from serving.client import PredictionClient
from serving.core import Limits
from serving.errors import ServingError
from tests.serving.conftest import (
    MODEL,
    Held,
    clip,
    copy_version,
    make_server,
    start_server,
    wait_for,
)

LIMIT = 2
# The REST timeout, which is also the body's read timeout: long enough for a normal
# request on a loaded machine, short enough that a slow body's 408 comes soon.
TIMEOUT = 2.0
# A horizon-1 answer (256 floats, JSON <= 8 KB) fits; a horizon-10 one fits as float32
# (10 KB) but not as JSON (<= 78 KB).
RESPONSE_BYTES = 40_000
PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def hygiene(exported, tmp_path_factory):
    server = make_server(exported, tmp_path_factory.mktemp("hygiene"),
                         max_in_flight_requests=LIMIT, rest_api_timeout=TIMEOUT,
                         limits=Limits(max_response_bytes=RESPONSE_BYTES))
    yield server
    server.stop(grace=5)


class Counted:
    """A servable's `run` that counts its calls and runs them at once."""

    def __init__(self, servable):
        self.run = servable.run
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.run(*args, **kwargs)


@pytest.fixture
def counted(hygiene, monkeypatch):
    servable = hygiene.core.models.resolve(MODEL)
    count = Counted(servable)
    monkeypatch.setattr(servable, "run", count)
    return count


def json_body(horizon=1) -> bytes:
    return json.dumps({"inputs": {C.CONTEXT: clip(1, 2).tolist(),
                                  C.HORIZON: C.horizon_input(horizon, 1).tolist()}}).encode()


def rest_post(server, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    try:
        conn.request("POST", PREDICT, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def grpc_predict(server, horizon=1):
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=30, retries=0) as c:
        try:
            return c.predict(clip(1, 2), horizon)
        except ServingError as e:
            return e.code


def raw_answer(sock):
    """(status, JSON body) of the one answer on `sock`."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def test_slow_bodies_take_no_admission_slot_and_get_a_408(hygiene, counted, monkeypatch):
    reading = []   # connections whose handler has started to read a body

    def spy(request, body=False, _reading=hygiene._http.reading):
        if body:
            reading.append(request)
        return _reading(request, body)

    monkeypatch.setattr(hygiene._http, "reading", spy)
    slow = []
    for _ in range(LIMIT + 2):   # more slow bodies than admission slots
        s = socket.create_connection(("127.0.0.1", hygiene.rest_api_port), timeout=20)
        s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{".encode())
        slow.append(s)
    try:
        assert wait_for(lambda: len(reading) == LIMIT + 2, timeout=TIMEOUT)
        assert hygiene.admission.requests == 0
        status, body = rest_post(hygiene, json_body())   # a normal request still runs
        assert status == 200 and np.asarray(body["outputs"]).shape == (1, 1, 16, 16, 1)
        assert grpc_predict(hygiene).shape == (1, 1, 16, 16, 1)
        for s in slow:   # each slow body gets its timeout answer, and no model call
            status, body = raw_answer(s)
            assert status == 408 and "--rest_api_timeout_in_ms" in body["error"]
        assert counted.calls == 2
    finally:
        for s in slow:
            s.close()


def test_bodies_being_received_are_bounded_apart_from_grpc(exported, tmp_path):
    """Slow bodies hold bytes of their own budget: beyond it 429 at once, gRPC unaffected."""
    budget = 8 << 20   # a refused body larger than the socket buffers is still answered
    server = make_server(exported, tmp_path, max_in_flight_requests=LIMIT,
                         max_in_flight_bytes=budget, rest_api_timeout=TIMEOUT,
                         limits=Limits(max_request_bytes=budget, max_tensor_bytes=budget,
                                       max_json_request_bytes=budget))
    slow = socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=20)
    try:
        declared = budget - 1000   # holds nearly the whole budget while it trickles in
        slow.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {declared}\r\n\r\n{{".encode())
        body = json_body()
        assert len(body) > 1000
        # Refused before its body is read, while the slow one is being received...
        assert wait_for(lambda: rest_post(server, body)[0] == 429, timeout=TIMEOUT)
        status, answer = rest_post(server, body)
        assert status == 429 and f"--max_in_flight_bytes {budget}" in answer["error"]
        assert server.admission.requests == 0
        # A refused body is read and dropped after the answer, not left unread: the client,
        # still sending it, reads the answer (an unread body would reset the connection).
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
        try:
            for _ in range(2):
                conn.request("POST", PREDICT, b" " * (6 << 20),
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                assert response.status == 429
                assert "--max_in_flight_bytes" in json.loads(response.read())["error"]
        finally:
            conn.close()
        # With `Expect: 100-continue` the refusal comes before the body is sent.
        with socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=20) as s:
            s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n"
                      "Expect: 100-continue\r\n\r\n".encode())
            status, answer = raw_answer(s)
            assert status == 429 and "--max_in_flight_bytes" in answer["error"]
        # ...while gRPC, which the bodies cannot hold, still runs.
        assert grpc_predict(server).shape == (1, 1, 16, 16, 1)
        status, answer = raw_answer(slow)
        assert status == 408
        # The slow body's bytes are given back when it ends.
        status, answer = rest_post(server, body)
        assert status == 200, answer
    finally:
        slow.close()
        server.stop(grace=5)


def test_a_slow_parse_answers_the_timeout_and_runs_no_model(hygiene, counted, monkeypatch):
    parse = rest.parse_json

    def slow_parse(body):
        # The REST deadline started before the body was read: it has passed after this.
        time.sleep(TIMEOUT)
        return parse(body)

    monkeypatch.setattr(rest, "parse_json", slow_parse)
    assert rest_post(hygiene, json_body()) == (504, {"error": "Deadline Exceeded"})
    assert counted.calls == 0


def test_json_answer_beyond_the_response_limit_is_refused(hygiene, counted):
    status, body = rest_post(hygiene, json_body(horizon=10))
    assert status == 413
    assert "response limit of 40000 bytes (--max_response_bytes)" in body["error"]
    assert counted.calls == 0   # refused from the shapes, before the model runs
    assert grpc_predict(hygiene, horizon=10).shape == (1, 10, 16, 16, 1)   # gRPC fits
    status, body = rest_post(hygiene, json_body(horizon=1))
    assert status == 200
    np.testing.assert_array_equal(np.asarray(body["outputs"], np.float32),
                                  grpc_predict(hygiene, horizon=1))


@pytest.mark.parametrize("fmt,outputs", [
    ("row", {"a": np.float32([[1.5, -2.25e-30], [np.nan, np.inf]])}),
    ("row", {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.int64([7, -8])}),
    ("row", {"long_name": np.int64([-2**63] * 9), "b": np.bool_([False] * 9)}),
    ("columnar", {"a": np.zeros((2, 0), np.float32), "b": np.array(3, np.int32)}),
    ("columnar", {"a": np.random.default_rng(0).standard_normal((3, 70_000))
                  .astype(np.float32) * 1e-7}),   # more than one block of elements
])
def test_encoded_answer_is_json_dumps_of_the_lists_and_within_its_bound(fmt, outputs):
    text = json.dumps(rest.format_predict(fmt, outputs))
    assert bytes(rest.encode_predict(fmt, outputs, 1 << 30)).decode() == text
    assert len(text) <= rest.answer_size_bound(fmt, outputs)
    for value in outputs.values():
        assert len(json.dumps(value.tolist())) <= rest.json_size_bound(value)


def test_longest_float_text_is_within_the_bound():
    worst = np.float32([-1.1754944e-38, -1.2345678e-05, -3.4028235e38, -1e-45])
    for value in worst:
        assert len(json.dumps(np.asarray([value]).tolist())) <= rest.json_size_bound(
            np.asarray([value]))


def client_gone_while_queued(server, monkeypatch):
    """A REST client leaves while its call is queued behind a held one; returns the `Held`."""
    servable = server.core.models.resolve(MODEL)
    held = Held(servable)
    monkeypatch.setattr(servable, "run", held)
    first = queue.Queue()
    threading.Thread(target=lambda: first.put(grpc_predict(server)), daemon=True).start()
    try:
        assert wait_for(lambda: held.calls == 1)
        body = json_body()
        with socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=20) as s:
            s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                      "\r\n\r\n".encode() + body)
            assert wait_for(lambda: server.admission.requests == 2)
        # The client is gone while its call waits behind the held one: the call is
        # cancelled and its slot freed before the model is free again.
        assert wait_for(lambda: server.admission.requests == 1)
    finally:
        held.release.set()
    assert first.get(timeout=30).shape == (1, 1, 16, 16, 1)
    assert wait_for(lambda: server.admission.requests == 0)
    return held


@pytest.fixture(scope="module", params=["model pool", "batcher"])
def patient(request, exported, tmp_path_factory):
    """A server whose REST timeout outlasts the test: only the client can end a request."""
    base = tmp_path_factory.mktemp("patient") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    # One batch thread and batches of one: the second request waits in the batch queue.
    batching = (BatchingOptions(max_batch_size=1, num_batch_threads=1)
                if request.param == "batcher" else None)
    server = start_server(base, max_in_flight_requests=LIMIT, rest_api_timeout=300.0,
                          batching=batching)
    assert server.wait_for_model(60)
    yield server
    server.stop(grace=5)


def test_a_rest_client_gone_while_queued_is_not_run(patient, monkeypatch):
    pool = ThreadPoolExecutor(1)   # one model thread: the second call queues behind the first
    monkeypatch.setattr(patient.core, "_pool", pool)
    held = client_gone_while_queued(patient, monkeypatch)
    # A later request runs after the dropped one would have: by then it was dropped.
    assert grpc_predict(patient).shape == (1, 1, 16, 16, 1)
    assert held.calls == 2
    pool.shutdown()


@pytest.mark.parametrize("line,status", [
    (b'GET / HTTP/1."1', 400),
    (b"GET / HTTP/\x01.1", 400),
    (b"GET / HTTP/9.9", 505),
    (b"GET / HTTP/1.1 extra", 400),
    (b'BR"EW / HTTP/1.1', 501),
    (b"GET /v1/models/vidgen", 400),   # HTTP/0.9: an answer without a status line
])
def test_malformed_request_lines_get_a_status_line_and_json(hygiene, line, status):
    with socket.create_connection(("127.0.0.1", hygiene.rest_api_port), timeout=20) as s:
        s.sendall(line + b"\r\n\r\n")
        got, body = raw_answer(s)
    assert got == status and isinstance(body["error"], str)


def test_expected_outputs_are_the_shapes_and_dtypes_every_signature_answers(hygiene):
    servable = hygiene.core.models.resolve(MODEL)
    for key, specs in servable.input_specs.items():
        arrays = {}
        for alias, spec in specs.items():
            if alias == C.HORIZON:
                arrays[alias] = np.full((2,), 3, tensors.numpy_dtype(spec.dtype))
            else:
                shape = [2 if i == 0 else (4 if d < 0 else d) for i, d in enumerate(spec.shape)]
                arrays[alias] = np.zeros(shape, tensors.numpy_dtype(spec.dtype))
        expected = rest.expected_outputs(servable.signature_defs[key], arrays)
        _, outputs = hygiene.core.predict_arrays(servable, key, arrays, None)
        assert expected is not None, key
        assert {a: (v.shape, v.dtype) for a, v in expected.items()} == \
            {a: (v.shape, v.dtype) for a, v in outputs.items()}, key
