import numpy as np
import pytest

from vidgen.errors import VidgenError
from vidgen.postprocess import interpolate
from vidgen.postprocess.interpolate import drop_and_interpolate


def _square(x: float, size: int = 32, side: int = 8) -> np.ndarray:
    """A bright square with its left edge at `x` (sub-pixel by area) on black, (H, W, 1)."""
    frame = np.zeros((size, size), np.float32)
    cols = np.arange(size)
    cover = np.clip(np.minimum(cols + 1, x + side) - np.maximum(cols, x), 0, 1)
    frame[12:12 + side] = cover[None, :]
    return frame[..., None]


@pytest.mark.parametrize("method", ["linear", "flow"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("k", [2, 3])
def test_shape_dtype_range_and_originals_kept(method, channels, k):
    clip = np.random.default_rng(0).random((4, 16, 12, channels)).astype(np.float32)
    out = interpolate(clip, k, method)
    assert out.shape == (3 * k + 1, 16, 12, channels) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_array_equal(out[::k], clip)


@pytest.mark.parametrize("method", ["linear", "flow"])
def test_k1_is_the_identity(method):
    clip = np.random.default_rng(1).random((3, 8, 8, 1)).astype(np.float32)
    out = interpolate(clip, 1, method)
    np.testing.assert_array_equal(out, clip)
    assert out is not clip


def test_linear_blend_is_exact():
    a = np.full((1, 4, 4, 1), 0.2, np.float32)
    b = np.full((1, 4, 4, 1), 0.8, np.float32)
    out = interpolate(np.concatenate([a, b]), 4, "linear")
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.2, 0.35, 0.5, 0.65, 0.8], atol=1e-6)


def test_flow_beats_linear_on_a_translated_square():
    clip = np.stack([_square(8.0), _square(16.0)])
    truth = _square(12.0)
    errors = {m: float(np.mean((interpolate(clip, 2, m)[1] - truth) ** 2))
              for m in ("linear", "flow")}
    assert errors["flow"] < 0.25 * errors["linear"], errors


def test_drop_and_interpolate_scores_the_dropped_frames():
    clip = np.stack([_square(float(x)) for x in range(0, 14, 2)])        # 7 frames
    filled, dropped = drop_and_interpolate(clip, 2, "linear")
    assert filled.shape == dropped.shape == (3, 32, 32, 1)
    np.testing.assert_array_equal(dropped, clip[1:6:2])
    np.testing.assert_allclose(filled, (clip[0:5:2] + clip[2:7:2]) / 2, atol=1e-6)
    filled, dropped = drop_and_interpolate(clip[:6], 3, "flow")         # kept 0, 3
    np.testing.assert_array_equal(dropped, clip[[1, 2]])


@pytest.mark.parametrize("k", [0, -1, 2.5, "2", True, None])
def test_bad_factor(k):
    with pytest.raises(VidgenError, match="must be an integer >= 1"):
        interpolate(np.zeros((2, 4, 4, 1), np.float32), k)


@pytest.mark.parametrize("clip, message", [
    (np.zeros((1, 4, 4, 1), np.float32), "at least 2 frames. Received 1"),
    (np.zeros((0, 4, 4, 1), np.float32), "at least 2 frames. Received 0"),
    (np.zeros((2, 4, 4), np.float32), r"shaped \(time, height, width, 1 or 3\)"),
    (np.zeros((2, 4, 4, 2), np.float32), r"Received shape \(2, 4, 4, 2\)"),
    (np.zeros((2, 4, 4, 1), np.uint8), "dtype uint8"),
    (np.full((2, 4, 4, 1), np.nan, np.float32), "NaN or Inf"),
    (np.full((2, 4, 4, 1), 2.0, np.float32), r"must lie in \[0, 1\]"),
])
def test_bad_clips(clip, message):
    with pytest.raises(VidgenError, match=message):
        interpolate(clip, 2, "flow")


def test_bad_method_and_scoring_arguments():
    clip = np.zeros((5, 4, 4, 1), np.float32)
    with pytest.raises(VidgenError, match="Unknown interpolation method 'cubic'"):
        interpolate(clip, 2, "cubic")
    with pytest.raises(VidgenError, match="needs K >= 2"):
        drop_and_interpolate(clip, 1, "flow")
    with pytest.raises(VidgenError, match="at least K \\+ 1 frames. Received 5"):
        drop_and_interpolate(clip, 5, "flow")


def test_rounding_outside_the_range_is_clipped():
    clip = np.array([0.0, 1.0 + 1e-7], np.float32).reshape(2, 1, 1, 1) * np.ones((2, 4, 4, 1),
                                                                                 np.float32)
    out = interpolate(clip, 2, "linear")
    assert out.max() == 1.0 and out.dtype == np.float32
