"""Every refused request: TF Serving's code and message, over gRPC and REST.

Refusals for size and time (small limits, deadlines) are in test_errors_limits.py.
"""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    regression_pb2,
)

from export import contract as C
from serving import tensors
from tests.serving.conftest import MODEL, clip

INV, NF, FP = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
               grpc.StatusCode.FAILED_PRECONDITION)


def request(context=None, horizon=3, name=MODEL, signature="", version=None, **extra):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = name
    r.model_spec.signature_name = signature
    if version is not None:
        r.model_spec.version.value = version
    if context is not None:
        r.inputs[C.CONTEXT].CopyFrom(tensors.to_proto(context) if isinstance(context, np.ndarray)
                                     else context)
    if horizon is not None:   # one value per clip (int32 (batch,)), or the values given
        batch = len(context) if isinstance(context, np.ndarray) and context.ndim else 1
        values = (C.horizon_input(horizon, batch) if np.ndim(horizon) == 0
                  else np.asarray(horizon, np.int32))
        r.inputs[C.HORIZON].CopyFrom(tensors.to_proto(values))
    for k, v in extra.items():
        r.inputs[k].CopyFrom(tensors.to_proto(v))
    return r


def with_input(r, alias, value):
    r.inputs[alias].CopyFrom(tensors.to_proto(value))
    return r


def proto(dtype=types_pb2.DT_FLOAT, dims=(1, 3, 16, 16, 1), **fields):
    p = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for d in dims:
        p.tensor_shape.dim.add().size = d
    return p


GOOD = clip(1, 3)
NAN = GOOD.copy()
NAN[0, 1, 2, 3, 0] = np.nan
INF = GOOD.copy()
INF[0, 0, 0, 0, 0] = -np.inf
SPEC = "(-1, -1, 16, 16, 1) (-1 = any size)"

