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


def test_sharpness_is_one_for_truth_lower_for_blur_zero_for_black():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    true = (rng.random((2, 3, 16, 16, 1)) > 0.7).astype(np.float64)
    blurred = ndimage.gaussian_filter(true, sigma=(0, 0, 1.5, 1.5, 0))
    for pred, check in ((true, lambda s: abs(s - 1.0) < 1e-9), (blurred, lambda s: s < 0.7),
                        (np.zeros_like(true), lambda s: s == 0.0)):
        acc = metrics.MetricAccumulator()
        acc.update(pred, true)
        sharpness = acc.result()["sharpness"]
        assert check(sharpness["mean"]) and len(sharpness["per_step"]) == 3


def test_best_of_n_and_diversity():
    rng = np.random.default_rng(1)
    true = rng.random((2, 3, 16, 16, 1))
    far = np.clip(true + 0.3, 0, 1)
    samples = np.stack([far, true, far], axis=1)           # one exact sample among three
    result = metrics.best_of_n(samples, true)
    assert result["psnr_best"] == 100.0 and result["ssim_best"] > 0.999
    assert result["psnr_mean"] < result["psnr_best"] and result["ssim_mean"] < 1.0
    assert result["diversity_mse"] > 0
    same = metrics.best_of_n(np.stack([far, far], axis=1), true)
    assert same["diversity_mse"] == 0.0
    assert same["psnr_best"] == pytest.approx(same["psnr_mean"])
    with pytest.raises(DataError, match="best_of_n expects"):
        metrics.best_of_n(far, true)
