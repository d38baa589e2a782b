"""Server-side batching: merged calls give every request its own, correct frames."""

import os
import threading

import grpc
import numpy as np
import pytest

from export import contract as C
from serving.batching import Batcher
from serving.client import PredictionClient
from serving.core import BatchingOptions
from serving.errors import ServingError
from tests.serving.conftest import MODEL, clip, copy_version, start_server


@pytest.fixture(scope="module")
def batching_server(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("batching") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    server = start_server(base, batching=BatchingOptions(max_batch_size=8, timeout=0.05))
    assert server.wait_for_model(60)
    yield server
    server.stop(grace=5)


def run_concurrently(fn, n):
    results, errors = [None] * n, []

    def call(i):
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_batched_requests_equal_keras(batching_server, keras_models):
    batcher = batching_server.core.batcher
    calls, examples = batcher.calls, batcher.examples
    contexts = [clip(1 + i % 2, 3, seed=i) for i in range(8)]
    horizons = [2, 2, 2, 2, 3, 3, 3, 3]   # two groups that cannot share a call

    def predict(i):
        with PredictionClient(f"127.0.0.1:{batching_server.port}", MODEL) as c:
            return c.predict(contexts[i], horizons[i])

    results = run_concurrently(predict, 8)
    for context, horizon, got in zip(contexts, horizons, results):
        want = np.asarray(keras_models[1].rollout(context, horizon))
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert batcher.examples - examples == sum(len(c) for c in contexts)
    assert batcher.calls - calls < 8, "no two requests shared a model call"


def test_step_signature_is_batched_too(batching_server, keras_models):
    model = keras_models[1]
    frames = [clip(1, 1, seed=10 + i)[:, 0] for i in range(4)]

    def step(i):
        states = [np.asarray(s) for s in model.initial_states(1)]
        with PredictionClient(f"127.0.0.1:{batching_server.port}", MODEL) as c:
            return c.predict_tensors({C.FRAME: frames[i], **{C.state_name(j): s for j, s in
                                                             enumerate(states)}}, C.STEP)

    for frame, out in zip(frames, run_concurrently(step, 4)):
        want, _ = model.step(frame, model.initial_states(1))
        np.testing.assert_allclose(out[C.NEXT_FRAME], np.asarray(want), atol=1e-5)


def test_request_larger_than_max_batch_size(batching_server):
    with PredictionClient(f"127.0.0.1:{batching_server.port}", MODEL) as c:
        with pytest.raises(ServingError) as e:
            c.predict(clip(9, 2), 1)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == "Task size 9 is larger than maximum input batch size 8"


def test_batcher_runs_a_full_batch_without_waiting_for_the_timeout():
    batcher = Batcher(max_batch_size=4, timeout=30.0)
    try:
        run = lambda x: {"y": x["x"] * 2}  # noqa: E731
        futures = [batcher.submit(("k",), run, {"x": np.full((2, 1), i)}, ["x"])
                   for i in range(2)]
        outs = [f.result(timeout=5) for f in futures]
        assert [o["y"].ravel().tolist() for o in outs] == [[0, 0], [2, 2]]
        assert (batcher.calls, batcher.examples) == (1, 4)
    finally:
        batcher.close()


def test_batcher_rejects_bad_options():
    with pytest.raises(ValueError, match="max_batch_size must be positive. Received: 0"):
        Batcher(0, 0.1)