CASES = {
    "no model spec": (predict_pb2.PredictRequest(), INV, "Missing ModelSpec"),
    "unknown model": (request(GOOD, name="nope"), NF,
                      "Servable not found for request: Latest(nope)"),
    "unknown version": (request(GOOD, version=7), NF,
                        "Servable not found for request: Specific(vidgen, 7)"),
    "unknown signature": (request(GOOD, signature="nope"), FP,
                          'Serving signature key "nope" not found.'),
    "init op is no signature": (request(GOOD, signature="__saved_model_init_op"), FP,
                                'Serving signature key "__saved_model_init_op" not found.'),
    "missing input": (request(GOOD, horizon=None), INV,
                      "input size does not match signature: 1!=2 len({context}) != "
                      "len({context,horizon}). Sent extra: {}. Missing but required: "
                      "{horizon}."),
    "extra input": (request(GOOD, extra=np.float32(1)), INV,
                    "input size does not match signature: 3!=2 len({context,extra,horizon}) "
                    "!= len({context,horizon}). Sent extra: {extra}. Missing but required: {}."),
    "wrong alias": (request(None, ctx=GOOD), INV,
                    "input tensor alias not found in signature: ctx. Inputs expected to be in "
                    "the set {context,horizon}."),
    "tensor_content of wrong length": (
        request(proto(tensor_content=b"\0" * 10)), INV, "tensor parsing error: context"),
    "more values than the shape holds": (
        request(proto(dims=(1, 1, 1, 1, 1), float_val=[0.1, 0.2])), INV,
        "tensor parsing error: context"),
    "negative dimension": (request(proto(dims=(1, -3, 16, 16, 1))), INV,
                           "tensor parsing error: context"),
    "unknown rank": (request(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape={"unknown_rank": True})), INV,
        "tensor parsing error: context"),
    "invalid dtype": (request(proto(dtype=types_pb2.DT_INVALID)), INV,
                      "tensor parsing error: context"),
    "wrong dtype (uint8 context)": (request((GOOD * 255).astype(np.uint8)), INV,
                                    "Expects arg[0] to be float but uint8 is provided"),
    "wrong dtype (int64 horizon)": (with_input(request(GOOD), C.HORIZON, np.int64([3])), INV,
                                    "Expects arg[1] to be int32 but int64 is provided"),
    "wrong rank": (request(GOOD[0]), INV,
                   "Input 'context' of signature 'serving_default': expected rank 5 with shape "
                   f"{SPEC}, received rank 4 with shape (3, 16, 16, 1)."),
    "wrong frame size": (request(clip(1, 3, size=8)), INV,
                         "Input 'context' of signature 'serving_default': expected shape "
                         f"{SPEC}, received (1, 3, 8, 8, 1)."),
    "wrong channels": (request(clip(1, 3, channels=3)), INV,
                       "Input 'context' of signature 'serving_default': expected shape "
                       f"{SPEC}, received (1, 3, 16, 16, 3)."),
    # The horizon was a scalar until the signatures became batchable: one value per clip.
    "horizon a scalar": (with_input(request(GOOD), C.HORIZON, np.int32(3)), INV,
                         "Input 'horizon' of signature 'serving_default': expected rank 1 "
                         "with shape (-1,) (-1 = any size), received rank 0 with shape ()."),
    "horizon shorter than the batch": (
        request(clip(2, 3), horizon=[3]), INV,
        "Input 'horizon' of signature 'serving_default': expected batch size 2 (as "
        "'context'), received 1."),
    "horizons differ": (request(clip(3, 3), horizon=[2, 3, 2]), INV,
                        "Input 'horizon' of signature 'serving_default': expected the same "
                        "value for every example of the batch (TF Serving's batching "
                        "concatenates this input across the requests it merges), received 2 "
                        "different values: 2, 3."),
    "NaN": (request(NAN), INV, "Input 'context' of signature 'serving_default': expected finite "
                               "values, received 1 NaN or Inf."),
    "Inf": (request(INF), INV, "Input 'context' of signature 'serving_default': expected finite "
                               "values, received 1 NaN or Inf."),
    "horizon 0": (request(GOOD, horizon=0), INV,
                  "Input 'horizon' of signature 'serving_default': expected an integer in "
                  "[1, 1000], received 0."),
    "horizon 1001": (request(GOOD, horizon=1001), INV,
                     "Input 'horizon' of signature 'serving_default': expected an integer in "
                     "[1, 1000], received 1001."),
    "no frames": (request(clip(1, 0)), INV,
                  "Input 'context' of signature 'serving_default': expected at least one frame, "
                  "received shape (1, 0, 16, 16, 1)."),
    "empty batch": (request(clip(0, 3)), INV,
                    "Input 'context' of signature 'serving_default': expected at least one "
                    "example in the batch, received 0."),
    "step batches differ": (
        request(None, None, signature=C.STEP, frame=clip(2, 1)[:, 0],
                state_0=np.zeros((1, 4, 4, 8), np.float32),
                state_1=np.zeros((2, 4, 4, 8), np.float32),
                state_2=np.zeros((2, 16, 16, 1), np.float32)), INV,
        "Input 'state_0' of signature 'step': expected batch size 2 (as 'frame'), received 1."),
}


@pytest.mark.parametrize("case", list(CASES))
def test_predict_error(stub, case):
    req, code, message = CASES[case]
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(req, timeout=30)
    assert (e.value.code(), e.value.details()) == (code, message)


def test_unknown_output_filter(stub):
    req = request(GOOD)
    req.output_filter.append("nope")
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(req, timeout=30)
    assert (e.value.code(), e.value.details()) == (
        INV, "output tensor alias not found in signature: nope Outputs expected to be in the "
             "set {frames}.")


def test_version_label(stub):
    req = request(GOOD)
    req.model_spec.version_label = "stable"
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(req, timeout=30)
    assert (e.value.code(), e.value.details()) == (
        INV, "Unrecognized servable version label: stable")


def test_metadata_errors(stub):
    cases = [
        (get_model_metadata_pb2.GetModelMetadataRequest(), INV, "Missing ModelSpec"),
        (get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": MODEL}), INV,
         "GetModelMetadataRequest must specify at least one metadata_field"),
        (get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": MODEL}, metadata_field=["nope"]), INV,
         "Metadata field %s is not supportednope"),   # TF Serving's message, verbatim
        (get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "nope"}, metadata_field=["signature_def"]), NF,
         "Servable not found for request: Latest(nope)"),
    ]
    for req, code, message in cases:
        with pytest.raises(grpc.RpcError) as e:
            stub.GetModelMetadata(req, timeout=30)
        assert (e.value.code(), e.value.details()) == (code, message)


