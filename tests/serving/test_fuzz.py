"""Fuzzed PredictRequests never crash the server and never answer INTERNAL or UNKNOWN.

VIDGEN_FUZZ_EXAMPLES sets the number of requests (3000 by default; the
benchmark runs more).
"""

import math
import os

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export import contract as C
from serving.core import Limits
from tests.serving.conftest import MODEL, copy_version, start_server

EXAMPLES = int(os.environ.get("VIDGEN_FUZZ_EXAMPLES", "3000"))

DTYPES = [types_pb2.DT_FLOAT, types_pb2.DT_UINT8, types_pb2.DT_INT32, types_pb2.DT_INT64,
          types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_STRING, types_pb2.DT_BOOL,
          types_pb2.DT_COMPLEX64, types_pb2.DT_INVALID, types_pb2.DT_RESOURCE, 77, 1000]
ALIASES = [C.CONTEXT, C.HORIZON, C.FRAME, "state_0", "state_1", "state_2", "x", ""]
SIGNATURES = ["", C.SERVING_DEFAULT, C.PREDICT_UINT8, C.STEP, "__saved_model_init_op", "nope"]
DIM = st.one_of(st.integers(0, 4), st.sampled_from([16, -1, 1 << 31, 1 << 62]),
                st.integers(-(1 << 63), (1 << 63) - 1))
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def tensor_protos(draw):
    dtype = draw(st.sampled_from(DTYPES))
    proto = tensor_pb2.TensorProto(dtype=dtype)
    if draw(st.integers(0, 30)) == 0:
        proto.tensor_shape.unknown_rank = True
    dims = draw(st.one_of(
        st.lists(DIM, max_size=6),
        st.sampled_from([[1, 3, 16, 16, 1], [2, 2, 16, 16, 1], [], [1, 16, 16, 1],
                         [1, 4, 4, 8]])))
    for d in dims:
        proto.tensor_shape.dim.add().size = d
    kind = draw(st.sampled_from(["content", "float", "int", "int64", "half", "string", "none",
                                 "exact"]))
    if kind == "content":
        proto.tensor_content = draw(st.binary(max_size=2048))
    elif kind == "float":
        proto.float_val.extend(draw(st.lists(FLOATS, max_size=64)))
    elif kind == "int":
        proto.int_val.extend(draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1),
                                           max_size=64)))
    elif kind == "int64":
        proto.int64_val.extend(draw(st.lists(st.integers(-(1 << 63), (1 << 63) - 1),
                                             max_size=8)))
    elif kind == "half":
        proto.half_val.extend(draw(st.lists(st.integers(0, 65535), max_size=16)))
    elif kind == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
    elif kind == "exact":
        # Well-formed content for the shape: reaches the model when everything else fits.
        n = math.prod(max(d, 0) for d in dims)   # Python ints: no overflow
        if n <= 4096 and dtype in (types_pb2.DT_FLOAT, types_pb2.DT_UINT8, types_pb2.DT_INT32):
            np_dtype = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_UINT8: np.uint8,
                        types_pb2.DT_INT32: np.int32}[dtype]
            values = draw(st.sampled_from([0, 1, 3, 255, -1, 2000]))
            proto.tensor_content = np.full(n, values).astype(np_dtype).tobytes()
    return proto


STEP_STATES = {"state_0": (4, 4, 8), "state_1": (4, 4, 8), "state_2": (16, 16, 1)}


@st.composite
def valid_inputs(draw):
    """(signature, inputs) that the tiny model accepts."""
    signature = draw(st.sampled_from([C.SERVING_DEFAULT, C.PREDICT_UINT8, C.STEP]))
    batch = draw(st.integers(1, 2))
    if signature == C.STEP:
        inputs = {C.FRAME: np.full((batch, 16, 16, 1), 0.5, np.float32)}
        inputs.update({k: np.zeros((batch,) + s, np.float32) for k, s in STEP_STATES.items()})
    else:
        dtype = np.uint8 if signature == C.PREDICT_UINT8 else np.float32
        inputs = {C.CONTEXT: np.full((batch, draw(st.integers(1, 3)), 16, 16, 1), 1, dtype),
                  C.HORIZON: C.horizon_input(draw(st.integers(1, 4)), batch)}
    return signature, inputs


