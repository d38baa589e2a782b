"""Happy paths: the served model equals the Keras model, over gRPC and REST."""

import grpc
import numpy as np
import pytest

from export import contract as C
from serving.client import PredictionClient, RestPredictionClient
from serving.errors import ServingError
from tests.serving.conftest import MODEL, clip


def test_predict_equals_keras(client, keras_models):
    context = clip(2, 4)
    got = client.predict(context, horizon=5)
    want = np.asarray(keras_models[1].rollout(context, 5))
    assert got.shape == (2, 5, 16, 16, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_predict_uint8_signature(server, keras_models):
    context = (clip(1, 3) * 255).round().astype(np.uint8)
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, signature=C.PREDICT_UINT8) as c:
        got = c.predict(context, horizon=3)
    want = np.asarray(keras_models[1].rollout(context.astype(np.float32) / 255.0, 3))
    assert got.dtype == np.uint8
    # Rounding to 8 bits: at most one level apart from the float model.
    assert np.max(np.abs(got.astype(np.float32) - np.round(want * 255))) <= 1


def test_step_signature_equals_keras(client, keras_models):
    model = keras_models[1]
    frame = clip(1, 1)[:, 0]
    states = [np.asarray(s) for s in model.initial_states(1)]
    inputs = {C.FRAME: frame, **{C.state_name(i): s for i, s in enumerate(states)}}
    out = client.predict_tensors(inputs, signature=C.STEP)
    want_frame, want_states = model.step(frame, states)
    np.testing.assert_allclose(out[C.NEXT_FRAME], np.asarray(want_frame), atol=1e-5)
    for i, s in enumerate(want_states):
        np.testing.assert_allclose(out[C.state_name(i)], np.asarray(s), atol=1e-5)


def test_rest_and_grpc_give_the_same_numbers(client, rest_client):
    context = clip(3, 3, seed=4)
    grpc_frames = client.predict(context, horizon=4)
    rest_frames = rest_client.predict(context, horizon=4)
    np.testing.assert_array_equal(grpc_frames, rest_frames)


def test_rest_row_format(server, client):
    import json
    import urllib.request

    context = clip(2, 3, seed=5)
    body = {"instances": [{C.CONTEXT: c.tolist(), C.HORIZON: 2} for c in context]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_api_port}/v1/models/{MODEL}:predict",
        data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=30) as r:
        predictions = np.asarray(json.load(r)["predictions"], np.float32)
    np.testing.assert_array_equal(predictions, client.predict(context, horizon=2))


def test_rest_client_row_format(server, client):
    rows = RestPredictionClient(f"http://127.0.0.1:{server.rest_api_port}", MODEL, timeout=30,
                                row_format=True)
    context = clip(2, 3, seed=8)
    np.testing.assert_array_equal(rows.predict(context, horizon=3), client.predict(context, 3))


def test_response_over_4mb_arrives_through_the_client(server, client):
    # 8 clips x 600 frames x 16x16 float32 = 4.9 MB, above gRPC's 4 MB default.
    context = clip(8, 2, seed=6)
    frames = client.predict(context, horizon=600)
    assert frames.shape == (8, 600, 16, 16, 1) and frames.nbytes > 4 << 20
    # A channel with gRPC's default limits cannot receive it: the raised limit matters.
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving import tensors

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs[C.CONTEXT].CopyFrom(tensors.to_proto(context))
        request.inputs[C.HORIZON].CopyFrom(tensors.to_proto(C.horizon_input(600, 8)))
        with pytest.raises(grpc.RpcError) as e:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                               timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_metadata_and_status(client, rest_client):
    for c in (client, rest_client):
        meta = c.metadata()
        assert set(meta) == {C.SERVING_DEFAULT, C.PREDICT_UINT8, C.STEP}
        assert meta[C.SERVING_DEFAULT]["inputs"][C.CONTEXT] == {
            "dtype": "float", "shape": [-1, -1, 16, 16, 1]}
        assert meta[C.PREDICT_UINT8]["inputs"][C.CONTEXT]["dtype"] == "uint8"
        assert meta[C.SERVING_DEFAULT]["outputs"] == {
            C.FRAMES: {"dtype": "float", "shape": [-1, -1, 16, 16, 1]}}
        assert c.status() == [{"version": 1, "state": "AVAILABLE", "error_code": "OK",
                               "error_message": ""}]


def test_specific_version_and_response_spec(server, stub):
    from tensorflow_serving.apis import predict_pb2

    from serving import tensors

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 1
    request.inputs[C.CONTEXT].CopyFrom(tensors.to_proto(clip(1, 2)))
    request.inputs[C.HORIZON].CopyFrom(tensors.to_proto(C.horizon_input(1, 1)))
    response = stub.Predict(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == (MODEL, 1, C.SERVING_DEFAULT)


def test_context_in_uint8_is_converted_for_the_float_signature(client):
    context = (clip(1, 3, seed=7) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(client.predict(context, 2),
                                  client.predict(context.astype(np.float32) / 255.0, 2))


def test_rest_client_reports_errors_like_grpc(server):
    rest = RestPredictionClient(f"http://127.0.0.1:{server.rest_api_port}", "nope")
    with pytest.raises(ServingError) as e:
        rest.predict(clip(1, 2), 1)
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.http_status == 404
    assert e.value.message == "Servable not found for request: Latest(nope)"
