import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vidgen import metrics
from vidgen.errors import DataError


def _pair(channels=1, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.random((2, 3, 24, 20, channels))
    pred = np.clip(true + rng.normal(0, 0.1, true.shape), 0, 1)
    return pred, true


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_scikit_image(channels):
    pred, true = _pair(channels)
    ours = metrics.ssim_frames(pred, true)
    ours7 = metrics.ssim_uniform7_frames(pred, true)
    for i in range(2):
        for t in range(3):
            kwargs = dict(data_range=1.0, channel_axis=-1)
            ref = structural_similarity(pred[i, t], true[i, t], gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, **kwargs)
            ref7 = structural_similarity(pred[i, t], true[i, t], **kwargs)
            assert abs(ours[i, t] - ref) < 1e-3
            assert abs(ours7[i, t] - ref7) < 1e-3


def test_psnr_matches_scikit_image():
    pred, true = _pair()
    ours = metrics.psnr_frames(pred, true)
    ref = peak_signal_noise_ratio(true[1, 2], pred[1, 2], data_range=1.0)
    assert abs(ours[1, 2] - ref) < 1e-3
    assert metrics.psnr_frames(true, true).max() == 100.0


def test_mse_mae_are_per_frame_sums():
    true = np.zeros((2, 4, 8, 8, 1))
    pred = np.full_like(true, 0.5)
    np.testing.assert_allclose(metrics.mse_per_step(pred, true), [16.0] * 4)
    np.testing.assert_allclose(metrics.mae_per_step(pred, true), [32.0] * 4)


def test_accumulator_equals_one_shot():
    pred, true = _pair(seed=3)
    acc = metrics.MetricAccumulator()
    acc.update(pred[:1], true[:1])
    acc.update(pred[1:], true[1:])
    result = acc.result()
    assert result["clips"] == 2
    np.testing.assert_allclose(result["mse"]["per_step"], metrics.mse_per_step(pred, true))
    np.testing.assert_allclose(result["ssim"]["mean"], metrics.ssim_frames(pred, true).mean())


def test_bad_shapes():
    with pytest.raises(DataError, match="alike"):
        metrics.mse_per_step(np.zeros((1, 2, 4, 4, 1)), np.zeros((1, 3, 4, 4, 1)))
    with pytest.raises(DataError, match="evaluation split is empty"):
        metrics.MetricAccumulator().result()
