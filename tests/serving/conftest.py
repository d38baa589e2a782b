"""Exported tiny models, running servers on free 127.0.0.1 ports, and waits without guesses.

A test that needs a request in flight holds its model call (`Held`) instead of
sending one it hopes is slow; a test that waits for the server polls with a
deadline (`wait_for`). Neither depends on how fast the machine is.
"""

import os
import shutil
import threading
import time

import numpy as np
import pytest

from tests.tiny import tiny_run_config

MODEL = "vidgen"
POLL = 0.1


def wait_for(condition, timeout=60.0, step=0.02) -> bool:
    """Polls `condition()` until it is true (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


class Held:
    """A servable's `run` whose calls wait for `release`: requests stay in flight on demand.

    Install it with `monkeypatch.setattr(servable, "run", Held(servable))`. `entered` is
    set when a model call starts; `calls` counts them.

    Args:
        servable: the `serving.servable.Servable` whose calls are held.
        timeout: seconds a call waits for `release` before failing the test.
    """

    def __init__(self, servable, timeout: float = 60.0):
        self.run = servable.run
        self.timeout = timeout
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
        self.entered.set()
        assert self.release.wait(self.timeout), "a held model call was never released"
        return self.run(*args, **kwargs)


def make_run(path, seed: int) -> str:
    """A run directory like tests/export's `tiny_run`: a 16x16 model, weights perturbed."""
    from vidgen.training.build import build_model

    cfg = tiny_run_config()
    model = build_model(cfg)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(np.asarray(w) + rng.normal(0, 0.05, w.shape).astype("float32"))
    os.makedirs(path, exist_ok=True)
    cfg.to_json(os.path.join(path, "config.json"))
    model.save(os.path.join(path, "model.keras"))
    return str(path)


@pytest.fixture(scope="package")
def exported(tmp_path_factory):
    """{"store": BASE with versions 1 and 2 (different weights), "runs": {1: run, 2: run}}."""
    from export.savedmodel import export_savedmodel

    root = tmp_path_factory.mktemp("serving")
    store = root / "store"
    runs = {}
    for version, seed in ((1, 0), (2, 1)):
        runs[version] = make_run(root / f"run{version}", seed)
        export_savedmodel(runs[version], str(store), MODEL, version)
    return {"store": str(store / MODEL), "runs": runs}


@pytest.fixture(scope="package")
def keras_models(exported):
    from vidgen.run_dir import load_run

    return {v: load_run(run)[1] for v, run in exported["runs"].items()}


def copy_version(exported, base, version: int) -> str:
    dst = os.path.join(base, str(version))
    shutil.copytree(os.path.join(exported["store"], str(version)), dst)
    return dst


def model_base(exported, root, versions=(1,)) -> str:
    """`root/MODEL` holding copies of the exported `versions`: a model base path."""
    path = os.path.join(root, MODEL)
    os.makedirs(path)
    for version in versions:
        copy_version(exported, path, version)
    return path


@pytest.fixture
def base(exported, tmp_path):
    """A model base path serving version 1."""
    return model_base(exported, tmp_path)


def start_server(base, **kwargs):
    from serving.server import Server

    kwargs.setdefault("poll_interval", POLL)
    server = Server(str(base), MODEL, port=0, rest_api_port=0, **kwargs)
    server.start()
    return server


def make_server(exported, root, **kwargs):
    """A started server of version 1 under `root`/MODEL, its model loaded; `kwargs` to Server."""
    base = root / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    server = start_server(base, **kwargs)
    assert server.wait_for_model(60)
    return server


@pytest.fixture(scope="package")
def server(exported, tmp_path_factory):
    """A server of version 1, shared by the tests that do not change its versions."""
    base = tmp_path_factory.mktemp("base") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    srv = start_server(base)
    assert srv.wait_for_model(60)
    yield srv
    srv.stop(grace=5)


@pytest.fixture
def client(server):
    from serving.client import PredictionClient

    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=30) as c:
        yield c


@pytest.fixture
def rest_client(server):
    from serving.client import RestPredictionClient

    return RestPredictionClient(f"http://127.0.0.1:{server.rest_api_port}", MODEL, timeout=30)


@pytest.fixture
def stub(server):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}",
                                    [("grpc.max_receive_message_length", 1 << 30),
                                     ("grpc.max_send_message_length", 1 << 30)])
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def clip(batch=2, time=3, seed=0, size=16, channels=1) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, time, size, size, channels),
                                              dtype=np.float32)
