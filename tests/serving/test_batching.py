"""Server-side batching: TF Serving's parameters file, queues, padding and merged calls.

No test depends on how fast the machine is: merged requests fill their batch exactly
(a batch timeout of an hour would fail the test if they did not), and the queue-full
test holds the only batch thread on an event.
"""

import os
import re
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from google.protobuf import text_format

from export import contract as C
from serving.batching import Batcher
from serving.batching_parameters import BatchingOptions, BatchingParameters
from serving.cli import main
from serving.client import PredictionClient
from serving.errors import ServingError
from tests.serving.conftest import MODEL, clip, copy_version, start_server

HOUR_MICROS = 3600 * 10**6


@pytest.fixture(scope="module")
def batching_server(exported, tmp_path_factory):
    """Batches of exactly 4 examples: a batch runs only when full."""
    base = tmp_path_factory.mktemp("batching") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    options = BatchingOptions.from_text(
        f"max_batch_size {{ value: 4 }} batch_timeout_micros {{ value: {HOUR_MICROS} }}",
        "test", )
    server = start_server(base, batching=options)
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


def test_requests_with_equal_horizons_share_a_call(batching_server, keras_models):
    batcher = batching_server.core.batcher
    calls, sizes = batcher.calls, batcher.batch_sizes.copy()
    contexts = [clip(1, 3, seed=i) for i in range(8)]
    horizons = [2, 3] * 4   # two groups that must not share a call

    def predict(i):
        with PredictionClient(f"127.0.0.1:{batching_server.port}", MODEL, timeout=60) as c:
            return c.predict(contexts[i], horizons[i])

    results = run_concurrently(predict, 8)
    for context, horizon, got in zip(contexts, horizons, results):
        want = np.asarray(keras_models[1].rollout(context, horizon))
        np.testing.assert_allclose(got, want, atol=1e-5)
    # One full batch per horizon; a mixed batch would have failed in the graph.
    assert batcher.calls - calls == 2
    assert batcher.batch_sizes - sizes == {4: 2}


def test_step_signature_is_batched_too(batching_server, keras_models):
    model = keras_models[1]
    frames = [clip(1, 1, seed=10 + i)[:, 0] for i in range(4)]
    calls = batching_server.core.batcher.calls

    def step(i):
        states = [np.asarray(s) for s in model.initial_states(1)]
        with PredictionClient(f"127.0.0.1:{batching_server.port}", MODEL, timeout=60) as c:
            return c.predict_tensors({C.FRAME: frames[i], **{C.state_name(j): s for j, s in
                                                             enumerate(states)}}, C.STEP)

    for frame, out in zip(frames, run_concurrently(step, 4)):
        want, _ = model.step(frame, model.initial_states(1))
        np.testing.assert_allclose(out[C.NEXT_FRAME], np.asarray(want), atol=1e-5)
    assert batching_server.core.batcher.calls - calls == 1


def test_request_larger_than_max_batch_size(batching_server):
    with PredictionClient(f"127.0.0.1:{batching_server.port}", MODEL) as c:
        with pytest.raises(ServingError) as e:
            c.predict(clip(5, 2), 1)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == "Task size 5 is larger than maximum input batch size 4"


def test_per_model_file_pads_to_allowed_batch_sizes(exported, tmp_path, keras_models):
    base = tmp_path / MODEL
    os.makedirs(base)
    version = copy_version(exported, base, 1)
    with open(os.path.join(version, C.BATCHING_PARAMS_FILE), "w") as f:
        f.write("max_batch_size { value: 8 }\nallowed_batch_sizes: [2, 8]\n")
    server = start_server(base, batching=BatchingOptions(per_model=True, num_batch_threads=1))
    try:
        assert server.wait_for_model(60)
        context = clip(3, 3, seed=3)
        with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=60) as c:
            got = c.predict(context, 2)
        np.testing.assert_allclose(got, np.asarray(keras_models[1].rollout(context, 2)),
                                   atol=1e-5)
        batcher = server.core.batcher
        assert (batcher.calls, batcher.examples, batcher.padding) == (1, 3, 5)
        assert batcher.batch_sizes == {8: 1}
    finally:
        server.stop(grace=5)


