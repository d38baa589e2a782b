"""The head layers of VideoPredictor and its latent prior: serialisation and what they compute."""

import numpy as np
import pytest

from tests.harness import run_serialization_test
from vidgen.models import CDNAHead, DNAHead, FlowHead, LatentPrior, PixelHead, SDNAHead

RNG = np.random.default_rng(0)
FRAME = RNG.random((2, 16, 16, 1)).astype("float32")
FEATURES = RNG.random((2, 4, 4, 8)).astype("float32")


def _maps(num_maps):
    return RNG.normal(0.0, 2.0, (2, 16, 16, num_maps)).astype("float32")


@pytest.mark.parametrize("cls, kwargs, weights", [
    (DNAHead, dict(frame_size=16, channels=1, kernel_size=3), 0),
    (SDNAHead, dict(frame_size=16, channels=1, kernel_size=3), 0),
    (FlowHead, dict(frame_size=16, channels=1, kernel_size=5), 0),
    (CDNAHead, dict(frame_size=16, channels=1, kernel_size=3, num_kernels=2), 2),
])
@pytest.mark.parametrize("sharp", [False, True])
def test_motion_heads_serialise_and_stay_in_range(cls, kwargs, weights, sharp, tmp_path):
    num_maps = cls(**kwargs).num_maps
    head = run_serialization_test(cls, kwargs, (FRAME, _maps(num_maps), FEATURES), tmp_path,
                                  expected_output_shape=(2, 16, 16, 1),
                                  expected_num_trainable_weights=weights,
                                  call_kwargs=dict(sharp=sharp))
    out = np.asarray(head(FRAME, _maps(num_maps), FEATURES, sharp=sharp))
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_pixel_head(tmp_path):
    maps = _maps(1)
    head = run_serialization_test(PixelHead, dict(channels=1), (FRAME, maps), tmp_path,
                                  expected_output_shape=(2, 16, 16, 1),
                                  expected_num_trainable_weights=0)
    np.testing.assert_allclose(np.asarray(head(FRAME, maps)), 1 / (1 + np.exp(-maps)),
                               atol=1e-6)


def test_map_counts():
    assert DNAHead(16, 3, 5).num_maps == 25 + 1 + 3 == DNAHead.count_maps(3, 5)
    assert SDNAHead(16, 3, 5).num_maps == 10 + 1 + 3
    assert CDNAHead(16, 3, 5, num_kernels=4).num_maps == 4 + 1 + 3
    assert FlowHead(16, 3, 5).num_maps == 3 + 3
    assert PixelHead(3).num_maps == 3


@pytest.mark.parametrize("cls, kwargs, message", [
    (DNAHead, dict(frame_size=16, channels=1, kernel_size=4), "kernel_size must be a positive odd"),
    (CDNAHead, dict(frame_size=16, channels=1, num_kernels=0), "num_kernels must be positive"),
    (PixelHead, dict(channels=0), "channels must be positive"),
    (LatentPrior, dict(latent_dim=0), "latent_dim must be positive"),
])
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_latent_prior_serialises_and_samples_the_posterior(tmp_path):
    hidden = RNG.random((2, 4, 4, 8)).astype("float32")
    truth = RNG.random((2, 4, 4, 6)).astype("float32")
    noise = RNG.standard_normal((2, 1, 1, 3)).astype("float32")
    latent = run_serialization_test(LatentPrior, dict(latent_dim=3), (hidden, noise, truth),
                                    tmp_path, expected_output_shape=[(2, 4, 4, 3), ()],
                                    expected_num_trainable_weights=4)
    z, kl = latent(hidden, noise, truth)
    assert float(kl) >= 0.0
    # z is one vector per clip, broadcast over the grid.
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z)[:, :1, :1] * np.ones((1, 4, 4, 1)))
    # Without the true frame: the prior, and no KL.
    z_prior, kl_prior = latent(hidden, noise)
    assert float(kl_prior) == 0.0 and not np.allclose(z_prior, z)
    mean = np.asarray(latent.prior_net(hidden)).mean(axis=(1, 2), keepdims=True)
    mu, logvar = np.clip(mean, -10, 10)[..., :3], np.clip(mean, -10, 10)[..., 3:]
    np.testing.assert_allclose(np.asarray(z_prior)[:, :1, :1], mu + np.exp(0.5 * logvar) * noise,
                               atol=1e-5)


