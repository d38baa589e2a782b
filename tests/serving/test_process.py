"""Model config, labels, metrics and the version hand-over in a real `vidgen-serve start`.

One process on 127.0.0.1, started with --model_config_file (re-read every 0.1 s) and
--monitoring_config_file, serves three models, one per scenario, so the tests share the
start-up cost but never each other's counts, labels or version folders:

    counted   specific {1, 2}, labels stable -> 1, canary -> 2: a scrape counts exactly
              the requests sent to it;
    vidgen    specific {1, 2}, labels stable -> 1, canary -> 2: labels route requests and
              move when the file is rewritten;
    handover  the default policy (latest 1): its serving version's folder is removed
              while clients keep sending.

Every wait polls the process with a deadline; nothing sleeps for a guessed time.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export import contract as C
from serving import tensors
from serving.client import PredictionClient, RestPredictionClient
from serving.errors import ServingError
from tests.serving.conftest import MODEL, clip, copy_version, wait_for
from tests.serving.test_cli import free_port
from tests.serving.test_model_config import grpc_version, write
from tests.serving.test_monitoring import labels, scrape
from tests.serving.test_versions import predict_request

pytestmark = pytest.mark.slow

COUNTED, LABELLED, HANDOVER = "counted", MODEL, "handover"
SPECIFIC = "specific { versions: 1 versions: 2 }"
METRICS_PATH = "/monitoring/prometheus/metrics"
START_TIMEOUT = 120   # seconds for the process to serve all three models


def model_entry(name, base, policy=None, version_labels=None) -> str:
    text = f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow"'
    if policy:
        text += f" model_version_policy {{ {policy} }}"
    for key, value in (version_labels or {}).items():
        text += f' version_labels {{ key: "{key}" value: {value} }}'
    return text + " }\n"


class ServeProcess:
    """A running `vidgen-serve start` and the files it reads.

    `port` and `rest_api_port` give it the shape of a `Server` for the helpers of the
    other serving tests (`grpc_version`, `scrape`). `lines` is its output so far.
    """

    def __init__(self, root, exported):
        self.root = str(root)
        self.bases = {}
        for name in (COUNTED, LABELLED, HANDOVER):
            self.bases[name] = os.path.join(self.root, name)
            for version in (1, 2):
                copy_version(exported, self.bases[name], version)
        self.config_file = os.path.join(self.root, "models.config")
        self.write_config({"stable": 1, "canary": 2})
        self.monitoring_file = write(
            os.path.join(self.root, "monitoring.config"),
            f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
        self.lines = []
        self.port = None
        self.rest_api_port = None
        self.proc = None

    def write_config(self, vidgen_labels: dict) -> None:
        """Rewrites the config file (atomically) with `vidgen_labels` for the labelled model."""
        write(self.config_file, "model_config_list {\n"
              + model_entry(COUNTED, self.bases[COUNTED], SPECIFIC, {"stable": 1, "canary": 2})
              + model_entry(LABELLED, self.bases[LABELLED], SPECIFIC, vidgen_labels)
              + model_entry(HANDOVER, self.bases[HANDOVER])
              + "}\n")

    def start(self) -> None:
        script = os.path.join(os.path.dirname(sys.executable), "vidgen-serve")
        command = [script] if os.path.exists(script) else [sys.executable, "-m", "serving.cli"]
        rest_port = free_port()
        env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(
            command + ["start", "--model_config_file", self.config_file,
                       "--model_config_file_poll_wait_seconds", "0.1",
                       "--allow_version_labels_for_unavailable_models",
                       "--monitoring_config_file", self.monitoring_file,
                       "--port", "0", "--rest_api_port", str(rest_port),
                       "--file_system_poll_wait_seconds", "0.1", "--drain_seconds", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        ready = threading.Event()

        def read():   # until the process ends, so its output never blocks it
            for line in self.proc.stdout:
                self.lines.append(line)
                if "not implemented from TF Serving" in line:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        assert ready.wait(START_TIMEOUT) and self.proc.poll() is None, self.output()
        banner = self.output()
        self.port = int(re.search(r"gRPC on 127\.0\.0\.1:(\d+)", banner).group(1))
        self.rest_api_port = int(re.search(r"REST on 127\.0\.0\.1:(\d+)", banner).group(1))
        assert self.rest_api_port == rest_port
        assert (f"Prometheus metrics on http://127.0.0.1:{rest_port}{METRICS_PATH}"
                in banner), banner

    def stop(self) -> int:
        """SIGTERM, as a container runtime stops it; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(60)   # the output up to the end, "stopped" included
        return code

    def output(self) -> str:
        return "".join(self.lines)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.rest_api_port}{path}"

    def status(self, name: str) -> dict:
        """{version: state} of `name` over gRPC GetModelStatus."""
        with PredictionClient(f"127.0.0.1:{self.port}", name, timeout=30) as c:
            return {s["version"]: s["state"] for s in c.status()}


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    process = ServeProcess(tmp_path_factory.mktemp("process"), exported)
    try:
        process.start()
        for name in (COUNTED, LABELLED):   # specific {1, 2}: the port opens once one serves
            assert wait_for(lambda n=name: process.status(n) == {1: "AVAILABLE",
                                                                 2: "AVAILABLE"}, 60)
        yield process
    finally:
        code = process.stop()
    assert code == 0, process.output()
    assert "vidgen-serve: stopped" in process.output()


