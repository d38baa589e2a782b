import numpy as np
import pytest

from vidgen.errors import VidgenError
from vidgen.postprocess import ResidualDenoiser, denoise
from vidgen.postprocess.denoise import learned, median, nlmeans


def _noisy_clip(channels: int = 1, frames: int = 5, sigma: float = 0.1):
    """A smooth gradient, the same in every frame, and a copy with Gaussian noise."""
    ramp = np.linspace(0.3, 0.7, 24, dtype=np.float32)
    clean = np.broadcast_to(ramp[None, None, :, None], (frames, 24, 24, channels)).copy()
    noise = np.random.default_rng(0).normal(0, sigma, clean.shape)
    return clean, np.clip(clean + noise, 0, 1).astype(np.float32)


@pytest.mark.parametrize("method", ["nlmeans", "median", "none"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_shape_dtype_range(method, channels, frames):
    clip = np.random.default_rng(0).random((frames, 12, 16, channels)).astype(np.float32)
    out = denoise(clip, method)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("method", [nlmeans, median])
@pytest.mark.parametrize("channels", [1, 3])
def test_classical_methods_reduce_noise(method, channels):
    clean, noisy = _noisy_clip(channels, sigma=0.05)
    before = np.mean((noisy - clean) ** 2)
    after = np.mean((method(noisy) - clean) ** 2)
    assert after < 0.5 * before, (before, after)


def test_nlmeans_uses_the_neighbouring_frames():
    clean, noisy = _noisy_clip(frames=3, sigma=0.15)
    alone = nlmeans(noisy, temporal_window=1)[1]
    together = nlmeans(noisy, temporal_window=3)[1]
    assert np.mean((together - clean[1]) ** 2) < np.mean((alone - clean[1]) ** 2)
    with pytest.raises(VidgenError, match="positive odd number. Received: 2"):
        nlmeans(noisy, temporal_window=2)


def test_none_returns_a_copy():
    clip = np.random.default_rng(2).random((2, 4, 4, 1)).astype(np.float32)
    out = denoise(clip, "none")
    np.testing.assert_array_equal(out, clip)
    assert out is not clip


def test_learned_uses_the_model_and_checks_it():
    clip = np.random.default_rng(3).random((4, 8, 8, 1)).astype(np.float32)
    # The untrained denoiser's last layer is zero: it returns every frame unchanged.
    np.testing.assert_allclose(learned(clip, ResidualDenoiser(window=3)), clip, atol=1e-6)
    with pytest.raises(VidgenError, match="needs a trained denoiser model"):
        denoise(clip, "learned")
    with pytest.raises(VidgenError, match="trained on frames with 3 channel"):
        learned(clip, ResidualDenoiser(channels=3))
    with pytest.raises(VidgenError, match="needs a ResidualDenoiser model"):
        learned(clip, object())


@pytest.mark.parametrize("clip, message", [
    (np.zeros((0, 4, 4, 1), np.float32), "at least 1 frame. Received 0"),
    (np.zeros((4, 4, 1), np.float32), r"shaped \(time, height, width, 1 or 3\)"),
    (np.zeros((2, 4, 4, 1), np.uint8), "dtype uint8"),
    (np.full((2, 4, 4, 1), np.inf, np.float32), "NaN or Inf"),
    (np.full((2, 4, 4, 1), -0.5, np.float32), r"must lie in \[0, 1\]"),
])
@pytest.mark.parametrize("method", ["nlmeans", "median"])
def test_bad_clips(clip, message, method):
    with pytest.raises(VidgenError, match=message):
        denoise(clip, method)


def test_unknown_method():
    with pytest.raises(VidgenError, match="Unknown denoising method 'gauss'"):
        denoise(np.zeros((1, 4, 4, 1), np.float32), "gauss")
