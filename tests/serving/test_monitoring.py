"""--monitoring_config_file: a real server's Prometheus page counts exactly what it answered."""

import os
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import monitoring
from serving.cli import main
from serving.client import PredictionClient, RestPredictionClient
from serving.errors import ConfigFileError, ServingError
from serving.server import Server
from tests.serving.conftest import MODEL, POLL, Held, clip, copy_version, wait_for


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(server, path=monitoring.PROMETHEUS_PATH) -> dict:
    """{sample name: {frozenset(labels): value}} from the server's metrics page."""
    status, text = get(server.rest_api_port, path)
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples


def labels(**kw):
    return frozenset(kw.items())


def monitored_server(exported, tmp_path, text):
    base = tmp_path / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    server = Server(str(base), MODEL, port=0, rest_api_port=0, poll_interval=POLL,
                    monitoring_config=monitoring.parse_monitoring_config(text))
    server.start()
    assert server.wait_for_model(60)
    return server, str(base)


@pytest.fixture
def monitored(exported, tmp_path):
    server, base = monitored_server(exported, tmp_path, "prometheus_config { enable: true }")
    yield server, base
    server.stop(grace=5)


def test_scrape_counts_exactly_the_requests_answered(monitored):
    server, base = monitored
    grpc_client = PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=30)
    rest_url = f"http://127.0.0.1:{server.rest_api_port}"
    n_grpc, n_rest = 3, 2
    for _ in range(n_grpc):
        grpc_client.predict(clip(1, 2), 1)
    for _ in range(n_rest):
        RestPredictionClient(rest_url, MODEL).predict(clip(1, 2), 1)
    failed = 0
    with PredictionClient(f"127.0.0.1:{server.port}", MODEL, version=7) as missing:
        for _ in range(2):
            with pytest.raises(ServingError):
                missing.predict(clip(1, 2), 1)
            failed += 1
    request = urllib.request.Request(f"{rest_url}/v1/models/{MODEL}:predict", data=b"{nope")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=30)
    failed += 1
    grpc_client.close()

    m = scrape(server)
    # TF Serving's counter: by model and status only.
    assert m[":tensorflow:serving:request_count"] == {
        labels(model_name=MODEL, status="OK"): n_grpc + n_rest,
        labels(model_name=MODEL, status="NOT_FOUND"): 2,
        labels(model_name=MODEL, status="INVALID_ARGUMENT"): 1}
    assert sum(m[":tensorflow:serving:request_count"].values()) == n_grpc + n_rest + failed
    # This server's own: by version and entrypoint too (the bad JSON came after resolution).
    assert m[":vidgen:serving:request_count"] == {
        labels(model_name=MODEL, model_version="1", API="Predict", entrypoint="GRPC",
               status="OK"): n_grpc,
        labels(model_name=MODEL, model_version="1", API="predict", entrypoint="REST",
               status="OK"): n_rest,
        labels(model_name=MODEL, model_version="", API="Predict", entrypoint="GRPC",
               status="NOT_FOUND"): 2,
        labels(model_name=MODEL, model_version="1", API="predict", entrypoint="REST",
               status="INVALID_ARGUMENT"): 1}
    # Latency of the successful ones only, in TF Serving's microsecond buckets.
    counts = m[":tensorflow:serving:request_latency_count"]
    assert counts == {labels(model_name=MODEL, API="Predict", entrypoint="GRPC"): n_grpc,
                      labels(model_name=MODEL, API="predict", entrypoint="REST"): n_rest}
    buckets = m[":tensorflow:serving:request_latency_bucket"]
    assert buckets[labels(model_name=MODEL, API="Predict", entrypoint="GRPC", le="+Inf")] == n_grpc
    assert buckets[labels(model_name=MODEL, API="Predict", entrypoint="GRPC", le="10")] == 0
    assert len(buckets) == 2 * 33
    assert all(v > 0 for v in m[":tensorflow:serving:request_latency_sum"].values())
    assert set(m[":vidgen:serving:requests_in_flight"].values()) == {0}
    # Model load and warm-up of version 1.
    path = os.path.join(base, "1")
    assert m[":tensorflow:cc:saved_model:load_attempt_count"] == {
        labels(model_path=path, status="success"): 1}
    assert m[":tensorflow:cc:saved_model:load_latency"][labels(model_path=path)] > 0
    assert m[":tensorflow:serving:model_warmup_latency_count"] == {
        labels(model_path=path, status="OK"): 1}


def test_requests_in_flight(monitored, monkeypatch):
    server, _ = monitored
    key = labels(model_name=MODEL, API="Predict", entrypoint="GRPC")
    servable = server.core.models.resolve(MODEL)
    held = Held(servable)   # in flight until released, however fast the model runs
    monkeypatch.setattr(servable, "run", held)
    result = {}

    def long_request():
        with PredictionClient(f"127.0.0.1:{server.port}", MODEL, timeout=60) as client:
            result["frames"] = client.predict(clip(16, 3), 1000)

    thread = threading.Thread(target=long_request)
    thread.start()
    try:
        assert wait_for(lambda: scrape(server).get(":vidgen:serving:requests_in_flight", {})
                        .get(key) == 1, 30)
    finally:
        held.release.set()
        thread.join(60)
    assert result["frames"].shape[:2] == (16, 1000)
    assert scrape(server)[":vidgen:serving:requests_in_flight"][key] == 0


def test_the_configured_path_is_served_and_no_other(exported, tmp_path, server):
    custom, _ = monitored_server(exported, tmp_path,
                                 'prometheus_config { enable: true, path: "/metrics" }')
    try:
        assert ":tensorflow:serving:model_warmup_latency_count" in scrape(custom, "/metrics")
        assert get(custom.rest_api_port, monitoring.PROMETHEUS_PATH)[0] == 404
    finally:
        custom.stop(grace=5)
    # Without a monitoring config (the package's server), the path is a 404 as in TF Serving.
    assert get(server.rest_api_port, monitoring.PROMETHEUS_PATH)[0] == 404
    assert get(server.rest_api_port, "/elsewhere")[0] == 404


def test_bad_monitoring_config_is_named(tmp_path, capsys):
    with pytest.raises(ConfigFileError, match="expected a text-format MonitoringConfig"):
        monitoring.parse_monitoring_config("prometheus_config { enabled: true }", "m.config")
    config = monitoring.parse_monitoring_config('prometheus_config { enable: true path: "x" }')
    with pytest.raises(ConfigFileError, match="expected a path starting with '/'"):
        monitoring.prometheus_path(config)
    assert monitoring.prometheus_path(monitoring.MonitoringConfig()) is None
    assert monitoring.prometheus_name("/tensorflow/serving/request_count") == \
        ":tensorflow:serving:request_count"
    bad = tmp_path / "m.config"
    bad.write_text("nope")
    assert main(["start", "--model_base_path", str(tmp_path), "--model_name", MODEL,
                 "--monitoring_config_file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"--monitoring_config_file {bad}: expected a text-format MonitoringConfig" in err
