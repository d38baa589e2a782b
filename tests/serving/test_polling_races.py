"""The version and config pollers under filesystem races and shutdown: never a traceback.

Each test forces one interleaving with hooks and events (a scan that removes the
base path, a load whose folder vanishes, a stop while a scan is held) and then
counts completed scans (`Polls`), so nothing depends on the machine's speed. A
poller must neither die (`threading.excepthook`) nor log a traceback (a record
with `exc_info`): a filesystem problem is one warning line and polling goes on.
"""

import logging
import os
import shutil
import threading

import pytest

from serving import manager as manager_module
from serving import model_config
from serving.core import Limits
from serving.model_registry import ModelRegistry
from tests.serving.conftest import MODEL, copy_version, wait_for


class Polls:
    """Counts the finished scans of `manager` (its thread calls `manager.poll_once`).

    Args:
        monkeypatch: the test's monkeypatch.
        manager: a `serving.manager.ModelManager`, not yet started.
    """

    def __init__(self, monkeypatch, manager):
        self.count = 0
        real = manager.poll_once

        def poll_once():
            try:
                real()
            finally:
                self.count += 1

        monkeypatch.setattr(manager, "poll_once", poll_once)

    def wait(self, n: int) -> bool:
        """Waits until `n` more scans finished."""
        end = self.count + n
        return wait_for(lambda: self.count >= end, 60)


@pytest.fixture
def escapes(monkeypatch):
    """Exceptions that ended a thread during the test (what Python prints as a traceback)."""
    caught = []
    monkeypatch.setattr(threading, "excepthook", caught.append)
    return caught


def tracebacks(caplog):
    return [r.getMessage() for r in caplog.records if r.exc_info]


@pytest.fixture
def polled(base, monkeypatch):
    """A started manager of `base` (version 1 serving) and its `Polls`; stopped at the end."""
    m = manager_module.ModelManager(MODEL, base, Limits(), poll_interval=0.05)
    polls = Polls(monkeypatch, m)
    m.start()
    assert m.loaded.wait(60) and m.available_versions == [1]
    yield m, polls
    m.stop(unload=True)


def hook_snapshot(monkeypatch, path, action):
    """Runs `action()` once, inside the first scan of the version folder `path`."""
    real, done = manager_module.snapshot, threading.Event()

    def snapshot(p):
        if p == path and not done.is_set():
            done.set()
            action()
        return real(p)

    monkeypatch.setattr(manager_module, "snapshot", snapshot)
    return done


def test_base_path_removed_mid_scan_keeps_the_loaded_version_serving(
        exported, base, polled, monkeypatch, caplog, escapes):
    manager, polls = polled
    # The base path goes while a scan is inside it (say a test's tmp_path removed
    # before its server stopped): TF Serving keeps serving what it loaded.
    with caplog.at_level(logging.INFO, logger="vidgen.serving"):
        removed = hook_snapshot(monkeypatch, os.path.join(base, "1"),
                                lambda: shutil.rmtree(base))
        assert wait_for(removed.is_set, 60) and polls.wait(4)
        assert manager.available_versions == [1] and manager.handle().version == 1
        # It comes back with another version: polling went on.
        os.makedirs(base)
        copy_version(exported, base, 2)
        assert wait_for(lambda: manager.available_versions == [2], 60)
    assert escapes == [] and tracebacks(caplog) == []
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and base in r.getMessage()]
    assert len(warnings) == 1 and "Still serving versions [1]" in warnings[0], warnings


def test_version_folder_removed_between_listing_and_loading(
        exported, base, polled, monkeypatch, caplog, escapes):
    manager, polls = polled
    real, gone = manager_module.Servable, threading.Event()

    def servable(name, version, path, limits):
        if version == 2 and not gone.is_set():
            shutil.rmtree(path)   # listed and stable, then removed before it is read
            gone.set()
        return real(name, version, path, limits)

    monkeypatch.setattr(manager_module, "Servable", servable)
    with caplog.at_level(logging.INFO, logger="vidgen.serving"):
        copy_version(exported, base, 2)
        assert wait_for(gone.is_set, 60) and polls.wait(2)
        assert manager.available_versions == [1]
        assert manager.version_state(2).state == "END" and manager.version_state(2).error
        copy_version(exported, base, 2)   # the same version again: tried again
        assert wait_for(lambda: manager.available_versions == [2], 60)
    assert escapes == [] and tracebacks(caplog) == []
    assert [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING][0].startswith("Version 2 of vidgen did not load")


