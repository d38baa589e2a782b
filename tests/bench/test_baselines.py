import numpy as np
import pytest

from bench.baselines import TutorialConvLSTM, teacher_forcing, tutorial_config
from tests.harness import run_serialization_test


@pytest.fixture(scope="module")
def model():
    m = TutorialConvLSTM(frame_size=16, channels=1, filters=4, horizon=3)
    # Move the weights (and the BatchNorm statistics) off their initial values so every
    # part of the computation matters in the comparisons below.
    rng = np.random.default_rng(0)
    for w in m.weights:
        w.assign(np.asarray(w) + rng.normal(0, 0.1, w.shape).astype("float32"))
    return m


def clip(batch=2, frames=6, seed=0):
    return np.random.default_rng(seed).random((batch, frames, 16, 16, 1), dtype=np.float32)


def test_output_shape_and_range(model):
    out = np.asarray(model(clip()))
    assert out.shape == (2, 6, 16, 16, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_causal_output_t_does_not_see_later_frames(model):
    x = clip()
    changed = x.copy()
    changed[:, 4:] = clip(seed=1)[:, 4:]
    before, after = np.asarray(model(x)), np.asarray(model(changed))
    np.testing.assert_array_equal(before[:, :4], after[:, :4])
    assert np.abs(before[:, 4:] - after[:, 4:]).max() > 0


def test_streaming_rollout_equals_the_tutorials_rerun_loop(model):
    x = clip()[:, :4]
    streaming = np.asarray(model.rollout(x, 5))
    rerun = np.asarray(model.rerun_rollout(x, 5))
    assert streaming.shape == (2, 5, 16, 16, 1)
    np.testing.assert_allclose(streaming, rerun, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.predict_next(x)), streaming[:, 0], atol=1e-5)


def test_config_round_trip_and_keras_save_load(tmp_path):
    # The shared harness: output shape, get_config -> from_config and .keras round trips
    # (the loaded model is a TutorialConvLSTM with the same outputs).
    model = run_serialization_test(
        TutorialConvLSTM, dict(frame_size=16, channels=1, filters=4, horizon=3), clip(),
        tmp_path, expected_output_shape=(2, 6, 16, 16, 1))
    config = model.get_config()
    assert {k: config[k] for k in ("frame_size", "channels", "filters", "kernel_sizes",
                                   "horizon")} == {"frame_size": 16, "channels": 1, "filters": 4,
                                                   "kernel_sizes": [5, 3, 1], "horizon": 3}


def test_one_fit_step_with_teacher_forcing():
    m = TutorialConvLSTM(frame_size=8, channels=1, filters=2, kernel_sizes=(3, 1))
    m.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).random((2, 5, 8, 8, 1), dtype=np.float32)
    inputs, targets = teacher_forcing(x[:, :3], x[:, 3:])
    assert inputs.shape == (2, 4, 8, 8, 1) and targets.shape == (2, 4, 8, 8, 1)
    np.testing.assert_array_equal(np.asarray(inputs)[:, 1:], np.asarray(targets)[:, :-1])
    history = m.fit(inputs, targets, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("kwargs, message", [
    ({"filters": 0}, "filters must be positive"),
    ({"kernel_sizes": (5, 2)}, "kernel_sizes must be positive odd"),
    ({"channels": 2}, "channels must be 1 or 3"),
])
def test_bad_arguments_fail_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TutorialConvLSTM(frame_size=8, **kwargs)


def test_tutorial_config_is_the_tutorials_training():
    cfg = tutorial_config("digits", ["data.frame_size=32"], budget_minutes=2.0)
    assert (cfg.data.frame_size, cfg.train.batch_size, cfg.train.learning_rate,
            cfg.train.lr_schedule, cfg.train.time_budget_minutes) == (32, 5, 1e-3, "constant",
                                                                      2.0)
    assert tutorial_config("digits", max_steps=3).train.steps_per_epoch == 3
