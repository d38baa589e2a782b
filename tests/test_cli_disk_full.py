"""A full disk during `vidgen train`: one sentence, a nonzero exit, the old file intact."""

import errno
import os
import re

import keras
import pytest

from tests.tiny import set_flags, tiny_overrides, tiny_run_config
from vidgen.cli import main
from vidgen.fileio import DiskFullError
from vidgen.training.train import train


def _train_argv(run: str, epochs: int, *extra: str) -> list[str]:
    overrides = tiny_overrides(train__epochs=epochs, train__steps_per_epoch=2)
    return ["train", "--preset", "quick", "--data", "digits", "--run-dir", run,
            "--no-evaluate", *extra, *set_flags(overrides)]


def test_a_full_disk_while_training_is_one_sentence_and_resume_continues(
        tmp_path, monkeypatch, capsys):
    run = str(tmp_path / "run")
    last = os.path.join(run, "checkpoints", "last.keras")
    real_save = keras.Model.save
    seen = {"last": 0}
    before = {}

    def save(self, filepath, *args, **kwargs):
        # checkpoints/last.keras of epoch 2: the disk fills up half way through it.
        if os.path.basename(filepath).startswith("last.tmp-"):
            seen["last"] += 1
            if seen["last"] >= 2:
                before["last"] = open(last, "rb").read()
                with open(filepath, "wb") as f:
                    f.write(b"PK\x03\x04 half a zip")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    assert main(_train_argv(run, 2)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vidgen: error:")]
    assert len(errors) == 1, err[-3000:]
    assert re.fullmatch(
        rf"vidgen: error: Writing {re.escape(last)} failed because the disk is full "
        r"\(\d+(\.\d)? (B|KiB|MiB|GiB|TiB) free\); the previous last\.keras is intact; free "
        rf"some space, then continue with `vidgen train --run-dir {re.escape(run)} --resume`\.",
        errors[0]), errors[0]
    assert "Traceback" not in err
    # On disk: epoch 1's last.keras as it was, no temporary file, the lock released.
    assert open(last, "rb").read() == before["last"]
    assert not [f for _, _, files in os.walk(run) for f in files if ".tmp-" in f]
    assert not os.path.exists(os.path.join(run, ".vidgen.lock"))

    # With -v the traceback comes first; the message is the same sentence. (Epoch 2 was
    # backed up before its last.keras failed: the resumed run goes on with epoch 3.)
    seen["last"] = 1
    assert main(_train_argv(run, 3, "--resume", "-v")) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "No space left on device" in err, err[-5000:]
    assert err.rstrip().splitlines()[-1] == errors[0]
    assert open(last, "rb").read() == before["last"]

    # Space freed: --resume goes on (epoch 3 was backed up, so one more epoch).
    monkeypatch.setattr(keras.Model, "save", real_save)
    assert main(_train_argv(run, 4, "--resume")) == 0
    assert open(last, "rb").read() != before["last"]
    assert keras.saving.load_model(last, compile=False) is not None


class _LogWriteFails(keras.callbacks.Callback):
    """A log written in place (not atomically) hits a full disk at the end of epoch 1."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        raise OSError(errno.ENOSPC, "No space left on device", self.path)


def test_a_full_disk_in_a_log_written_in_place_is_the_same_kind_of_sentence(tmp_path):
    run = str(tmp_path / "run")
    history = os.path.join(run, "logs", "history.csv")
    with pytest.raises(DiskFullError) as caught:
        train(tiny_run_config(**{"train.epochs": 1}), run, evaluate_after=False,
              extra_callbacks=[_LogWriteFails(history)])
    assert re.fullmatch(
        rf"Writing {re.escape(history)} failed because the disk is full \(.+ free\); the "
        r"backups and checkpoints, replaced only whole, are intact; free some space, then "
        rf"continue with `vidgen train --run-dir {re.escape(run)} --resume`\.",
        str(caught.value)), str(caught.value)
