import json
import os

import keras
import numpy as np

from tests.conftest import tiny_run_config
from vidgen.training import callbacks as cb
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
