import json
import os

import keras
import numpy as np
import pytest

from tests.tiny import tiny_run_config
from vidgen.training import callbacks as cb
from vidgen.training.budget_cosine_decay import BudgetCosineDecay
from vidgen.training.build import budget_schedules, build_model, compile_model
from vidgen.training.train import train


class FakeClock:
    """perf_counter that advances `tick` seconds per read."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def tiny_fit(budget: cb.TimeBudget, steps: int) -> tuple[int, int]:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((steps, 2), "float32")
    history = model.fit(x, x[:, :1], batch_size=1, epochs=3, callbacks=[budget], verbose=0)
    return len(history.history["loss"]), int(model.optimizer.iterations.numpy())


def test_time_budget_stops_training_after_wall_time(monkeypatch):
    # Every clock read advances 10 s: read at the start, then after each batch, so
    # 40 s have passed after the fourth batch, past the 0.5-minute budget.
    monkeypatch.setattr(cb.time, "perf_counter", FakeClock(10.0))
    budget = cb.TimeBudget(0.5)
    epochs, steps = tiny_fit(budget, steps=20)
    assert budget.stopped and epochs == 1 and steps == 4


def test_zero_time_budget_means_none(monkeypatch):
    monkeypatch.setattr(cb.time, "perf_counter", FakeClock(1e6))
    budget = cb.TimeBudget(0.0)
    epochs, steps = tiny_fit(budget, steps=4)
    assert not budget.stopped and epochs == 3 and steps == 12


def test_train_config_time_budget_ends_the_run(tmp_path):
    # train.time_budget_minutes drives `vidgen train`: a budget shorter than one step
    # ends the run after the first step of the first of three epochs.
    cfg = tiny_run_config(**{"train.epochs": 3, "train.time_budget_minutes": 1e-6})
    summary = train(cfg, str(tmp_path / "run"), evaluate_after=False)
    assert summary["stopped_by_time_budget"] and summary["epochs_run"] == 1
    with open(os.path.join(tmp_path, "run", "training.json")) as f:
        assert json.load(f)["stopped_by_time_budget"]


def test_budget_cosine_decay_follows_steps_then_time():
    schedule = BudgetCosineDecay(1.0, total_steps=110, warmup_steps=10, final_fraction=0.1)
    rate = lambda step: float(schedule(step))  # noqa: E731
    assert rate(0) == 0.0 and abs(rate(5) - 0.5) < 1e-6 and abs(rate(10) - 1.0) < 1e-6
    assert abs(rate(60) - 0.55) < 1e-6          # half way through the cosine
    assert abs(rate(110) - 0.1) < 1e-6 and abs(rate(500) - 0.1) < 1e-6
    # Three quarters of the time budget spent: the rate is the cosine's at 3/4,
    # whichever step the run has reached, unless the steps are further along.
    schedule.time_progress.assign(0.75)
    at_three_quarters = 0.1 + 0.9 * 0.5 * (1 + np.cos(0.75 * np.pi))
    assert abs(rate(20) - at_three_quarters) < 1e-6
    assert abs(rate(110) - 0.1) < 1e-6
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, BudgetCosineDecay) and abs(float(restored(60)) - 0.55) < 1e-6


def test_budget_cosine_decay_rejects_bad_arguments():
    for kwargs in ({"peak": 0.0, "total_steps": 10}, {"peak": 1.0, "total_steps": 0},
                   {"peak": 1.0, "total_steps": 10, "final_fraction": 1.5}):
        with pytest.raises(ValueError):
            BudgetCosineDecay(**kwargs)


def test_time_budget_anneals_the_learning_rate_within_the_budget(monkeypatch):
    # 10 s per clock read, a 1-minute budget: after batch 3, 30 s = half the budget.
    monkeypatch.setattr(cb.time, "perf_counter", FakeClock(10.0))
    schedule = BudgetCosineDecay(1.0, total_steps=10_000, final_fraction=0.0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    x = np.zeros((3, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0,
              callbacks=[cb.TimeBudget(1.0, schedules=budget_schedules(model))])
    assert abs(float(schedule.time_progress.numpy()) - 0.5) < 1e-6
    assert abs(float(model.optimizer.learning_rate.numpy()) - 0.5) < 1e-5


def test_train_anneals_every_optimizer_of_a_gan_within_its_budget():
    cfg = tiny_run_config(**{"train.adversarial": "hinge", "model.frame_critic_filters": [4],
                             "model.video_critic_filters": [4],
                             "train.critic_learning_rate": 5e-4})
    model = compile_model(build_model(cfg), cfg)
    peaks = sorted(s.peak for s in budget_schedules(model))
    assert peaks == sorted([5e-4, cfg.train.learning_rate])
