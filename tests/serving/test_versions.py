"""Version directories: rollover under load, half-copied and broken versions, in-flight requests."""

import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export import contract as C
from serving import tensors
from serving.client import PredictionClient
from tests.serving.conftest import MODEL, clip, copy_version, start_server


def wait_for(condition, timeout=60.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return False


def served_version(server):
    return server.core.manager.served_version


def states(server):
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=10) as c:
        return {s["version"]: s for s in c.status()}


@pytest.fixture
def base(exported, tmp_path):
    path = tmp_path / MODEL
    os.makedirs(path)
    copy_version(exported, path, 1)
    return str(path)


@pytest.fixture
def fresh_server(base):
    server = start_server(base)
    assert server.wait_for_model(60)
    yield server
    server.stop(grace=5)


def predict_request(context, horizon):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[C.CONTEXT].CopyFrom(tensors.to_proto(context))
    request.inputs[C.HORIZON].CopyFrom(tensors.to_proto(np.int32(horizon)))
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
        time.sleep(0.2)
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


def test_half_copied_version_is_never_served(exported, base, fresh_server):
    server = fresh_server
    src, dst = os.path.join(exported["store"], "2"), os.path.join(base, "2")
    os.makedirs(dst)
    # Only the graph so far: stable across polls, but its variables are missing.
    shutil.copy(os.path.join(src, "saved_model.pb"), dst)
    assert wait_for(lambda: 2 in states(server) and states(server)[2]["state"] == "END", 30)
    failed = states(server)[2]
    assert failed["error_code"] != "OK" and "version 2" in failed["error_message"]
    assert served_version(server) == 1
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL) as c:
        assert c.predict(clip(1, 2), 1).shape == (1, 1, 16, 16, 1)
    # It is not retried while its files stay the same ...
    time.sleep(0.5)
    assert states(server)[2]["state"] == "END" and served_version(server) == 1
    # ... and is loaded once the copy completes.
    shutil.copytree(src, dst, dirs_exist_ok=True)
    assert wait_for(lambda: served_version(server) == 2, 60)
    assert states(server)[2]["state"] == "AVAILABLE"


def test_files_still_changing_are_not_loaded(exported, base, fresh_server):
    server = fresh_server
    dst = os.path.join(base, "3")
    shutil.copytree(os.path.join(exported["store"], "2"), dst)
    # Keep touching a file faster than the poll interval: never two equal listings.
    end = time.monotonic() + 1.0
    marker = os.path.join(dst, "assets.extra", "copying")
    n = 0
    while time.monotonic() < end:
        with open(marker, "w") as f:
            f.write("x" * n)
        n += 1
        time.sleep(0.03)
        assert 3 not in states(server), "a directory still being written was loaded"
    assert served_version(server) == 1
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


def test_in_flight_request_finishes_on_its_version(exported, base, fresh_server):
    server = fresh_server
    copy_version(exported, base, 2)
    # Start a long request while version 2 is loading: it resolves to version 1.
    assert wait_for(lambda: server.core.manager.version_state(2) is not None, 30, step=0.002)
    started = time.monotonic()
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=60) as c:
        response = c._call(c._predict.Predict, predict_request(clip(32, 3), 1000), 60)
    finished = time.monotonic()
    swapped = server.core.manager.version_state(2).since
    assert served_version(server) == 2
    assert started < swapped < finished, "the swap did not happen while the request ran"
    assert response.model_spec.version.value == 1
    assert tensors.from_proto(response.outputs[C.FRAMES]).shape == (32, 1000, 16, 16, 1)