# ------------------------------------------------ the motion (moved from the predictor's tests)

def test_dna_head_moves_pixels():
    """With kernels that put all weight on one shift, the frame moves by one pixel."""
    head = DNAHead(16, 1, kernel_size=3)
    frame = np.zeros((1, 16, 16, 1), "float32")
    frame[0, 5, 5, 0] = 1.0
    weights = np.zeros((1, 16, 16, 9), "float32")
    weights[..., 3] = 1.0  # (dy, dx) = (1, 0): each output pixel reads the pixel left of it
    moved = np.asarray(head.advect(frame, weights))
    assert moved[0, 5, 6, 0] == 1.0 and moved.sum() == 1.0


def test_cdna_applies_each_clips_own_kernels():
    head = CDNAHead(16, 3, kernel_size=3, num_kernels=2)
    rng = np.random.default_rng(0)
    frames = rng.random((2, 16, 16, 3)).astype("float32")
    kernels = np.zeros((2, 2, 9), "float32")
    kernels[:, 0, 4] = 1.0   # identity for both clips
    kernels[0, 1, 3] = 1.0   # clip 0: each pixel takes its left neighbour (moves right)
    kernels[1, 1, 1] = 1.0   # clip 1: each pixel takes the one above (moves down)
    out = np.asarray(head.transform(frames, kernels))
    assert out.shape == (2, 16, 16, 3, 2)
    np.testing.assert_allclose(out[..., 0], frames, atol=1e-6)
    np.testing.assert_allclose(out[0, :, 1:, :, 1], frames[0, :, :-1], atol=1e-6)
    np.testing.assert_allclose(out[1, 1:, :, :, 1], frames[1, :-1], atol=1e-6)


def test_sdna_shifts_rows_then_columns():
    head = SDNAHead(16, 1, kernel_size=3)
    frames = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    down = np.zeros((2, 16, 16, 3), "float32")
    down[..., 0] = 1.0  # offset -1: each pixel takes the one above, content moves down
    out = np.asarray(head.shift(frames, down, axis=1))
    np.testing.assert_allclose(out[:, 1:], frames[:, :-1], atol=1e-6)
    left = np.zeros((2, 16, 16, 3), "float32")
    left[..., 2] = 1.0  # offset +1: each pixel takes its right neighbour, content moves left
    out = np.asarray(head.shift(frames, left, axis=2))
    np.testing.assert_allclose(out[:, :, :-1], frames[:, :, 1:], atol=1e-6)


def test_flow_head_warps_by_more_than_an_sdna_kernel_radius():
    """A global shift of 6 px per frame (a camera pan) is one flow value, not a kernel tap.

    The sdna head with its 9-tap kernels moves a pixel at most 4 px per frame;
    the flow head of the `natural` preset (dna_kernel=17) up to 8, with
    sub-pixel (bilinear) accuracy.
    """
    head = FlowHead(32, 3, kernel_size=17)
    rng = np.random.default_rng(7)
    wide = rng.random((1, 32, 64, 3)).astype("float32")
    frame = wide[:, :, 10:42]
    maps = np.zeros((1, 32, 32, 3 + 3), "float32")
    # Sample the last frame at x + 6 (the scene moves left by 6 px); gate 1.
    maps[..., 1] = 8.0 * np.arctanh(6.0 / 8.0)
    maps[..., 2] = 20.0
    out = np.asarray(head(frame, maps))
    np.testing.assert_allclose(out[:, :, :26], wide[:, :, 16:42], atol=1e-4)
    # Half a pixel: the mean of two neighbours.
    maps[..., 1] = 8.0 * np.arctanh(0.5 / 8.0)
    out = np.asarray(head(frame, maps))
    np.testing.assert_allclose(out[:, :, :31], (wide[:, :, 10:41] + wide[:, :, 11:42]) / 2,
                               atol=1e-4)