def test_status_errors(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        cases = [
            ({"name": "nope"}, "Could not find any versions of model nope"),
            ({"name": MODEL, "version": {"value": 9}}, "Could not find version 9 of model vidgen"),
        ]
        for spec, message in cases:
            with pytest.raises(grpc.RpcError) as e:
                stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec),
                                    timeout=30)
            assert (e.value.code(), e.value.details()) == (NF, message)


def test_classify_regress_multiinference_on_predict_signatures(stub):
    spec = {"name": MODEL}
    cases = [
        (stub.Classify, classification_pb2.ClassificationRequest(model_spec=spec), INV,
         "Expected classification signature method_name to be tensorflow/serving/classify. "
         "Was: tensorflow/serving/predict"),
        (stub.Regress, regression_pb2.RegressionRequest(model_spec=spec), INV,
         "Expected regression signature method_name to be tensorflow/serving/regress. "
         "Was: tensorflow/serving/predict"),
        (stub.Classify, classification_pb2.ClassificationRequest(
            model_spec={"name": MODEL, "signature_name": "nope"}), INV,
         "No signature was found with the name: nope"),
        (stub.Classify, classification_pb2.ClassificationRequest(model_spec={"name": "x"}), NF,
         "Servable not found for request: Latest(x)"),
        (stub.MultiInference, inference_pb2.MultiInferenceRequest(tasks=[
            {"model_spec": spec, "method_name": "tensorflow/serving/regress"}]), INV,
         "Expected regression signature method_name to be tensorflow/serving/regress. "
         "Was: tensorflow/serving/predict"),
        (stub.MultiInference, inference_pb2.MultiInferenceRequest(tasks=[
            {"model_spec": spec, "method_name": "tensorflow/serving/predict"}]),
         grpc.StatusCode.UNIMPLEMENTED,
         "Unsupported signature method_name: tensorflow/serving/predict"),
        (stub.MultiInference, inference_pb2.MultiInferenceRequest(tasks=[
            {"model_spec": spec}, {"model_spec": {"name": "other"}}]), INV,
         "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ]
    for method, req, code, message in cases:
        with pytest.raises(grpc.RpcError) as e:
            method(req, timeout=30)
        assert (e.value.code(), e.value.details()) == (code, message)


# ---- REST ------------------------------------------------------------------------------

def rest(server, path, body=None, method=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_api_port}{path}", data=data,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


REST_CASES = {
    "unknown model": ("/v1/models/nope:predict", {"inputs": {}}, 404,
                      "Servable not found for request: Latest(nope)"),
    "unknown version": ("/v1/models/vidgen/versions/7:predict", {"inputs": {}}, 404,
                        "Servable not found for request: Specific(vidgen, 7)"),
    "unknown signature": ("/v1/models/vidgen:predict", {"signature_name": "nope", "inputs": {}},
                          400, 'Serving signature name: "nope" not found in signature def'),
    "signature not a string": ("/v1/models/vidgen:predict", {"signature_name": 100}, 400,
                               "'signature_name' key must be a string value."),
    "bad JSON": ("/v1/models/vidgen:predict", b"{nope", 400, None),
    "empty body": ("/v1/models/vidgen:predict", b"", 400,
                   "JSON Parse error: The document is empty"),
    "not an object": ("/v1/models/vidgen:predict", [1], 400, "JSON Value: Is not object"),
    "no inputs key": ("/v1/models/vidgen:predict", {"foo": 1}, 400,
                      "Missing 'inputs' or 'instances' key"),
    "both keys": ("/v1/models/vidgen:predict", {"inputs": {}, "instances": []}, 400,
                  "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                  "to exist"),
    "missing named input": ("/v1/models/vidgen:predict",
                            {"inputs": {C.CONTEXT: GOOD.tolist()}}, 400,
                            "Missing named input: horizon in 'inputs' object."),
    "extra named input": ("/v1/models/vidgen:predict",
                          {"inputs": {C.CONTEXT: GOOD.tolist(), C.HORIZON: [2], "x": 1}}, 400,
                          "input size does not match signature: 3!=2 len({context,horizon,x}) "
                          "!= len({context,horizon}). Sent extra: {x}. Missing but required: {}."),
    "ragged list": ("/v1/models/vidgen:predict",
                    {"inputs": {C.CONTEXT: [[1.0], [1.0, 2.0]], C.HORIZON: [1]}}, 400,
                    "Input 'context': expected a dense nested list of numbers for dtype float, "
                    "received a ragged list or other JSON values."),
    "string value": ("/v1/models/vidgen:predict", {"inputs": {C.CONTEXT: GOOD.tolist(),
                                                              C.HORIZON: "3"}}, 400,
                     "Input 'horizon': expected a dense nested list of numbers for dtype int32, "
                     "received a ragged list or other JSON values."),
    "fractional horizon": ("/v1/models/vidgen:predict",
                           {"inputs": {C.CONTEXT: GOOD.tolist(), C.HORIZON: 2.5}}, 400,
                           "Input 'horizon': expected integers in [-2147483648, 2147483647] "
                           "for dtype int32."),
    "wrong shape": ("/v1/models/vidgen:predict",
                    {"inputs": {C.CONTEXT: clip(1, 3, size=8).tolist(), C.HORIZON: [2]}}, 400,
                    "Input 'context' of signature 'serving_default': expected shape "
                    f"{SPEC}, received (1, 3, 8, 8, 1)."),
    "horizon 0": ("/v1/models/vidgen:predict", {"inputs": {C.CONTEXT: GOOD.tolist(),
                                                           C.HORIZON: [0]}}, 400,
                  "Input 'horizon' of signature 'serving_default': expected an integer in "
                  "[1, 1000], received 0."),
    "scalar horizon": ("/v1/models/vidgen:predict", {"inputs": {C.CONTEXT: GOOD.tolist(),
                                                                C.HORIZON: 2}}, 400,
                       "Input 'horizon' of signature 'serving_default': expected rank 1 with "
                       "shape (-1,) (-1 = any size), received rank 0 with shape ()."),
    # The row format stacks every input, the horizon too, so instances must agree on it
    # (until the signatures became batchable: "Input 'horizon' is a scalar ...").
    "horizon differs between instances": (
        "/v1/models/vidgen:predict",
        {"instances": [{C.CONTEXT: GOOD[0].tolist(), C.HORIZON: 1},
                       {C.CONTEXT: GOOD[0].tolist(), C.HORIZON: 2}]}, 400,
        "Input 'horizon' of signature 'serving_default': expected the same value for every "
        "example of the batch (TF Serving's batching concatenates this input across the "
        "requests it merges), received 2 different values: 1, 2."),
    "malformed path": ("/v1/models/vidgen:nope", {}, 400,
                       "Malformed request: POST /v1/models/vidgen:nope"),
    "classify": ("/v1/models/vidgen:classify", {"examples": []}, 400,
                 "Expected classification signature method_name to be "
                 "tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    "status of unknown model": ("/v1/models/nope", None, 404,
                                "Could not find any versions of model nope"),
    "status of unknown version": ("/v1/models/vidgen/versions/9", None, 404,
                                  "Could not find version 9 of model vidgen"),
    "metadata of unknown model": ("/v1/models/nope/metadata", None, 404,
                                  "Servable not found for request: Latest(nope)"),
}


@pytest.mark.parametrize("case", list(REST_CASES))
def test_rest_error(server, case):
    path, body, status, message = REST_CASES[case]
    got_status, got = rest(server, path, body)
    assert got_status == status
    assert set(got) == {"error"}
    if message is None:
        assert got["error"].startswith("JSON Parse error: ")
    else:
        assert got["error"] == message


def test_rest_bad_content_length(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    conn.putrequest("POST", "/v1/models/vidgen:predict")
    conn.putheader("Content-Length", "-5")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read()) == {
        "error": "Content-Length must be a non-negative integer. Received: '-5'"}
    conn.close()
