"""`--resume --set train.learning_rate=...` sets the rate the optimizer uses, any schedule."""

import json
import os

import keras
import pytest

from tests.tiny import tiny_run_config
from vidgen.training.train import train


class RecordRate(keras.callbacks.Callback):
    """The optimizer's learning rate at the start of every training step of a run."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        self.rates.append(float(rate))


def test_resume_with_a_lower_constant_rate_uses_it_at_every_step(tmp_path):
    run = str(tmp_path / "run")
    cfg = tiny_run_config(**{"train.epochs": 1, "train.lr_schedule": "constant",
                             "train.learning_rate": 1e-3})
    first = RecordRate()
    train(cfg, run, evaluate_after=False, extra_callbacks=[first])
    assert first.rates == pytest.approx([1e-3] * 3)
    # The backup holds the optimizer's learning-rate variable (0.001); the configured
    # rate of the resumed run wins over it.
    resumed = RecordRate()
    summary = train(None, run, resume=True, evaluate_after=False, extra_callbacks=[resumed],
                    resume_overrides=["train.learning_rate=0.0001", "train.epochs=2"])
    assert summary["epochs_run"] == 1
    assert json.load(open(os.path.join(run, "config.json")))["train"]["learning_rate"] == \
        pytest.approx(1e-4)
    assert resumed.rates == pytest.approx([1e-4] * 3)
    optimizer = resumed.model.optimizer
    assert float(keras.ops.convert_to_numpy(optimizer.iterations)) == 6
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(1e-4)
