"""Bytes in flight at their decoded size, bytes per merged batch, and the gRPC/pool bounds.

Requests stay in flight on a held model call (`Held`), so which of them are in
flight when the next arrives is known exactly; waits poll with a deadline.
"""

import http.client
import json
import os
import queue
import threading

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from export import contract as C
from serving import tensors
from serving.admission import Admission
from serving.batching import Batcher
from serving.batching_parameters import BatchingOptions
from serving.cli import main
from serving.core import Limits, ServingCore
from serving.errors import ServingError
from serving.model_config import single_model_config
from serving.server import CONTROL_RPCS
from tests.serving.conftest import (
    MODEL,
    POLL,
    Held,
    clip,
    copy_version,
    make_server,
    wait_for,
)

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
HOUR_MICROS = 3600 * 10**6

# A (8, 5, 16, 16, 1) float32 context decodes to 40 KiB: one fits in 64 KiB, two do not.
BATCH, FRAMES = 8, 5
VALUES = BATCH * FRAMES * 16 * 16
BUDGET = 64 << 10


def in_threads(calls):
    """Starts each call on a thread; returns the queue their results arrive on."""
    results = queue.Queue()
    for call in calls:
        threading.Thread(target=lambda c=call: results.put(c()), daemon=True).start()
    return results



@pytest.fixture(scope="module")
def budget(exported, tmp_path_factory):
    """Bytes in flight at most BUDGET (also the largest request), four requests at most."""
    server = make_server(
        exported, tmp_path_factory.mktemp("budget"), max_in_flight_requests=4,
        max_in_flight_bytes=BUDGET,
        limits=Limits(max_request_bytes=BUDGET, max_json_request_bytes=BUDGET))
    yield server
    server.stop(grace=5)


@pytest.fixture
def held(budget, monkeypatch):
    servable = budget.core.models.resolve(MODEL)
    hold = Held(servable)
    monkeypatch.setattr(servable, "run", hold)
    yield hold
    hold.release.set()
    assert wait_for(lambda: budget.admission.requests == 0 and budget.admission.bytes == 0)


