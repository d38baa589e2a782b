import numpy as np
import pytest

from tests.harness import run_serialization_test
from vidgen import metrics
from vidgen.training.losses import ReconstructionLoss, ssim


def _pair():
    rng = np.random.default_rng(0)
    true = rng.random((2, 3, 24, 24, 1)).astype("float32")
    pred = np.clip(true + rng.normal(0, 0.1, true.shape), 0, 1).astype("float32")
    return true, pred


def test_ssim_term_matches_metric():
    true, pred = _pair()
    ours = np.asarray(ssim(true, pred))
    # The metric pads by reflection and crops 5 pixels: that is the valid window region.
    ref = metrics.ssim_frames(pred, true).mean(axis=1)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ssim(true, true)), 1.0, atol=1e-5)


@pytest.mark.parametrize("weights, expected", [
    (dict(mse_weight=1.0, bce_weight=0.0), lambda t, p: ((t - p) ** 2).mean()),
    (dict(l1_weight=1.0, bce_weight=0.0), lambda t, p: np.abs(t - p).mean()),
    (dict(bce_weight=1.0), lambda t, p: -(t * np.log(np.clip(p, 1e-6, 1 - 1e-6))
                                          + (1 - t) * np.log(np.clip(1 - p, 1e-6, 1))).mean()),
])
def test_terms(weights, expected):
    true, pred = _pair()
    loss = ReconstructionLoss(**weights)
    np.testing.assert_allclose(float(loss(true, pred)), expected(true, pred), rtol=1e-4)


def test_weights_combine_and_config_round_trip(tmp_path):
    true, pred = _pair()
    a = float(ReconstructionLoss(mse_weight=1.0, bce_weight=0.0)(true, pred))
    b = float(ReconstructionLoss(ssim_weight=1.0, bce_weight=0.0)(true, pred))
    both = run_serialization_test(
        ReconstructionLoss, dict(mse_weight=2.0, ssim_weight=0.5, bce_weight=0.0),
        (true, pred), tmp_path, expected_output_shape=(), expected_num_trainable_weights=0)
    np.testing.assert_allclose(float(both(true, pred)), 2 * a + 0.5 * b, rtol=1e-5)


def test_bad_weights():
    with pytest.raises(ValueError, match="mse_weight must be >= 0"):
        ReconstructionLoss(mse_weight=-1)
    with pytest.raises(ValueError, match="At least one loss weight"):
        ReconstructionLoss(bce_weight=0)
