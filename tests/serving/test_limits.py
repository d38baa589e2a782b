"""Limits that count what a request really costs: fills, context length, working size."""

import os
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export import contract as C
from serving import tensors
from serving.core import Limits
from tests.serving.conftest import MODEL, clip, copy_version, start_server

INV = grpc.StatusCode.INVALID_ARGUMENT
STATES = {"state_0": (4, 4, 8), "state_1": (4, 4, 8), "state_2": (16, 16, 1)}


def fill(dims, value=0.5, dtype=types_pb2.DT_FLOAT, **fields):
    """A TensorProto of shape `dims` holding one value: TensorFlow repeats it."""
    p = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for d in dims:
        p.tensor_shape.dim.add().size = d
    if not fields:
        (p.int_val if dtype in (types_pb2.DT_INT32, types_pb2.DT_UINT8) else p.float_val).append(
            value)
    return p


def predict(signature="", **inputs):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = MODEL
    r.model_spec.signature_name = signature
    for k, v in inputs.items():
        r.inputs[k].CopyFrom(v if isinstance(v, tensor_pb2.TensorProto) else tensors.to_proto(v))
    return r


def step_fill(batch):
    inputs = {C.FRAME: fill((batch, 16, 16, 1))}
    inputs.update({k: fill((batch,) + s, 0.0) for k, s in STATES.items()})
    return predict(C.STEP, **inputs)


def refused(stub, request):
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, timeout=30)
    return e.value.code(), e.value.details()


@pytest.fixture
def no_decode(monkeypatch):
    """Fails any test whose request reaches the decoding (the allocation)."""
    def decode(self):
        raise AssertionError(f"decoded a tensor of shape {self.shape}")

    monkeypatch.setattr(tensors.ProtoTensor, "decode", decode)


@pytest.fixture(scope="module")
def small(exported, tmp_path_factory):
    """A server whose request and response limits are a few hundred kilobytes."""
    base = tmp_path_factory.mktemp("small") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    srv = start_server(base, limits=Limits(max_request_bytes=1 << 20, max_tensor_bytes=1 << 20,
                                           max_elements=1 << 20, max_response_bytes=40_000))
    assert srv.wait_for_model(60)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    srv.stop(grace=5)


def test_tiny_request_declaring_huge_inputs_is_refused_before_decoding(stub, no_decode):
    # Every tensor within the default per-tensor limits (256 MB, 64 Mi elements), all
    # together 614 MB: from a request of 178 bytes.
    request = step_fill(200_000)
    assert request.ByteSize() < 200
    started = time.monotonic()
    assert refused(stub, request) == (
        INV, "Inputs of signature 'step': expected at most 268435456 bytes in all once "
             "decoded, received 614400000.")
    assert time.monotonic() - started < 2


def test_inputs_together_count_against_the_request_limit(small, no_decode):
    assert refused(small, step_fill(400)) == (
        INV, "Inputs of signature 'step': expected at most 1048576 bytes in all once decoded, "
             "received 1228800.")


def test_partial_value_list_is_refused(small):
    request = predict(context=fill((1, 3, 16, 16, 1), float_val=[0.1, 0.2]),
                      horizon=C.horizon_input(1, 1))
    assert refused(small, request) == (
        INV, "Input 'context': expected 1 value (a fill) or all 768 values in float_val for "
             "shape (1, 3, 16, 16, 1), received 2.")


def test_one_value_fill_equals_the_full_tensor(small):
    full = predict(context=np.full((1, 3, 16, 16, 1), 0.5, np.float32),
                   horizon=C.horizon_input(2, 1))
    filled = predict(context=fill((1, 3, 16, 16, 1)), horizon=fill((1,), 2, types_pb2.DT_INT32))
    a, b = (tensors.from_proto(small.Predict(r, timeout=30).outputs[C.FRAMES])
            for r in (full, filled))
    np.testing.assert_array_equal(a, b)


def test_context_longer_than_max_context_is_refused(small, no_decode):
    # 1 MB of float32: within every size limit of the server.
    request = predict(context=fill((1, C.MAX_CONTEXT + 1, 16, 16, 1)),
                      horizon=C.horizon_input(1, 1))
    assert refused(small, request) == (
        INV, f"Input 'context' of signature 'serving_default': expected at most "
             f"{C.MAX_CONTEXT} frames, received {C.MAX_CONTEXT + 1} "
             f"(shape (1, {C.MAX_CONTEXT + 1}, 16, 16, 1)).")


def test_step_output_counts_against_the_response_limit(small):
    # 16 x (256 + 128 + 128 + 256) float32 = 49,152 bytes out, for as many in.
    assert refused(small, step_fill(16)) == (
        INV, "Outputs of signature 'step': expected at most 40000 bytes, the request would "
             "make 49152 (batch 16; the server's --max_response_bytes).")
    assert small.Predict(step_fill(8), timeout=30).outputs[C.NEXT_FRAME].tensor_shape.dim[0] \
        .size == 8


def test_predict_uint8_counts_its_float32_working_size(small):
    # 2,560 bytes of uint8 frames out, but 40 float32 frames (40,960 bytes) inside.
    context = (clip(1, 30) * 255).astype(np.uint8)
    request = predict(C.PREDICT_UINT8, context=context, horizon=C.horizon_input(10, 1))
    assert refused(small, request) == (
        INV, "Signature 'predict_uint8': expected a float32 working size of at most 40000 "
             "bytes, the request would make 40960 (batch 1 x (context 30 + horizon 10) frames "
             "x 256 values x 4 bytes; the server's --max_response_bytes).")
    ok = predict(C.PREDICT_UINT8, context=context, horizon=C.horizon_input(9, 1))
    assert small.Predict(ok, timeout=30).outputs[C.FRAMES].tensor_shape.dim[1].size == 9