@pytest.fixture(autouse=True)
def server_log(served):
    """The server's output during the test, shown by pytest when the test fails."""
    start = len(served.lines)
    yield
    print("".join(served.lines[start:]))


@pytest.fixture(scope="module")
def stub(served):
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def references(keras_models):
    """What each version answers for the scenarios' clip: {version: frames}."""
    context = clip(1, 3, seed=11)
    return context, {v: np.asarray(m.rollout(context, 2)) for v, m in keras_models.items()}


def version_of(frames, references) -> int:
    """The one version whose rollout `frames` are (REST answers do not name the version)."""
    _, want = references
    matches = [v for v, w in want.items() if np.max(np.abs(frames - w)) <= 1e-5]
    assert len(matches) == 1, f"frames match versions {matches}"
    return matches[0]


def rest_predict(served, name, context, horizon=2, version=None, version_label=None):
    client = RestPredictionClient(served.url(), name, version=version,
                                  version_label=version_label, timeout=30, retries=0)
    return client.predict(context, horizon)


def post(served, path, body: bytes):
    """(HTTP status, JSON body) of a raw REST POST."""
    request = urllib.request.Request(served.url(path), data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def only(samples: dict, name: str) -> dict:
    """The samples of one model: {labels: value} where model_name is `name`."""
    return {k: v for k, v in samples.items() if ("model_name", name) in k}


# ---- A: the scrape counts exactly the requests answered ---------------------------------

def test_scrape_counts_exactly_the_grpc_and_rest_requests(served, stub):
    context = clip(1, 3, seed=1)

    def grpc_predict(version=None, label=None):
        request = predict_request(context, 2)
        request.model_spec.name = COUNTED
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
        return stub.Predict(request, timeout=30).model_spec.version.value

    # Six answered: three over gRPC, three over REST, by no version, a version and a label.
    assert [grpc_predict(), grpc_predict(version=1), grpc_predict(label="canary")] == [2, 1, 2]
    for kwargs in ({}, {"version": 1}, {"version_label": "stable"}):
        assert rest_predict(served, COUNTED, context, **kwargs).shape == (1, 2, 16, 16, 1)
    # Four refused: a missing version and an unknown label on each API.
    failures = []
    for kwargs in ({"version": 7}, {"label": "nope"}):
        with pytest.raises(grpc.RpcError) as e:
            grpc_predict(**kwargs)
        failures.append(e.value.code())
    assert failures == [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT]
    status, body = post(served, f"/v1/models/{COUNTED}/versions/7:predict", b"{}")
    assert status == 404 and body["error"] == (
        f"Servable not found for request: Specific({COUNTED}, 7)")
    status, body = post(served, f"/v1/models/{COUNTED}:predict", b"{nope")
    assert status == 400, body

    m = scrape(served, METRICS_PATH)
    # TF Serving's own counter, by model and status.
    assert only(m[":tensorflow:serving:request_count"], COUNTED) == {
        labels(model_name=COUNTED, status="OK"): 6,
        labels(model_name=COUNTED, status="NOT_FOUND"): 2,
        labels(model_name=COUNTED, status="INVALID_ARGUMENT"): 2}
    # This server's, by version and entrypoint: a refusal before resolution has no version,
    # the bad JSON came after it (the highest version).
    v = dict(model_name=COUNTED)
    assert only(m[":vidgen:serving:request_count"], COUNTED) == {
        labels(**v, model_version="2", API="Predict", entrypoint="GRPC", status="OK"): 2,
        labels(**v, model_version="1", API="Predict", entrypoint="GRPC", status="OK"): 1,
        labels(**v, model_version="2", API="predict", entrypoint="REST", status="OK"): 1,
        labels(**v, model_version="1", API="predict", entrypoint="REST", status="OK"): 2,
        labels(**v, model_version="", API="Predict", entrypoint="GRPC",
               status="NOT_FOUND"): 1,
        labels(**v, model_version="", API="Predict", entrypoint="GRPC",
               status="INVALID_ARGUMENT"): 1,
        labels(**v, model_version="", API="predict", entrypoint="REST",
               status="NOT_FOUND"): 1,
        labels(**v, model_version="2", API="predict", entrypoint="REST",
               status="INVALID_ARGUMENT"): 1}
    # The latency histogram holds the answered ones only, in TF Serving's 33 buckets.
    assert only(m[":tensorflow:serving:request_latency_count"], COUNTED) == {
        labels(**v, API="Predict", entrypoint="GRPC"): 3,
        labels(**v, API="predict", entrypoint="REST"): 3}
    buckets = only(m[":tensorflow:serving:request_latency_bucket"], COUNTED)
    assert len(buckets) == 2 * 33
    assert buckets[labels(**v, API="predict", entrypoint="REST", le="+Inf")] == 3
    assert set(only(m[":vidgen:serving:requests_in_flight"], COUNTED).values()) == {0}
    # Each version of the model was loaded and warmed once.
    for version in (1, 2):
        path = os.path.join(served.bases[COUNTED], str(version))
        assert m[":tensorflow:cc:saved_model:load_attempt_count"][
            labels(model_path=path, status="success")] == 1
        assert m[":tensorflow:serving:model_warmup_latency_count"][
            labels(model_path=path, status="OK")] == 1


# ---- B: labels route requests and move when the file changes -----------------------------

def test_labels_route_requests_and_move_when_the_config_file_changes(served, references):
    context, _ = references

    def rest_version(label):
        return version_of(rest_predict(served, LABELLED, context, version_label=label),
                          references)

    assert grpc_version(served, label="stable") == 1 and rest_version("stable") == 1
    assert grpc_version(served, label="canary") == 2 and rest_version("canary") == 2
    loads = scrape(served, METRICS_PATH)[":tensorflow:cc:saved_model:load_attempt_count"]

    served.write_config({"stable": 2, "canary": 2})
    assert wait_for(lambda: grpc_version(served, label="stable") == 2, 30), served.output()
    assert rest_version("stable") == 2
    assert grpc_version(served, label="canary") == 2 and rest_version("canary") == 2
    assert grpc_version(served, version=1) == 1   # version 1 still serves, unlabelled
    # Moving a label loads nothing, in this model or the others.
    m = scrape(served, METRICS_PATH)
    assert m[":tensorflow:cc:saved_model:load_attempt_count"] == loads

    # An unknown label: TF Serving's error on both APIs.
    with pytest.raises(grpc.RpcError) as e:
        grpc_version(served, label="nope")
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope")
    with pytest.raises(ServingError) as e:
        rest_predict(served, LABELLED, context, version_label="nope")
    assert (e.value.http_status, e.value.message) == (
        400, "Unrecognized servable version label: nope")


# ---- C: the serving version's folder is removed under load ------------------------------

class Clients:
    """Threads sending `context` to `name` without pause (gRPC and REST) until the block ends.

    `results[i]` lists the versions that answered client i; `failures` every error.
    """

    def __init__(self, served, name, references, n_grpc: int, n_rest: int):
        self.served, self.name, self.references = served, name, references
        kinds = ["grpc"] * n_grpc + ["rest"] * n_rest
        self.results = [[] for _ in kinds]
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i, kind))
                         for i, kind in enumerate(kinds)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self, i: int, kind: str) -> None:
        context, _ = self.references
        request = predict_request(context, 2)
        request.model_spec.name = self.name
        with grpc.insecure_channel(f"127.0.0.1:{self.served.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            rest = RestPredictionClient(self.served.url(), self.name, timeout=30, retries=0)
            while not self._stop.is_set():
                try:
                    if kind == "grpc":
                        response = stub.Predict(request, timeout=30)
                        frames = tensors.from_proto(response.outputs[C.FRAMES])
                        version = response.model_spec.version.value
                        assert version == version_of(frames, self.references)
                    else:
                        version = version_of(rest.predict(context, 2), self.references)
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    self.failures.append(f"{kind}: {type(e).__name__}: {e}")
                    continue
                self.results[i].append(version)

    def all_answered_by(self, version: int, after=None) -> bool:
        after = after or [0] * len(self.results)
        return all(len(r) > n and r[-1] == version for r, n in zip(self.results, after))


def test_removed_version_hands_over_to_the_next_without_a_failed_request(served, references):
    base = served.bases[HANDOVER]
    assert served.status(HANDOVER) == {2: "AVAILABLE"}   # latest 1: version 1 is not loaded
    with Clients(served, HANDOVER, references, n_grpc=4, n_rest=2) as clients:
        assert wait_for(lambda: clients.all_answered_by(2), 60), clients.failures
        shutil.rmtree(os.path.join(base, "2"))
        removed = [len(r) for r in clients.results]
        assert wait_for(lambda: clients.all_answered_by(1), 60), served.output()
        counts = [len(r) for r in clients.results]   # and keep answering after the swap
        assert wait_for(lambda: clients.all_answered_by(1, after=counts), 60)
    assert clients.failures == []
    for r in clients.results:
        assert r[0] == 2 and r[-1] == 1
        assert r == sorted(r, reverse=True), "a client went back to the removed version"
    # Version 2 kept answering while version 1 loaded (folder gone, nothing else to serve) ...
    assert sum(r[n:].count(2) for r, n in zip(clients.results, removed)) > 0
    # ... and stopped only once version 1 served, as the server's log says in that order.
    log = served.output()
    serving = log.find("Serving version 1 of handover")
    unloading = log.find("Unloading version 2 of handover: its directory was removed.")
    assert 0 < serving < unloading, log
    assert served.status(HANDOVER) == {1: "AVAILABLE", 2: "END"}
    # Version 1 was loaded and warmed once, at the removal.
    m = scrape(served, METRICS_PATH)
    path = os.path.join(base, "1")
    assert m[":tensorflow:cc:saved_model:load_attempt_count"][
        labels(model_path=path, status="success")] == 1
    assert m[":tensorflow:serving:model_warmup_latency_count"][
        labels(model_path=path, status="OK")] == 1
