import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.tiny import set_flags, tiny_overrides, tiny_run_config
from vidgen.errors import VidgenError
from vidgen.training.backup import seed_generators
from vidgen.training.build import build_model, compile_model
from vidgen.training.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each test trains several epochs (one in a process it kills): 15-45 s on 2 cores.
pytestmark = pytest.mark.slow


def _train_command(run: str, epochs: int, steps: int) -> list[str]:
    overrides = tiny_overrides(train__epochs=epochs, train__steps_per_epoch=steps)
    command = [sys.executable, "-m", "vidgen.cli", "train", "--preset", "quick",
               "--data", "digits", "--run-dir", run, "--resume", "--no-evaluate"]
    return command + set_flags(overrides)


def _epochs_logged(path: str) -> int:
    """Complete rows of history.csv (CSVLogger writes one at the end of every epoch)."""
    try:
        with open(path) as f:
            return max(0, f.read().count("\n") - 1)   # the header is a line too
    except FileNotFoundError:
        return 0


def test_sigkill_mid_epoch_then_the_same_command_resumes(tmp_path):
    run = str(tmp_path / "run")
    command = _train_command(run, epochs=3, steps=40)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    state = os.path.join(run, "backup", "state.json")
    history_csv = os.path.join(run, "logs", "history.csv")
    # Epoch 1 is over once its history row is written (after its backup): the run is
    # then in its last epoch-end callbacks or in epoch 2, whose 40 steps take far longer
    # than this poll, on any machine.
    deadline = time.monotonic() + 300
    while (_epochs_logged(history_csv) < 1 and time.monotonic() < deadline
           and process.poll() is None):
        time.sleep(0.005)
    assert _epochs_logged(history_csv) == 1 and os.path.isfile(state), \
        process.communicate()[0][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    saved = json.load(open(state))
    assert saved["epoch"] == 1
    # The same command again: it resumes after epoch 1 instead of starting over.
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr   # the library's log lines go to stderr
    assert "resumed from" in output and "epoch 1" in output
    history = open(history_csv).read().splitlines()
    epochs = [line.split(",")[0] for line in history[1:]]
    assert epochs[-2:] == ["1", "2"] and "0" in epochs
    assert json.load(open(state))["epoch"] == 3
    assert not [f for f in os.listdir(os.path.join(run, "backup")) if ".tmp" in f]


def test_backup_restores_optimizer_steps_and_rng_state(tmp_path):
    cfg = tiny_run_config(**{"train.epochs": 1})
    run = str(tmp_path / "run")
    train(cfg, run, evaluate_after=False)
    state = json.load(open(os.path.join(run, "backup", "state.json")))
    model = compile_model(build_model(cfg), cfg)
    from vidgen.training.backup import AtomicBackup

    backup = AtomicBackup(os.path.join(run, "backup"))
    backup.set_model(model)
    backup.on_train_begin()
    assert backup.restored_epoch == 1
    assert int(model.optimizer.iterations.numpy()) == cfg.train.steps_per_epoch
    restored = {k: np.asarray(g.state.value).tolist() for k, g in seed_generators(model).items()}
    assert restored == state["seeds"] and any(v != [0, 0] for v in restored.values())


def test_corrupt_latest_backup_falls_back_and_none_readable_is_an_error(tmp_path, caplog):
    cfg = tiny_run_config(**{"train.epochs": 2})
    run = str(tmp_path / "run")
    train(cfg, run, evaluate_after=False)
    backup_dir = os.path.join(run, "backup")
    state = json.load(open(os.path.join(backup_dir, "state.json")))
    assert state["backups"] == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    latest = os.path.join(backup_dir, "epoch-0002.weights.h5")
    with open(latest, "r+b") as f:
        f.truncate(os.path.getsize(latest) // 2)
    cfg3 = tiny_run_config(**{"train.epochs": 3})
    cfg_path = os.path.join(run, "config.json")
    cfg3.to_json(cfg_path)
    with caplog.at_level(logging.INFO, logger="vidgen"):
        summary = train(None, run, resume=True, evaluate_after=False)
    out = caplog.text
    assert "epoch-0002.weights.h5 could not be loaded" in out
    assert "resumed from" in out and "(epoch 1)" in out
    assert summary["epochs_run"] == 2  # epochs 2 and 3 again, from the good backup
    # Every backup damaged: an error, never a silent restart.
    for name in json.load(open(os.path.join(backup_dir, "state.json")))["backups"]:
        open(os.path.join(backup_dir, name), "wb").write(b"not hdf5")
    with pytest.raises(VidgenError, match="No backup .* could be loaded"):
        train(None, run, resume=True, evaluate_after=False)
