"""Durable atomic writes (fsync, ENOSPC leaves the old file) and one writer per folder."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import tiny_config
from tests.tiny import tiny_run_config
from vidgen import fileio
from vidgen.data import prepared
from vidgen.errors import VidgenError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _DiskFullAfter:
    """A file object that writes `budget` bytes, then fails as a full disk does."""

    def __init__(self, f, budget: int):
        self.f, self.budget = f, budget

    def write(self, data):
        if len(data) > self.budget:
            self.f.write(data[:self.budget])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_disk_full_half_way_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    fileio.write_json_atomic(path, {"mse": 1.0})
    before = path.read_bytes()
    real_open = open
    monkeypatch.setattr(fileio, "open", lambda *a, **k: _DiskFullAfter(real_open(*a, **k), 10),
                        raising=False)
    with pytest.raises(OSError) as caught:
        fileio.write_json_atomic(path, {"mse": 2.0, "values": list(range(100))})
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_model_save_that_fails_keeps_the_old_model(tmp_path, monkeypatch):
    import keras

    from vidgen.run_dir import save_model
    from vidgen.training.build import build_model

    model = build_model(tiny_run_config())
    path = str(tmp_path / "model.keras")
    save_model(model, path)
    before = open(path, "rb").read()

    def full_disk_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk_save)
    with pytest.raises(fileio.DiskFullError, match=r"Writing .*model.keras failed because the "
                       r"disk is full \(.* free\); the previous model.keras is intact\.$"
                       ) as caught:
        save_model(model, path)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert "No space left" in str(caught.value.os_error)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.keras"]


def test_commit_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fileio.write_bytes_atomic(tmp_path / "out" / "a.bin", b"data")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1].startswith("a.tmp-") and events[2][1] == "out"
    # A folder (a SavedModel export) is synced file by file.
    tree = tmp_path / "tree.tmp"
    (tree / "variables").mkdir(parents=True)
    (tree / "saved_model.pb").write_bytes(b"pb")
    (tree / "variables" / "v.index").write_bytes(b"ix")
    events.clear()
    fileio.commit(str(tree), str(tmp_path / "tree"))
    synced = [name for kind, name in events if kind == "fsync"]
    assert {"saved_model.pb", "v.index", "variables"} <= set(synced)
    assert events.index(("replace", "tree")) > max(
        i for i, e in enumerate(events) if e[1] == "saved_model.pb")


_HOLD = textwrap.dedent("""
    import sys
    from vidgen import fileio
    with fileio.exclusive_lock(sys.argv[1], flag="--out"):
        print("locked", flush=True)
        sys.stdin.read()
""")


@pytest.fixture
def held_lock():
    """Holds a folder's lock in another process until the test ends."""
    processes = []

    def hold(folder):
        p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        processes.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield hold
    for p in processes:
        p.stdin.close()
        p.wait(timeout=60)


def test_a_second_writer_of_a_folder_fails_with_one_sentence(tmp_path, held_lock):
    folder = tmp_path / "data"
    holder = held_lock(folder)
    with pytest.raises(VidgenError, match=rf"being written by another vidgen process \(pid "
                                          rf"{holder.pid}\).*choose another --out"):
        with fileio.exclusive_lock(folder, flag="--out"):
            pass
    with pytest.raises(VidgenError, match="choose another --out"):
        prepared.prepare(tiny_config().data, str(folder), progress=False)
    assert os.listdir(folder) == [fileio.LOCK_NAME], "nothing was written"
    holder.stdin.close()
    holder.wait(timeout=60)
    # Released when the holder exits: the folder can be written now.
    manifest = prepared.prepare(tiny_config().data, str(folder), progress=False)
    assert manifest["splits"]["train"]["clips"] > 0
    assert fileio.LOCK_NAME not in os.listdir(folder)


def test_a_second_training_in_one_run_folder_fails_before_writing(tmp_path, held_lock):
    from vidgen.training.train import train

    run = tmp_path / "run"
    holder = held_lock(run)
    with pytest.raises(VidgenError, match=rf"pid {holder.pid}\).*choose another --run-dir"):
        train(tiny_run_config(), str(run), evaluate_after=False)
    assert os.listdir(run) == [fileio.LOCK_NAME]


def test_temporary_names_are_unique_and_keep_the_ending():
    a = fileio.temporary_name("d/train-00000.tfrecord.gz", suffix=".tfrecord.gz")
    b = fileio.temporary_name("d/train-00000.tfrecord.gz", suffix=".tfrecord.gz")
    assert a != b and a.endswith(".tfrecord.gz") and f".tmp-{os.getpid()}-" in a
    assert fileio.temporary_name("m.keras").endswith(".keras")
    assert fileio.temporary_name("x").startswith("x.tmp-")


def _files(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def test_evaluate_into_a_locked_run_fails_with_one_sentence_and_writes_nothing(
        tiny_run, tmp_path, held_lock, capsys):
    from vidgen.cli import main

    holder = held_lock(tiny_run)
    before = _files(tiny_run)
    assert main(["evaluate", tiny_run, "--max-clips", "2"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"vidgen: error: {tiny_run!r} is being written by another vidgen process (pid "
        f"{holder.pid}); wait for it to finish or pass --out DIR to write the evaluation "
        "elsewhere.")
    assert "Traceback" not in err
    assert _files(tiny_run) == before, "nothing was written into the run"
    # Elsewhere (--out) the run is only read: no lock needed.
    out = tmp_path / "eval"
    assert main(["evaluate", tiny_run, "--max-clips", "2", "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file() and _files(tiny_run) == before


def test_denoiser_and_floor_calibration_take_the_run_lock(tiny_run, tmp_path, held_lock,
                                                          capsys):
    from vidgen.cli import main
    from vidgen.run_dir import load_config
    from vidgen.training.train import calibrate_floor

    holder = held_lock(tiny_run)
    before = _files(tiny_run)
    assert main(["postprocess", "train-denoiser", tiny_run, "--quiet", "--steps", "1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"vidgen: error: {tiny_run!r} is being written by another vidgen process (pid "
        f"{holder.pid}); wait for it to finish or pass --out FILE.keras to write the denoiser "
        "elsewhere.")
    with pytest.raises(VidgenError, match=rf"pid {holder.pid}\); wait for it to finish or "
                                          r"choose another --run-dir\.$"):
        calibrate_floor(tiny_run, load_config(tiny_run), progress=False)
    assert _files(tiny_run) == before


def test_a_thread_may_take_its_own_lock_again_but_another_thread_may_not(tmp_path):
    import threading

    folder = tmp_path / "run"
    errors = []

    def other():
        try:
            with fileio.exclusive_lock(folder, flag="--run-dir"):
                pass
        except VidgenError as e:
            errors.append(str(e))

    with fileio.exclusive_lock(folder, flag="--run-dir"):
        with fileio.exclusive_lock(folder, flag="--run-dir"):   # train -> evaluate
            assert os.listdir(folder) == [fileio.LOCK_NAME]
        assert os.listdir(folder) == [fileio.LOCK_NAME], "the inner exit kept the lock"
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0]
    assert os.listdir(folder) == []
