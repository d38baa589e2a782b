"""A NaN mid-run stops training before anything non-finite is saved; --resume goes on."""

import json
import os

import keras
import numpy as np
import pytest

from tests.tiny import tiny_run_config
from vidgen.errors import ConfigError
from vidgen.run_dir import save_model
from vidgen.training.backup import AtomicBackup
from vidgen.training.build import build_model
from vidgen.training.finite import NonFiniteError, non_finite_variables
from vidgen.training.train import train


class PoisonAt(keras.callbacks.Callback):
    """Writes NaN into the weights before global step `step` + 1 (as an exploding update would)."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            for w in self.model.trainable_weights:
                w.assign(np.full(w.shape, np.nan, "float32"))


def _finite_file(path: str) -> bool:
    model = keras.saving.load_model(path, compile=False)
    return not non_finite_variables(model)


def test_nan_mid_run_saves_nothing_non_finite_and_resume_continues(tmp_path):
    run = str(tmp_path / "run")
    cfg = tiny_run_config(**{"train.epochs": 3})  # 3 steps per epoch
    with pytest.raises(NonFiniteError) as caught:
        train(cfg, run, evaluate_after=False, extra_callbacks=[PoisonAt(4)])
    message = str(caught.value)
    # One sentence: the step, the loss and the terms it adds up, the last good backup,
    # and the command that continues from it with a tenth of the learning rate.
    assert message.startswith("Training stopped at step 5 (epoch 2) because the training "
                              "loss (terms: bce, context frames) went non-finite (loss=nan)")
    assert os.path.join(run, "backup", "epoch-0001.weights.h5") + " (epoch 1)" in message
    assert (f"`vidgen train --run-dir {run} --resume --set train.learning_rate=0.0001` "
            "continues") in message
    assert message.endswith(".") and ". " not in message and "\n" not in message
    # On disk: epoch 1's backup and checkpoints, all finite; nothing from epoch 2.
    state = json.load(open(os.path.join(run, "backup", "state.json")))
    assert state["epoch"] == 1 and state["backups"] == ["epoch-0001.weights.h5"]
    assert sorted(f for f in os.listdir(os.path.join(run, "backup"))) == [
        "epoch-0001.weights.h5", "state.json"]
    model = build_model(cfg)
    model.load_weights(os.path.join(run, "backup", "epoch-0001.weights.h5"))
    assert not non_finite_variables(model)
    assert _finite_file(os.path.join(run, "checkpoints", "last.keras"))
    assert _finite_file(os.path.join(run, "model.keras"))
    assert not os.path.exists(os.path.join(run, ".vidgen.lock")), "the lock is released"

    # Resume with a lower learning rate: it continues from epoch 1 and finishes, finite.
    summary = train(None, run, resume=True, evaluate_after=False,
                    resume_overrides=["train.learning_rate=0.0001"])
    assert summary["epochs_run"] == 2 and not summary["interrupted"]
    saved = json.load(open(os.path.join(run, "config.json")))
    assert saved["train"]["learning_rate"] == pytest.approx(1e-4)
    assert json.load(open(os.path.join(run, "backup", "state.json")))["epoch"] == 3
    assert _finite_file(os.path.join(run, "checkpoints", "last.keras"))


class PoisonWeightAfter(keras.callbacks.Callback):
    """Writes infinity into one weight after global step `step`: its loss was finite."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            kernel = self.model.trainable_weights[0]
            kernel.assign(np.full(kernel.shape, np.inf, "float32"))


def test_non_finite_weights_with_a_finite_loss_stop_at_the_epoch_end(tmp_path):
    run = str(tmp_path / "run")
    cfg = tiny_run_config(**{"train.epochs": 3})  # 3 steps per epoch
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
    with pytest.raises(NonFiniteError) as caught:
        # The last step of epoch 2: no later batch sees a NaN loss; only the epoch-end
        # check of the weights, before the backup and the checkpoints, can catch it.
        train(cfg, run, evaluate_after=False,
              extra_callbacks=[PoisonWeightAfter(6), record])
    assert len(losses) == 6 and np.isfinite(losses).all()
    message = str(caught.value)
    name = build_model(cfg).trainable_weights[0].path
    assert message.startswith(f"Training stopped at step 6 (epoch 2) because 1 variable(s) "
                              f"became NaN or infinite ({name}) while the loss was finite")
    assert os.path.join(run, "backup", "epoch-0001.weights.h5") + " (epoch 1)" in message
    assert ". " not in message
    state = json.load(open(os.path.join(run, "backup", "state.json")))
    assert state["epoch"] == 1 and state["backups"] == ["epoch-0001.weights.h5"]
    assert _finite_file(os.path.join(run, "checkpoints", "last.keras"))
    assert _finite_file(os.path.join(run, "model.keras"))
    assert len(open(os.path.join(run, "logs", "history.csv")).read().splitlines()) == 2


def test_resume_may_change_only_how_a_run_goes_on(tmp_path):
    run = str(tmp_path / "run")
    train(tiny_run_config(**{"train.epochs": 1}), run, evaluate_after=False)
    with pytest.raises(ConfigError, match=r"can change only train.learning_rate.*"
                                          r"Received: model.cell"):
        train(None, run, resume=True, evaluate_after=False,
              resume_overrides=["model.cell=gru"])
    # A full config that differs in the learning rate alone is accepted, too.
    summary = train(tiny_run_config(**{"train.epochs": 2, "train.learning_rate": 5e-4}), run,
                    resume=True, evaluate_after=False)
    assert summary["epochs_run"] == 1
    saved = json.load(open(os.path.join(run, "config.json")))["train"]
    assert saved["epochs"] == 2 and saved["learning_rate"] == pytest.approx(5e-4)


def test_writers_refuse_non_finite_weights_and_keep_the_old_file(tmp_path):
    model = build_model(tiny_run_config())
    model.compile(optimizer="adam", loss="mse")
    path = str(tmp_path / "model.keras")
    save_model(model, path)
    before = open(path, "rb").read()
    backup = AtomicBackup(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(0)
    kernel = model.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.inf, "float32"))
    with pytest.raises(NonFiniteError, match=r"Refusing saving .*model.keras.*infinity"):
        save_model(model, path)
    with pytest.raises(NonFiniteError, match="Refusing backing up epoch 2"):
        backup.on_epoch_end(1)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path / "backup")) == ["epoch-0001.weights.h5", "state.json"]
    assert sorted(os.listdir(tmp_path)) == ["backup", "model.keras"]