@st.composite
def mutated_requests(draw):
    """A valid request with up to two things broken."""
    from serving import tensors

    signature, inputs = draw(valid_inputs())
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    protos = {k: tensors.to_proto(v) for k, v in inputs.items()}
    for _ in range(draw(st.integers(0, 2))):
        alias = draw(st.sampled_from(sorted(protos)))
        what = draw(st.sampled_from(["drop", "add", "dtype", "dim", "content", "nan", "values",
                                     "rank", "name", "version", "signature", "fill"]))
        p = protos[alias]
        if what == "drop" and len(protos) > 1:
            del protos[alias]
        elif what == "add":
            protos[draw(st.text(max_size=4))] = draw(tensor_protos())
        elif what == "dtype":
            p.dtype = draw(st.sampled_from(DTYPES))
        elif what == "dim" and p.tensor_shape.dim:
            i = draw(st.integers(0, len(p.tensor_shape.dim) - 1))
            p.tensor_shape.dim[i].size = draw(DIM)
        elif what == "content":
            p.tensor_content = draw(st.binary(max_size=64))
        elif what == "nan" and p.dtype == types_pb2.DT_FLOAT and len(p.tensor_content) % 4 == 0:
            a = np.frombuffer(p.tensor_content, np.float32).copy()
            if a.size:
                a[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
                p.tensor_content = a.tobytes()
        elif what == "values":
            p.ClearField("tensor_content")
            p.int_val.extend(draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=3)))
            p.float_val.extend(draw(st.lists(FLOATS, max_size=3)))
        elif what == "fill" and p.tensor_shape.dim:
            # A few bytes declaring a large tensor: one value that TensorFlow repeats.
            p.ClearField("tensor_content")
            (p.float_val if p.dtype == types_pb2.DT_FLOAT else p.int_val).append(1)
            p.tensor_shape.dim[0].size = draw(st.sampled_from([1, 2, 1000, 200_000]))
        elif what == "rank":
            p.tensor_shape.dim.add().size = draw(st.integers(0, 3))
        elif what == "name":
            request.model_spec.name = draw(st.text(max_size=6))
        elif what == "version":
            request.model_spec.version.value = draw(st.integers(-3, 3))
        elif what == "signature":
            request.model_spec.signature_name = draw(st.sampled_from(SIGNATURES))
    for k, p in protos.items():
        request.inputs[k].CopyFrom(p)
    return request


@st.composite
def random_requests(draw):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from([MODEL, MODEL, MODEL, "", "nope"]))
    version = draw(st.sampled_from([None, None, 1, 2, 0, -5]))
    if version is not None:
        request.model_spec.version.value = version
    elif draw(st.integers(0, 20)) == 0:
        request.model_spec.version_label = draw(st.text(max_size=5))
    request.model_spec.signature_name = draw(st.one_of(st.sampled_from(SIGNATURES),
                                                       st.text(max_size=10)))
    for alias in draw(st.lists(st.one_of(st.sampled_from(ALIASES), st.text(max_size=6)),
                               max_size=5, unique=True)):
        request.inputs[alias].CopyFrom(draw(tensor_protos()))
    if draw(st.integers(0, 10)) == 0:
        request.output_filter.extend(draw(st.lists(st.sampled_from(
            [C.FRAMES, C.NEXT_FRAME, "x", C.FRAMES]), max_size=3)))
    return request


def predict_requests():
    return st.one_of(mutated_requests(), mutated_requests(), random_requests())


@pytest.fixture(scope="module")
def fuzz_stub(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    server = start_server(base, limits=Limits(max_response_bytes=1 << 20))
    assert server.wait_for_model(60)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}",
                                    [("grpc.max_receive_message_length", 1 << 30)])
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), server
    channel.close()
    server.stop(grace=5)


def test_fuzzed_requests_never_crash_or_answer_internal(fuzz_stub):
    stub, server = fuzz_stub
    codes = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(predict_requests())
    def check(request):
        try:
            stub.Predict(request, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                code, e.details(), request)
        codes[code] = codes.get(code, 0) + 1

    check()
    assert sum(codes.values()) >= EXAMPLES
    # The fuzzing reached every stage, including the model.
    assert {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT}.issubset(codes), codes
    # And the server still answers a good request.
    from serving.client import PredictionClient

    with PredictionClient(f"127.0.0.1:{server.port}", MODEL) as client:
        assert client.predict(np.zeros((1, 2, 16, 16, 1), np.float32), 1).shape[1] == 1
    print("fuzz outcome by code:", {k.name: v for k, v in codes.items()})
