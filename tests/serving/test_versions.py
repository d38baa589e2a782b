"""Version directories: rollover and removal under load, broken versions, in-flight requests.

Nothing here depends on the machine's speed: scans are counted (`Listings`) instead of
waited for, a copy still writing changes a file before every scan instead of racing the
poller, a request in flight is held on an event (`Held`), and every wait polls with a
deadline.
"""

import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export import contract as C
from serving import manager as manager_module
from serving import tensors
from serving.client import PredictionClient
from tests.serving.conftest import MODEL, Held, clip, copy_version, start_server, wait_for


def served_version(server):
    return server.core.models.manager(MODEL).served_version


def states(server):
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=10) as c:
        return {s["version"]: s for s in c.status()}


@pytest.fixture
def fresh_server(base):
    server = start_server(base)
    assert server.wait_for_model(60)
    yield server
    server.stop(grace=5)


class Listings:
    """Counts the scans of one version directory (`manager.snapshot` calls on it).

    Args:
        monkeypatch: the test's monkeypatch; `undo()` ends the counting.
        path: the version directory.
        before: called before each listing of `path` (e.g. a copy still writing).
    """

    def __init__(self, monkeypatch, path: str, before=None):
        self.path, self.before, self.count = path, before, 0
        self._real = manager_module.snapshot
        monkeypatch.setattr(manager_module, "snapshot", self._snapshot)

    def _snapshot(self, path):
        if path == self.path:
            if self.before is not None:
                self.before()
            self.count += 1
        return self._real(path)

    def wait(self, n: int) -> bool:
        """Waits until `n` more scans finished (the one after them has begun)."""
        end = self.count + n + 1
        return wait_for(lambda: self.count >= end, 60)


def predict_request(context, horizon):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[C.CONTEXT].CopyFrom(tensors.to_proto(context))
    request.inputs[C.HORIZON].CopyFrom(tensors.to_proto(C.horizon_input(horizon, len(context))))
    return request


def test_rollover_under_16_concurrent_clients(exported, keras_models, base, fresh_server):
    server = fresh_server
    context = clip(1, 3, seed=3)
    request = predict_request(context, 2)
    want = {v: np.asarray(m.rollout(context, 2)) for v, m in keras_models.items()}
    stop = threading.Event()
    results, failures = [[] for _ in range(16)], []

    def worker(i):
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    response = stub.Predict(request, timeout=30)
                except grpc.RpcError as e:
                    failures.append((e.code(), e.details()))
                    continue
                version = response.model_spec.version.value
                frames = tensors.from_proto(response.outputs[C.FRAMES])
                results[i].append((version, float(np.max(np.abs(frames - want[version])))))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: all(results), 60)
        # A plain, non-atomic copy: the server must wait until the files stop changing.
        copy_version(exported, base, 2)
        assert wait_for(lambda: all(r and r[-1][0] == 2 for r in results), 60)
        # Keep going after the rollover: every client answers twice more.
        counts = [len(r) for r in results]
        assert wait_for(lambda: all(len(r) >= n + 2 for r, n in zip(results, counts)), 60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    for r in results:
        versions = [v for v, _ in r]
        assert versions == sorted(versions), "a client went back to version 1"
        assert versions[0] == 1 and versions[-1] == 2
        assert max(diff for _, diff in r) <= 1e-5
    assert states(server)[1]["state"] == "END" and states(server)[2]["state"] == "AVAILABLE"


def test_half_copied_version_is_never_served(exported, base, fresh_server, monkeypatch):
    server = fresh_server
    manager = server.core.models.manager(MODEL)
    src, dst = os.path.join(exported["store"], "2"), os.path.join(base, "2")
    listings = Listings(monkeypatch, dst)
    os.makedirs(dst)
    # Only the graph so far: stable across polls, but its variables are missing.
    shutil.copy(os.path.join(src, "saved_model.pb"), dst)
    assert wait_for(lambda: 2 in states(server) and states(server)[2]["state"] == "END", 30)
    failed = states(server)[2]
    assert failed["error_code"] != "OK" and "version 2" in failed["error_message"]
    assert served_version(server) == 1
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL) as c:
        assert c.predict(clip(1, 2), 1).shape == (1, 1, 16, 16, 1)
    # It is not retried while its files stay the same (three more scans) ...
    failed_since = manager.version_state(2).since
    assert listings.wait(3)
    assert states(server)[2]["state"] == "END" and served_version(server) == 1
    assert manager.version_state(2).since == failed_since   # no new load attempt
    # ... and is loaded once the copy completes.
    shutil.copytree(src, dst, dirs_exist_ok=True)
    assert wait_for(lambda: served_version(server) == 2, 60)
    assert states(server)[2]["state"] == "AVAILABLE"