def fill_request() -> predict_pb2.PredictRequest:
    """A context of one float_val broadcast to (BATCH, FRAMES, 16, 16, 1): ~100 bytes."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    context = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5])
    for d in (BATCH, FRAMES, 16, 16, 1):
        context.tensor_shape.dim.add().size = d
    request.inputs[C.CONTEXT].CopyFrom(context)
    request.inputs[C.HORIZON].CopyFrom(tensors.to_proto(C.horizon_input(1, BATCH)))
    return request


def grpc_call(server, request):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30).outputs[C.FRAMES].tensor_shape.dim[0].size
    except grpc.RpcError as e:
        return e.code(), e.details()
    finally:
        channel.close()


def rest_post(server, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    try:
        conn.request("POST", f"/v1/models/{MODEL}:predict", body,
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def zeros_body() -> bytes:
    """A REST body of (BATCH, FRAMES, 16, 16, 1) zeros, ~41 KiB."""
    context = np.zeros((BATCH, FRAMES, 16, 16, 1), np.int64).tolist()
    return json.dumps({"inputs": {C.CONTEXT: context,
                                  C.HORIZON: C.horizon_input(1, BATCH).tolist()}},
                      separators=(",", ":")).encode()


# ---- 1. bytes in flight count the decoded size ------------------------------------------


def test_grpc_fill_requests_are_charged_their_decoded_size(budget, held, monkeypatch):
    request = fill_request()
    assert request.ByteSize() < 200            # tiny on the wire...
    decoded = VALUES * 4 + BATCH * 4             # ...40 KiB once filled
    assert BUDGET < 2 * decoded
    decodes = []
    decode = tensors.ProtoTensor.decode
    monkeypatch.setattr(tensors.ProtoTensor, "decode",
                        lambda self: decodes.append(self.shape) or decode(self))
    first = in_threads([lambda: grpc_call(budget, request)])
    assert wait_for(lambda: held.calls == 1)
    assert budget.admission.bytes >= decoded     # held at its decoded size, not 80 bytes
    seen = len(decodes)
    code, details = grpc_call(budget, request)   # fits on the wire, not once decoded
    assert code == EXHAUSTED
    assert "--max_in_flight_bytes" in details and f"limit is {BUDGET}" in details
    assert len(decodes) == seen                  # refused before anything was allocated
    assert held.calls == 1
    held.release.set()
    assert first.get(timeout=30) == BATCH
    assert wait_for(lambda: budget.admission.bytes == 0)   # released with the request


@pytest.mark.parametrize("entry", ["predict_arrays", "run"])
def test_the_rest_path_charges_the_decoded_size_to_its_handlers_ticket(budget, held, entry):
    # The REST handler admits a request at its Content-Length, then runs it through
    # `predict_arrays` or `run` with its ticket; a JSON body cannot hold a fill, so a small
    # ticket stands in for a body smaller than what it decodes to.
    servable = budget.core.models.resolve(MODEL)
    arrays = {C.CONTEXT: np.full((BATCH, FRAMES, 16, 16, 1), 0.5, np.float32),
              C.HORIZON: C.horizon_input(1, BATCH)}
    decoded = VALUES * 4 + BATCH * 4

    def rest_like():
        with budget.admission.admit(100) as ticket:
            if entry == "run":
                outputs = budget.core.run(servable, C.SERVING_DEFAULT, arrays, None, ticket)
            else:
                outputs = budget.core.predict_arrays(servable, "", arrays, ticket=ticket)[1]
            return outputs[C.FRAMES].shape

    first = in_threads([rest_like])
    assert wait_for(lambda: held.calls == 1)
    assert budget.admission.bytes == decoded
    with pytest.raises(ServingError) as e:
        rest_like()
    assert e.value.code == EXHAUSTED and e.value.http_status == 429
    assert "--max_in_flight_bytes" in e.value.message
    with pytest.raises(ServingError, match="--max_in_flight_bytes"):
        budget.core.predict_arrays(servable, "", arrays)   # no ticket: a reservation
    assert held.calls == 1
    held.release.set()
    assert first.get(timeout=30) == (BATCH, 1, 16, 16, 1)
    assert wait_for(lambda: budget.admission.bytes == 0)


def test_rest_requests_still_answer_within_the_budget(budget):
    status, answer = rest_post(budget, zeros_body())
    assert status == 200 and np.shape(answer["outputs"]) == (BATCH, 1, 16, 16, 1)
    assert wait_for(lambda: budget.admission.bytes == 0)


def test_a_request_larger_than_the_budget_alone_is_refused_with_the_flag():
    admission = Admission(4, 1000)
    ticket = admission.admit(10)
    with pytest.raises(ServingError) as e:
        ticket.charge(1001, 10)
    assert e.value.code == EXHAUSTED
    assert "(--max_in_flight_bytes) even alone" in e.value.message
    assert admission.bytes == 10                 # the refused charge holds nothing
    ticket.charge(600)
    other = admission.admit(100)
    with pytest.raises(ServingError, match="700 request bytes are in flight"):
        admission.reserve(500)
    other.release()
    ticket.release()
    assert (admission.bytes, admission.requests) == (0, 0)


def test_working_size_counts_uint8_at_four_bytes():
    assert tensors.working_bytes(types_pb2.DT_UINT8, (2, 3)) == 24
    assert tensors.working_bytes(types_pb2.DT_FLOAT, (2, 3)) == 24
    assert tensors.working_bytes(types_pb2.DT_INT64, (2, 3)) == 48


# ---- 2. bytes per merged batch ---------------------------------------------------------


def recording_run(ran: queue.Queue):
    def run(arrays):
        ran.put(int(arrays["x"].shape[0]))
        return {"y": arrays["x"]}

    return run


def rows(n, width=4):
    return {"x": np.zeros((n, width), np.float32)}   # 16 bytes a row


def test_a_batch_that_would_exceed_max_batch_bytes_is_closed():
    ran = queue.Queue()
    run = recording_run(ran)
    batcher = Batcher(1, max_batch_bytes=48)       # three rows
    options = BatchingOptions(max_batch_size=100, batch_timeout_micros=HOUR_MICROS)
    try:
        small = [batcher.submit(("k",), options, run, rows(1)) for _ in range(4)]
        assert ran.get(timeout=30) == 3            # the 4th closed the first batch
        big = batcher.submit(("k",), options, run, rows(20))   # 320 bytes alone
        assert ran.get(timeout=30) == 1            # it closed the second batch...
        assert ran.get(timeout=30) == 20           # ...and ran alone, at once
        assert [f.result(30)["y"].shape[0] for f in small] == [1] * 4
        assert big.result(30)["y"].shape == (20, 4)
    finally:
        batcher.close()


def test_max_batch_bytes_counts_the_padding():
    ran = queue.Queue()
    run = recording_run(ran)
    # 100 bytes: 4 rows (64) fit; 5 rows pad to 100 rows (1600 bytes) and do not.
    batcher = Batcher(1, max_batch_bytes=100)
    options = BatchingOptions(max_batch_size=100, batch_timeout_micros=HOUR_MICROS,
                              allowed_batch_sizes=(4, 100))
    try:
        futures = [batcher.submit(("k",), options, run, rows(1)) for _ in range(5)]
        assert ran.get(timeout=30) == 4
        assert [f.result(30)["y"].shape[0] for f in futures[:4]] == [1] * 4
    finally:
        batcher.close()
    assert futures[4].cancelled()


def test_max_batch_bytes_defaults_to_max_request_bytes_and_is_configurable(exported, tmp_path):
    limits = Limits(max_request_bytes=1 << 20, max_json_request_bytes=1 << 20)
    config = single_model_config(MODEL, exported["store"])
    core = ServingCore(config, limits, batching=BatchingOptions(num_batch_threads=1))
    assert core.batcher.max_batch_bytes == 1 << 20
    core.batcher.close()
    core = ServingCore(config, limits, batching=BatchingOptions(num_batch_threads=1),
                       max_batch_bytes=4096)
    assert core.batcher.max_batch_bytes == 4096
    core.batcher.close()


def test_cli_max_batch_bytes_needs_batching_and_is_documented(exported, capsys):
    code = main(["start", "--model_base_path", exported["store"], "--model_name", MODEL,
                 "--max_batch_bytes", "1000"])
    assert code == 2
    assert "--max_batch_bytes" in capsys.readouterr().err
    code = main(["start", "--model_base_path", exported["store"], "--model_name", MODEL,
                 "--enable_batching", "--max_batch_bytes", "0"])
    assert code == 2
    assert "--max_batch_bytes must be positive. Received: 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["start", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "TF Serving's BatchingParameters has no byte limit" in out


# ---- 3. gRPC's own RPC bound, and queued work cancelled at shutdown --------------------


def test_grpc_refuses_rpcs_beyond_the_in_flight_limit_plus_control_rpcs(exported, tmp_path,
                                                                       monkeypatch):
    server = make_server(exported, tmp_path, max_in_flight_requests=1)
    release, lock, entered = threading.Event(), threading.Lock(), [0]
    metadata = server.core.metadata

    def held_metadata(request):
        with lock:
            entered[0] += 1
        assert release.wait(60), "a held metadata call was never released"
        return metadata(request)

    monkeypatch.setattr(server.core, "metadata", held_metadata)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL

    def call():
        try:
            stub.GetModelMetadata(request, timeout=60)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    limit = 1 + CONTROL_RPCS
    try:
        results = in_threads([call] * limit)
        assert wait_for(lambda: entered[0] == limit, timeout=30)
        # One more: gRPC itself refuses it at once (without the bound it would queue
        # for a free handler thread until its deadline).
        with pytest.raises(grpc.RpcError) as e:
            stub.GetModelMetadata(request, timeout=20)
        assert e.value.code() == EXHAUSTED
        assert entered[0] == limit
        release.set()
        assert [results.get(timeout=30) for _ in range(limit)] == [grpc.StatusCode.OK] * limit
    finally:
        release.set()
        channel.close()
        server.stop(grace=5)


def test_stop_cancels_queued_model_calls(exported, tmp_path, monkeypatch):
    base = tmp_path / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    core = ServingCore(single_model_config(MODEL, str(base)), poll_interval=POLL,
                       model_threads=1)
    core.start()
    stopper = None
    hold = None
    try:
        assert core.models.wait_until_available(60)
        servable = core.models.resolve(MODEL)
        hold = Held(servable)
        monkeypatch.setattr(servable, "run", hold)
        submitted = []
        submit = core._submit
        monkeypatch.setattr(core, "_submit",
                            lambda *a, **k: submitted.append(submit(*a, **k)) or submitted[-1])
        arrays = {C.CONTEXT: clip(1, 2), C.HORIZON: C.horizon_input(1, 1)}

        def run():
            try:
                return core.run(servable, C.SERVING_DEFAULT, arrays, None)[C.FRAMES].shape
            except ServingError as e:
                return e.code

        first = in_threads([run])
        assert hold.entered.wait(30)               # the only model thread is busy
        queued = in_threads([run])
        assert wait_for(lambda: len(submitted) == 2, timeout=30)
        stopper = threading.Thread(target=core.stop, daemon=True)
        stopper.start()
        # stop() cancels the queued call before it waits for the running one.
        assert wait_for(submitted[1].cancelled, timeout=20)
        hold.release.set()
        assert first.get(timeout=30) == (1, 1, 16, 16, 1)
        assert queued.get(timeout=30) == grpc.StatusCode.CANCELLED
        stopper.join(30)
        assert not stopper.is_alive()
        assert hold.calls == 1                     # the queued call never reached the model
    finally:
        if hold is not None:
            hold.release.set()
        if stopper is None:
            core.stop()


def test_cli_max_response_bytes_reaches_the_limits(exported, monkeypatch, capsys):
    import serving.server

    seen = {}

    class Refused(Exception):
        pass

    def fake_server(*args, **kwargs):
        seen["limits"] = args[6]
        raise Refused

    from serving.cli import build_parser
    start = build_parser().parse_args(["start", "--model_base_path", exported["store"]])
    assert start.max_response_bytes == Limits().max_response_bytes
    monkeypatch.setattr(serving.server, "Server", fake_server)
    with pytest.raises(Refused):
        main(["start", "--model_base_path", exported["store"], "--model_name", MODEL,
              "--max_response_bytes", "4096"])
    assert seen["limits"].max_response_bytes == 4096
    assert main(["start", "--model_base_path", exported["store"], "--model_name", MODEL,
                 "--max_response_bytes", "0"]) == 2
    assert "--max_response_bytes must be positive. Received: 0" in capsys.readouterr().err
