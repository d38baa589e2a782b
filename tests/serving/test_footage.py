"""An RGB footage model (head "flow") served: gRPC, REST and `vidgen-serve predict` match Keras."""

import os

import imageio.v2 as imageio
import numpy as np
import pytest

from export import contract as C
from serving.client import PredictionClient, RestPredictionClient
from serving.errors import ServingError
from tests.conftest import moving_square, write_mp4
from tests.footage_helpers import make_rgb_flow_run, rgb_clip

NAME = "footage"


@pytest.fixture(scope="module")
def rgb_served(tmp_path_factory):
    """(server, Keras model) of a tiny RGB flow model exported as NAME/1."""
    from export.savedmodel import export_savedmodel
    from vidgen.run_dir import load_run

    root = tmp_path_factory.mktemp("rgb_serving")
    run = make_rgb_flow_run(root / "run", seed=3)
    export_savedmodel(run, str(root / "base"), NAME, 1)
    from serving.server import Server

    server = Server(str(root / "base" / NAME), NAME, port=0, rest_api_port=0,
                    poll_interval=0.1)
    server.start()
    assert server.wait_for_model(60)
    yield server, load_run(run)[1]
    server.stop(grace=5)


def test_rgb_predict_over_grpc_and_rest_equals_keras(rgb_served):
    server, model = rgb_served
    context = rgb_clip(2, 4, seed=8)
    want = np.asarray(model.rollout(context, 3))
    with PredictionClient(f"127.0.0.1:{server.port}", NAME, timeout=30) as client:
        got = client.predict(context, horizon=3)
        assert client.metadata()[C.SERVING_DEFAULT]["inputs"][C.CONTEXT]["shape"][-1] == 3
        states = [np.asarray(s) for s in model.initial_states(1)]
        frame = context[:1, 0]
        out = client.predict_tensors(
            {C.FRAME: frame, **{C.state_name(i): s for i, s in enumerate(states)}},
            signature=C.STEP)
    assert got.shape == (2, 3, 16, 16, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(out[C.NEXT_FRAME], np.asarray(model.step(frame, states)[0]),
                               atol=1e-5)
    rest = RestPredictionClient(f"http://127.0.0.1:{server.rest_api_port}", NAME, timeout=30)
    np.testing.assert_array_equal(rest.predict(context, horizon=3), got)
    with PredictionClient(f"127.0.0.1:{server.port}", NAME, signature=C.PREDICT_UINT8,
                          timeout=30) as client:
        got8 = client.predict(np.round(context * 255).astype(np.uint8), horizon=3)
    assert got8.dtype == np.uint8 and got8.shape == (2, 3, 16, 16, 3)


def test_grayscale_request_to_an_rgb_model_is_refused_with_the_shapes(rgb_served):
    server, _ = rgb_served
    gray = rgb_clip(1, 3)[..., :1]
    with PredictionClient(f"127.0.0.1:{server.port}", NAME, timeout=30) as client:
        with pytest.raises(ServingError) as e:
            client.predict(gray, horizon=2)
    assert e.value.code.name == "INVALID_ARGUMENT"
    assert ("expected shape (-1, -1, 16, 16, 3)" in e.value.message
            and "received (1, 3, 16, 16, 1)" in e.value.message), e.value.message


def test_predict_command_continues_an_rgb_video(rgb_served, tmp_path, capsys):
    from serving.cli import main

    server, _ = rgb_served
    video = write_mp4(tmp_path / "clip.mp4", moving_square(10, 24, 32, channels=3))
    out = str(tmp_path / "out.gif")
    code = main(["predict", "--target", f"127.0.0.1:{server.port}", "--model", NAME,
                 "--input", video, "--context", "3", "--horizon", "4", "--out", out])
    assert code == 0, capsys.readouterr().err
    frames = imageio.mimread(out)
    assert len(frames) == 3 + 4 and frames[0].shape == (16, 16, 3)
    assert os.path.exists(tmp_path / "out_compare.gif")