def test_an_unreadable_base_path_is_one_warning_line(base, polled, monkeypatch, caplog,
                                                      escapes):
    manager, polls = polled
    real = os.listdir

    def listdir(path):
        if path == base:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    with caplog.at_level(logging.INFO, logger="vidgen.serving"):
        monkeypatch.setattr(manager_module.os, "listdir", listdir)
        assert polls.wait(3)
        monkeypatch.setattr(manager_module.os, "listdir", real)
        assert polls.wait(1)
    assert escapes == [] and tracebacks(caplog) == []
    assert manager.available_versions == [1]
    warnings = [r.getMessage() for r in caplog.records if base in r.getMessage()]
    assert len(warnings) == 1 and "Permission denied" in warnings[0], warnings


def test_stop_while_a_scan_is_held_ends_the_poller_cleanly(base, monkeypatch, caplog, escapes):
    manager = manager_module.ModelManager(MODEL, base, Limits(), poll_interval=0.05)
    entered, resume = threading.Event(), threading.Event()
    hook_snapshot(monkeypatch, os.path.join(base, "1"),
                  lambda: (entered.set(), resume.wait(60)))
    with caplog.at_level(logging.INFO, logger="vidgen.serving"):
        manager.start()
        assert entered.wait(60)
        stopper = threading.Thread(target=manager.stop, kwargs={"unload": True})
        stopper.start()
        assert wait_for(manager._stop.is_set, 60)   # asked to stop while mid-scan
        shutil.rmtree(base)                         # and the files go too
        resume.set()
        stopper.join(60)
    assert not stopper.is_alive() and not manager._thread.is_alive()
    assert escapes == [] and tracebacks(caplog) == []
    assert manager.available_versions == []


def test_a_reload_after_stop_starts_no_poller(base):
    registry = ModelRegistry(model_config.single_model_config(MODEL, base), Limits(),
                             poll_interval=0.05)
    registry.start()
    try:
        assert registry.wait_until_available(60)
    finally:
        registry.stop()
    # A ReloadConfig RPC that outlived the drain: its new model must not poll forever.
    config = model_config.single_model_config(MODEL, base)
    other = config.model_config_list.config.add()
    other.CopyFrom(config.model_config_list.config[0])
    other.name = "other"
    registry.reload(config, wait=False)
    added = registry.manager("other")
    try:
        assert added._thread is None, "a model added after stop() is being polled"
    finally:
        added.stop()


def test_config_file_removed_is_one_error_line_and_re_reads_go_on(base, tmp_path, caplog,
                                                                  escapes):
    path = tmp_path / "m.config"
    text = str(model_config.single_model_config(MODEL, base))
    path.write_text(text)
    registry = ModelRegistry(model_config.read_model_config(str(path)), Limits(),
                             poll_interval=0.05)
    registry.start()
    registry.watch(str(path), 0.05)
    try:
        with caplog.at_level(logging.INFO, logger="vidgen.serving"):
            reads = registry.config_reads
            path.unlink()
            assert wait_for(lambda: registry.config_reads >= reads + 3, 60)
            (tmp_path / "m.tmp").write_text(text)
            os.replace(tmp_path / "m.tmp", path)   # a re-read never sees half a file
            reads = registry.config_reads
            assert wait_for(lambda: registry.config_reads >= reads + 1, 60)
        assert registry._watcher.is_alive()
    finally:
        registry.stop()
    assert escapes == [] and tracebacks(caplog) == []
    refusals = [r.getMessage() for r in caplog.records if "was not applied" in r.getMessage()]
    assert len(refusals) == 1 and "No such file" in refusals[0], refusals