def test_per_model_file_is_read_from_the_version_directory(exported, tmp_path):
    from serving.core import Limits
    from serving.servable import Servable

    server = BatchingOptions(per_model=True, num_batch_threads=1)
    version = copy_version(exported, tmp_path, 1)
    exported_options = Servable(MODEL, 1, version, Limits()).batching_options(server)
    assert (exported_options.max_batch_size, exported_options.num_batch_threads) == (16, 1)
    os.remove(os.path.join(version, C.BATCHING_PARAMS_FILE))
    assert Servable(MODEL, 1, version, Limits()).batching_options(server) is None
    with open(os.path.join(version, C.BATCHING_PARAMS_FILE), "w") as f:
        f.write("pad_variable_length_inputs: true\n")
    with pytest.raises(ValueError, match="batching_params.pbtxt sets pad_variable_length"):
        Servable(MODEL, 1, version, Limits()).batching_options(server)


@pytest.mark.slow
def test_start_with_a_batching_parameters_file(exported, tmp_path, keras_models):
    """A real `vidgen-serve start` process: two requests return only if they share a call."""
    base = tmp_path / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    params = tmp_path / "batching.txt"
    params.write_text(f"max_batch_size {{ value: 2 }}\n"
                      f"batch_timeout_micros {{ value: {HOUR_MICROS} }}\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "start", "--model_base_path", str(base),
         "--model_name", MODEL, "--port", "0", "--rest_api_port", "0", "--enable_batching",
         "--batching_parameters_file", str(params)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "gRPC on" in line:
                break
        banner = "".join(lines)
        port = int(re.search(r"gRPC on 127\.0\.0\.1:(\d+)", banner).group(1))
        assert f"batching: max_batch_size 2, batch_timeout_micros {HOUR_MICROS}" in banner
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        contexts = [clip(1, 3, seed=20 + i) for i in range(2)]

        def predict(i):
            with PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=60) as c:
                return c.predict(contexts[i], 3)

        for context, got in zip(contexts, run_concurrently(predict, 2)):
            np.testing.assert_allclose(got, np.asarray(keras_models[1].rollout(context, 3)),
                                       atol=1e-5)
    finally:
        proc.terminate()
        proc.wait(60)


# ---- the parameters file -------------------------------------------------------------

def test_defaults_are_tf_servings():
    options = BatchingOptions()
    assert (options.max_batch_size, options.batch_timeout_micros,
            options.max_enqueued_batches, options.allowed_batch_sizes) == (1000, 0, 10, ())
    assert options.num_batch_threads == len(os.sched_getaffinity(0))
    assert options.thread_pool_name == "model_server_batch_threads"


def test_deploy_file_parses_as_batching_parameters():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "serving", "deploy",
                        "batching_parameters.txt")
    options = BatchingOptions.from_file(path)
    assert (options.max_batch_size, options.batch_timeout_micros, options.num_batch_threads,
            options.max_enqueued_batches) == (16, 2000, 2, 64)
    with open(path) as f:
        message = text_format.Parse(f.read(), BatchingParameters())
    assert message.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    assert not message.pad_variable_length_inputs


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 4 } allowed_batch_sizes: [4, 2]",
     "allowed_batch_sizes entries must be monotonically increasing. Received: [4, 2] (f)"),
    ("max_batch_size { value: 4 } allowed_batch_sizes: [1, 2]",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 2; "
     "expected 4 (f)"),
    ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be positive. Received: 0"),
    ("max_batch_size: 4", "f is not a TF Serving BatchingParameters text proto: 1:17"),
    ("batch_size { value: 4 }", 'has no field named "batch_size"'),
    ("pad_variable_length_inputs: true", "f sets pad_variable_length_inputs: true, which this "
                                         "server refuses"),
    ("enable_large_batch_splitting { value: true }", "f sets enable_large_batch_splitting"),
])
def test_bad_parameters_are_refused_in_one_sentence(text, message):
    with pytest.raises(ValueError) as e:
        BatchingOptions.from_text(text, "f")
    assert message in str(e.value)


def test_per_model_file_keeps_the_servers_thread_pool():
    server = BatchingOptions(num_batch_threads=3, thread_pool_name="pool")
    own = BatchingOptions.from_text("num_batch_threads { value: 9 } thread_pool_name "
                                    "{ value: 'x' }", "m", per_model=True, threads=server)
    assert (own.num_batch_threads, own.thread_pool_name, own.max_batch_size) == (3, "pool", 1000)


