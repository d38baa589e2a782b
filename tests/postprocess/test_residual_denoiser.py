import numpy as np
import pytest

from tests.harness import run_serialization_test
from vidgen.postprocess import ResidualDenoiser
from vidgen.postprocess.residual_denoiser import neighbour_stack


def test_neighbour_stack_layout():
    clips = np.arange(2 * 3 * 2 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 2, 1)
    out = neighbour_stack(clips, 3)
    assert out.shape == (6, 2, 2, 3)
    np.testing.assert_array_equal(out[0, ..., 0], clips[0, 0, ..., 0])   # repeated end frame
    np.testing.assert_array_equal(out[0, ..., 1], clips[0, 0, ..., 0])
    np.testing.assert_array_equal(out[0, ..., 2], clips[0, 1, ..., 0])
    np.testing.assert_array_equal(out[4, ..., 1], clips[1, 1, ..., 0])
    np.testing.assert_array_equal(neighbour_stack(clips, 1)[..., 0], clips.reshape(6, 2, 2))


@pytest.mark.parametrize("channels, window", [(1, 3), (3, 1)])
def test_shape_config_round_trip_and_fit(channels, window, tmp_path):
    x = np.random.default_rng(0).random((2, 8, 12, window * channels)).astype(np.float32)
    y = np.random.default_rng(1).random((2, 8, 12, channels)).astype(np.float32)
    # The shared harness: output shape, the same config from from_config, and a .keras
    # round trip that loads a ResidualDenoiser with the same outputs.
    model = run_serialization_test(
        ResidualDenoiser, dict(channels=channels, window=window, filters=4, depth=3), x,
        tmp_path, expected_output_shape=(2, 8, 12, channels))
    model.compile(optimizer="adam", loss="mae")
    model.fit(x, y, epochs=1, verbose=0)
    trained = np.asarray(model(x))
    assert 0.0 <= trained.min() and trained.max() <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 2}, "channels must be 1 or 3. Received: channels=2"),
    ({"window": 2}, "window must be a positive odd number. Received: window=2"),
    ({"filters": 0}, "filters must be positive. Received: filters=0"),
    ({"depth": 1}, "depth must be at least 2. Received: depth=1"),
    ({"kernel_size": 4}, "kernel_size must be a positive odd number"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualDenoiser(**kwargs)