def test_files_still_changing_are_not_loaded(exported, base, fresh_server, monkeypatch):
    server = fresh_server
    dst = os.path.join(base, "3")
    shutil.copytree(os.path.join(exported["store"], "2"), dst)
    # A copy still writing: a file changes before every scan, so no two listings are equal
    # however the scans and this test are scheduled.
    marker = os.path.join(dst, "assets.extra", "copying")
    written = []

    def write():
        with open(marker, "w") as f:
            f.write("x" * len(written))   # a new size: a new listing at any mtime resolution
        written.append(marker)

    def five_scans_and_never_loaded():
        assert 3 not in states(server), "a directory still being written was loaded"
        return len(written) >= 5

    Listings(monkeypatch, dst, before=write)
    assert wait_for(five_scans_and_never_loaded, 60)
    assert 3 not in states(server), "a directory still being written was loaded"
    assert served_version(server) == 1
    monkeypatch.undo()   # the copy is done
    assert wait_for(lambda: served_version(server) == 3, 60)


def test_corrupt_version_keeps_the_old_one_serving(exported, base, fresh_server):
    server = fresh_server
    dst = os.path.join(base, "2")
    shutil.copytree(os.path.join(exported["store"], "2"), dst)
    data = [os.path.join(dst, "variables", f) for f in os.listdir(os.path.join(dst, "variables"))
            if f.startswith("variables.data")][0]
    with open(data, "r+b") as f:
        f.truncate(16)
    assert wait_for(lambda: 2 in states(server) and states(server)[2]["state"] == "END", 30)
    assert served_version(server) == 1
    assert states(server)[1]["state"] == "AVAILABLE"


def test_in_flight_request_finishes_on_its_version(exported, keras_models, base, fresh_server,
                                                    monkeypatch):
    server = fresh_server
    manager = server.core.models.manager(MODEL)
    # Hold version 1's model call until version 2 serves, so the swap happens while the
    # request is in flight whatever the machine's speed.
    v1 = manager.handle(1)
    held = Held(v1)
    monkeypatch.setattr(v1, "run", held)
    context, result = clip(2, 3, seed=6), {}

    def request():
        with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=90) as c:
            result["response"] = c._call(c._predict.Predict, predict_request(context, 5), 90)

    thread = threading.Thread(target=request)
    thread.start()
    try:
        assert held.entered.wait(30)
        started = time.monotonic()
        copy_version(exported, base, 2)
        assert wait_for(lambda: served_version(server) == 2, 60)
        assert manager.version_state(1).state == "END"   # unloaded, yet still answering
    finally:
        held.release.set()
        thread.join(90)
    swapped = manager.version_state(2).since
    assert started < swapped
    response = result["response"]
    assert response.model_spec.version.value == 1
    frames = tensors.from_proto(response.outputs[C.FRAMES])
    assert frames.shape == (2, 5, 16, 16, 1)
    assert np.max(np.abs(frames - np.asarray(keras_models[1].rollout(context, 5)))) <= 1e-5


class Clients:
    """`n` threads sending `request` over gRPC without pause until the block ends.

    `results[i]` lists (version, frames) of client i's answers; `failures` every error.
    """

    def __init__(self, server, request, n: int):
        self.port, self.request = server.port, request
        self.results = [[] for _ in range(n)]
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self, i: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self._stop.is_set():
                try:
                    response = stub.Predict(self.request, timeout=30)
                except grpc.RpcError as e:
                    self.failures.append((e.code(), e.details()))
                    continue
                self.results[i].append((response.model_spec.version.value,
                                        tensors.from_proto(response.outputs[C.FRAMES])))

    def all_answered_by(self, version: int) -> bool:
        return all(r and r[-1][0] == version for r in self.results)


