import numpy as np
import pytest

from vidgen.data import synthetic


def test_digits_are_deterministic_per_seed_split_index():
    a = synthetic.digits_clip(7, "train", 3, 12, 64, 1, 3)
    b = synthetic.digits_clip(7, "train", 3, 12, 64, 1, 3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 64, 64, 1) and a.dtype == np.uint8
    assert not np.array_equal(a, synthetic.digits_clip(8, "train", 3, 12, 64, 1, 3))
    assert not np.array_equal(a, synthetic.digits_clip(7, "test", 3, 12, 64, 1, 3))
    assert not np.array_equal(a, synthetic.digits_clip(7, "train", 4, 12, 64, 1, 3))


def test_digits_move_and_stay_on_canvas():
    clip = synthetic.digits_clip(0, "val", 0, 20, 64, 2, 2)
    ink = clip.reshape(20, -1).sum(axis=1)
    assert (ink > 0).all(), "every frame shows its digits"
    assert np.abs(np.diff(clip.astype(int), axis=0)).sum() > 0, "digits move"
    assert clip.max() >= 200 and clip.min() == 0


def test_rendered_digit_fills_glyph_box():
    rng = np.random.default_rng(0)
    for digit in range(10):
        glyph = synthetic.render_digit(rng, digit)
        assert glyph.shape == (28, 28)
        rows = np.nonzero(glyph.max(axis=1) > 64)[0]
        assert 12 <= rows.max() - rows.min() + 1 <= 26


def test_bouncing_trajectories_stay_in_range_and_bounce():
    rng = np.random.default_rng(1)
    traj = synthetic.bouncing_trajectories(rng, 200, 3, 36.0)
    assert traj.min() >= 0 and traj.max() <= 36
    # Over 200 frames at 3.6 px/frame every object hits a wall: its direction flips.
    steps = np.diff(traj, axis=0)
    assert all((np.sign(steps[:, k, 0]) > 0).any() and (np.sign(steps[:, k, 0]) < 0).any()
               for k in range(3))


@pytest.mark.parametrize("color, channels", [(True, 3), (False, 1)])
def test_shapes_clip(color, channels):
    clip = synthetic.shapes_clip(0, "train", 0, 6, 32, 1, 3, color)
    assert clip.shape == (6, 32, 32, channels) and clip.dtype == np.uint8
    assert clip.max() > 0


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split must be one of"):
        synthetic.clip_rng(0, "training", 0)