def test_start_flags(tmp_path, capsys):
    start = ["start", "--model_base_path", str(tmp_path), "--model_name", MODEL]
    assert main(start + ["--batching_parameters_file", "b.txt"]) == 2
    assert "You supplied --batching_parameters_file without --enable_batching" in \
        capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("max_batch_size { value: -1 }")
    assert main(start + ["--enable_batching", "--batching_parameters_file",
                         str(tmp_path / "bad.txt")]) == 2
    assert "--batching_parameters_file: max_batch_size must be positive. Received: -1" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):   # TF Serving has no such flag; the file says it
        main(start + ["--enable_batching", "--max_batch_size", "8"])


# ---- the batcher ---------------------------------------------------------------------

def double(arrays):
    return {"y": arrays["x"] * 2}


def test_full_batch_runs_without_waiting_for_the_timeout():
    batcher = Batcher(1)
    try:
        options = BatchingOptions(max_batch_size=4, batch_timeout_micros=HOUR_MICROS)
        futures = [batcher.submit(("k",), options, double, {"x": np.full((2, 1), i)})
                   for i in range(2)]
        outs = [f.result(timeout=60) for f in futures]
        assert [o["y"].ravel().tolist() for o in outs] == [[0, 0], [2, 2]]
        assert (batcher.calls, batcher.examples) == (1, 4)
    finally:
        batcher.close()


def test_different_keys_never_share_a_batch():
    batcher, seen = Batcher(1), []

    def run(arrays):
        seen.append(arrays["x"].ravel().tolist())
        return double(arrays)

    try:
        options = BatchingOptions(max_batch_size=2, batch_timeout_micros=HOUR_MICROS)
        futures = [batcher.submit(("horizon", h), options, run, {"x": np.full((1, 1), h)})
                   for h in (2, 3, 2, 3)]
        for f in futures:
            f.result(timeout=60)
        assert sorted(seen) == [[2, 2], [3, 3]]
    finally:
        batcher.close()


def test_padding_uses_the_last_requests_first_row_and_is_dropped():
    batcher, seen = Batcher(1), []

    def run(arrays):
        seen.append(arrays["x"].ravel().tolist())
        return double(arrays)

    try:
        options = BatchingOptions(max_batch_size=4, allowed_batch_sizes=(2, 4))
        out = batcher.submit(("k",), options, run, {"x": np.array([[1], [2], [3]])})
        assert out.result(timeout=60)["y"].ravel().tolist() == [2, 4, 6]
        assert seen == [[1, 2, 3, 1]]
        assert (batcher.padding, dict(batcher.batch_sizes)) == (1, {4: 1})
    finally:
        batcher.close()


def test_queue_full_is_unavailable():
    batcher = Batcher(1)
    started, release = threading.Event(), threading.Event()

    def blocked(arrays):
        started.set()
        assert release.wait(60)
        return double(arrays)

    options = BatchingOptions(max_batch_size=1, max_enqueued_batches=1)
    try:
        running = batcher.submit(("k",), options, blocked, {"x": np.ones((1, 1))})
        assert started.wait(60)   # the only batch thread holds the first batch
        queued = batcher.submit(("k",), options, blocked, {"x": np.ones((1, 1))})
        with pytest.raises(ServingError) as e:
            batcher.submit(("k",), options, blocked, {"x": np.ones((1, 1))})
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        assert e.value.message == (
            "The batch scheduling queue to which this task was submitted is full; currently "
            "1 batches enqueued and max_enqueued_batches is 1")
        release.set()
        assert running.result(60)["y"].tolist() == [[2.0]]
        assert queued.result(60)["y"].tolist() == [[2.0]]
    finally:
        release.set()
        batcher.close()


def test_rank_0_inputs_cannot_be_batched():
    batcher = Batcher(1)
    try:
        with pytest.raises(ServingError) as e:
            batcher.submit(("k",), BatchingOptions(), double, {"x": np.float32(1)})
        assert (e.value.code, e.value.message) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Batching Run() input tensors must have at least one dimension")
    finally:
        batcher.close()


def test_batcher_rejects_bad_options():
    # Was Batcher(0, 0.1); the options now come from BatchingOptions, checked on creation.
    with pytest.raises(ValueError, match="max_batch_size must be positive. Received: 0"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="num_batch_threads must be positive. Received: 0"):
        Batcher(0)