def test_removed_version_hands_over_to_the_next_without_a_failed_request(
        exported, keras_models, base, fresh_server):
    server = fresh_server
    manager = server.core.models.manager(MODEL)
    copy_version(exported, base, 2)
    assert wait_for(lambda: served_version(server) == 2, 60)
    context = clip(1, 3, seed=5)
    want = {v: np.asarray(m.rollout(context, 2)) for v, m in keras_models.items()}
    with Clients(server, predict_request(context, 2), 8) as clients:
        assert wait_for(lambda: clients.all_answered_by(2), 60)
        removed = time.monotonic()
        shutil.rmtree(os.path.join(base, "2"))
        assert wait_for(lambda: clients.all_answered_by(1), 60)
    assert clients.failures == []
    for r in clients.results:
        versions = [v for v, _ in r]
        assert versions[0] == 2 and versions[-1] == 1
        assert versions == sorted(versions, reverse=True), "a client went back to version 2"
        assert max(float(np.max(np.abs(f - want[v]))) for v, f in r) <= 1e-5
    # Version 1 was loaded and warmed before version 2 stopped serving.
    available, ended = manager.version_state(1), manager.version_state(2)
    assert (available.state, ended.state) == ("AVAILABLE", "END")
    assert removed < available.since <= ended.since
    warmups = {s.labels["model_path"]: s.value
               for f in text_string_to_metric_families(server.metrics.exposition().decode())
               for s in f.samples if s.name == ":tensorflow:serving:model_warmup_latency_count"}
    assert warmups[os.path.join(base, "1")] == 2   # at start-up, and again on the removal


# ---- version folder names -------------------------------------------------------------

def test_only_canonical_version_names_serve(exported, tmp_path, caplog):
    from serving.core import Limits
    from serving.manager import ModelManager

    base = tmp_path / MODEL
    os.makedirs(base)
    # A leading zero, Arabic-Indic one, 255 digits (the longest file name), above int64.
    odd = ["01", "\u0661", "9" * 255, "99999999999999999999", "-1", "v3"]
    for name in odd:
        shutil.copytree(os.path.join(exported["store"], "1"), base / name)
    copy_version(exported, str(base), 2)
    os.makedirs(base / ".tmp-4-abc")   # the exporter's temporary folder: silent
    manager = ModelManager(MODEL, str(base), Limits(), poll_interval=0.05)
    with caplog.at_level("WARNING", logger="vidgen.serving"):
        manager.start()
        try:
            assert manager.loaded.wait(60) and manager.available_versions == [2]
            # Later polls do not repeat the warnings, and polling goes on: a new version.
            shutil.copytree(os.path.join(exported["store"], "1"), base / "3")
            assert wait_for(lambda: manager.available_versions == [3], 60)
        finally:
            manager.stop(unload=True)
    assert manager.available_versions == []
    warnings = [r.getMessage() for r in caplog.records if "Ignoring the folder" in r.getMessage()]
    assert len(warnings) == len(odd), warnings
    assert any("'\\u0661'" in w for w in warnings) and any("(255 characters)" in w
                                                            for w in warnings)
    assert not any(".tmp" in w for w in warnings)


def test_a_failing_poll_is_logged_and_polling_goes_on(exported, base, monkeypatch, caplog):
    from serving.core import Limits

    calls = []
    real = manager_module.snapshot

    def flaky(path):
        if not path.startswith(base):   # another test's server polls too
            return real(path)
        calls.append(path)
        if len(calls) <= 3:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(manager_module, "snapshot", flaky)
    manager = manager_module.ModelManager(MODEL, base, Limits(), poll_interval=0.05)
    with caplog.at_level("WARNING", logger="vidgen.serving"):
        manager.start()
        try:
            assert manager.loaded.wait(60) and manager.available_versions == [1]
        finally:
            manager.stop(unload=True)
    failures = [r for r in caplog.records if "polling goes on" in r.getMessage()
                and base in r.getMessage()]
    assert len(failures) == 1   # the same error three times: logged once
    assert failures[0].levelname == "WARNING" and not failures[0].exc_info   # no traceback
