import numpy as np
import pytest

from vidgen.calibration import calibrate_output_floor, floored


class EchoPredictor:
    """A stand-in for VideoPredictor whose rollout is its context (the test's prediction)."""

    def __init__(self):
        self.floors = []

    def rollout(self, context, horizon, floor=True):
        self.floors.append(floor)       # recorded when traced
        return context[:, :horizon]


def _digits_like(seed, haze):
    """(prediction as context, target): black frames with one bright square; the
    prediction has the square and a haze."""
    rng = np.random.default_rng(seed)
    target = np.zeros((4, 3, 32, 32, 1), "float32")
    pred = np.full_like(target, haze)
    for i in range(4):
        y, x = rng.integers(0, 24, 2)
        target[i, :, y:y + 8, x:x + 8] = 1.0
        pred[i, :, y:y + 8, x:x + 8] = 0.9
    return pred, target


def test_calibration_removes_haze_and_reports_every_candidate():
    batches = [_digits_like(s, haze=0.08) for s in range(2)]
    predictor = EchoPredictor()
    result = calibrate_output_floor(predictor, batches, tolerance=0.1, progress=False)
    # Flooring at 0.1 or more clears the haze (SSIM up, MSE down); above 0.9 the
    # squares go too. The first floor that clears the haze wins the SSIM tie.
    assert result["floor"] == pytest.approx(0.1)
    assert set(predictor.floors) == {False} and result["clips"] == 8
    by_floor = {c["floor"]: c for c in result["candidates"]}
    assert by_floor[0.1]["ssim"] > by_floor[0.0]["ssim"] + 0.2
    assert by_floor[0.1]["mse"] < by_floor[0.0]["mse"]


def test_calibration_keeps_no_floor_when_it_does_not_help():
    # Predictions equal to the (grey, textured) targets: any floor only loses.
    rng = np.random.default_rng(0)
    target = rng.uniform(0.05, 1.0, (4, 3, 16, 16, 1)).astype("float32")
    result = calibrate_output_floor(EchoPredictor(), [(target, target)], tolerance=1.0,
                                    progress=False)
    assert result["floor"] == 0.0


def test_calibration_respects_the_mse_tolerance():
    # A faint true background (0.04) that the prediction matches: flooring it raises MSE
    # by 16*16*0.04^2 per frame, more than a 1% tolerance allows.
    pred, target = _digits_like(0, haze=0.04)
    target = np.maximum(target, 0.04)
    result = calibrate_output_floor(EchoPredictor(), [(pred, target)], tolerance=0.0,
                                    progress=False)
    assert result["floor"] == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        calibrate_output_floor(EchoPredictor(), [(pred, target)], tolerance=-1.0)


def test_floored_zeroes_values_below_the_floor():
    frames = np.array([0.0, 0.1, 0.29, 0.3, 0.9], "float32")
    np.testing.assert_array_equal(floored(frames, 0.3), frames * [0, 0, 0, 1, 1])
    assert floored(frames, 0.0) is frames
