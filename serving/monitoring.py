"""Prometheus metrics of the local server, named, labelled and bucketed as TF Serving's.

`--monitoring_config_file` names a text `tensorflow.serving.MonitoringConfig`
(tensorflow_serving/config/monitoring_config.proto, which the
tensorflow-serving-api wheel does not ship, so its two messages are built
here from their descriptor):

    prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }

With `enable: true` the REST port answers GET `path` (default
/monitoring/prometheus/metrics) with the Prometheus text format, written by
prometheus_client from this server's own CollectorRegistry; without it the
path is a 404, as in TF Serving.

TF Serving names its metrics as TensorFlow monitoring paths and exports them
with every character outside [a-zA-Z0-9_] turned into ':'
(util/prometheus_exporter.cc), so `/tensorflow/serving/request_count` is
scraped as `:tensorflow:serving:request_count`. The metrics kept here, with
TF Serving's labels and units (microseconds; histogram buckets
Exponential(10, 1.8, 33)):

    :tensorflow:serving:request_count{model_name,status}        every Predict/Classify/Regress
    :tensorflow:serving:request_latency{model_name,API,entrypoint}  successful ones (GRPC, REST)
    :tensorflow:cc:saved_model:load_attempt_count{model_path,status}   success / fail
    :tensorflow:cc:saved_model:load_latency{model_path}         total us of successful loads
    :tensorflow:serving:model_warmup_latency{model_path,status}
    :vidgen:serving:request_count{model_name,model_version,API,entrypoint,status}
    :vidgen:serving:requests_in_flight{model_name,API,entrypoint}

The last two are this server's own (TF Serving counts requests by model only
and has no in-flight gauge). One difference in form: TF Serving declares its
counters `# TYPE ... counter` while writing the samples without the `_total`
suffix that prometheus_client adds to counters; to keep the sample names that
queries use identical, counters are exported here as untyped.
"""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left
from typing import Optional

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from serving.errors import ConfigFileError, ServingError, read_config_text

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"   # PrometheusExporter::kPrometheusPath
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _monitoring_config_class():
    f = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving", syntax="proto3")
    fd = descriptor_pb2.FieldDescriptorProto
    prometheus = f.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=fd.TYPE_BOOL, label=fd.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL)
    config = f.message_type.add(name="MonitoringConfig")
    config.field.add(name="prometheus_config", number=1, type=fd.TYPE_MESSAGE,
                     type_name=".tensorflow.serving.PrometheusConfig", label=fd.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()   # private: never clashes with another copy
    pool.Add(f)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()


def parse_monitoring_config(text: str, source: str = "<string>"):
    """A MonitoringConfig from its text format (ConfigFileError naming `source` if not)."""
    try:
        return text_format.Parse(text, MonitoringConfig())
    except text_format.ParseError as e:
        raise ConfigFileError(
            f"{source}: expected a text-format MonitoringConfig such as prometheus_config "
            f'{{ enable: true, path: "{PROMETHEUS_PATH}" }}, received a parse error: {e}'
        ) from None


def read_monitoring_config(path: str):
    """Reads and parses the text MonitoringConfig at `path`."""
    return parse_monitoring_config(read_config_text(path, "MonitoringConfig"), path)


def prometheus_path(config) -> Optional[str]:
    """The path metrics are served on, or None when the config does not enable them."""
    if config is None or not config.prometheus_config.enable:
        return None
    path = config.prometheus_config.path or PROMETHEUS_PATH
    if not path.startswith("/"):
        raise ConfigFileError(f"prometheus_config.path: expected a path starting with '/', "
                              f"received {path!r}")
    return path


def prometheus_name(name: str) -> str:
    """A TensorFlow metric name as TF Serving's exporter writes it for Prometheus."""
    out = re.sub(r"[^a-zA-Z0-9_]", ":", name)
    return "_" + out if out[:1].isdigit() else out


def _buckets(scale: float, growth: float, count: int) -> list[float]:
    # monitoring::Buckets::Exponential: count - 1 finite limits, then DBL_MAX (+Inf); rounded
    # to the 6 significant digits TF Serving prints.
    return [float(f"{scale * growth ** i:.6g}") for i in range(count - 1)]


LATENCY_BUCKETS = _buckets(10, 1.8, 33)

_COUNTERS = {
    "/tensorflow/serving/request_count": ("The total number of requests.",
                                          ("model_name", "status")),
    "/tensorflow/cc/saved_model/load_attempt_count": (
        "The number of times a SavedModel was successfully loaded.", ("model_path", "status")),
    "/tensorflow/cc/saved_model/load_latency": (
        "Latency in microseconds for SavedModels that were successfully loaded.",
        ("model_path",)),
    "/vidgen/serving/request_count": (
        "Requests by model, version, API, entrypoint and status (vidgen-serve).",
        ("model_name", "model_version", "API", "entrypoint", "status")),
}
_HISTOGRAMS = {
    "/tensorflow/serving/request_latency": (
        "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
        ("model_name", "API", "entrypoint")),
    "/tensorflow/serving/model_warmup_latency": (
        "Distribution of wall time (in microseconds) for warming up the model.",
        ("model_path", "status")),
}
_GAUGES = {
    "/vidgen/serving/requests_in_flight": (
        "Requests being answered now (vidgen-serve).", ("model_name", "API", "entrypoint")),
}


class Metrics:
    """The metrics of one server, exported through its own CollectorRegistry.

    Example:

        metrics = Metrics()
        with metrics.request("vidgen", "Predict", "GRPC") as call:
            call.version = 2
            ...                      # a ServingError raised here is counted by its code
        text = metrics.exposition()  # bytes in the Prometheus text format
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = {n: {} for n in _COUNTERS}
        self._histograms: dict[str, dict[tuple, list]] = {n: {} for n in _HISTOGRAMS}
        self._gauges: dict[str, dict[tuple, float]] = {n: {} for n in _GAUGES}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ---- recording ----------------------------------------------------------------

    def request(self, model_name: str, api: str, entrypoint: str) -> _Call:
        """A context manager timing and counting one request (see the class example)."""
        return _Call(self, model_name, api, entrypoint)

    def load(self, model_path: str, ok: bool, seconds: float) -> None:
        with self._lock:
            self._add("/tensorflow/cc/saved_model/load_attempt_count",
                      (model_path, "success" if ok else "fail"), 1)
            if ok:
                self._add("/tensorflow/cc/saved_model/load_latency", (model_path,),
                          round(seconds * 1e6))

    def warmup(self, model_path: str, seconds: float, status: str = "OK") -> None:
        with self._lock:
            self._observe("/tensorflow/serving/model_warmup_latency", (model_path, status),
                          seconds * 1e6)

    def _started(self, call: _Call) -> None:
        with self._lock:
            self._add("/vidgen/serving/requests_in_flight", call.key, 1, self._gauges)

    def _finished(self, call: _Call, status: str, seconds: float) -> None:
        name, api, entrypoint = call.key
        version = "" if call.version is None else str(call.version)
        with self._lock:
            self._add("/vidgen/serving/requests_in_flight", call.key, -1, self._gauges)
            self._add("/tensorflow/serving/request_count", (name, status), 1)
            self._add("/vidgen/serving/request_count",
                      (name, version, api, entrypoint, status), 1)
            if status == "OK":
                self._observe("/tensorflow/serving/request_latency", call.key, seconds * 1e6)

    def _add(self, metric: str, labels: tuple, value: float, table=None) -> None:
        cells = (table or self._counters)[metric]
        cells[labels] = cells.get(labels, 0) + value

    def _observe(self, metric: str, labels: tuple, value: float) -> None:
        cells = self._histograms[metric]
        cell = cells.setdefault(labels, [[0] * (len(LATENCY_BUCKETS) + 1), 0.0])
        cell[0][bisect_left(LATENCY_BUCKETS, value)] += 1
        cell[1] += value

    # ---- export -------------------------------------------------------------------

    def collect(self):
        """prometheus_client's Collector protocol: one family per metric that has a value."""
        with self._lock:
            counters = {n: dict(c) for n, c in self._counters.items()}
            gauges = {n: dict(c) for n, c in self._gauges.items()}
            histograms = {n: {k: (list(v[0]), v[1]) for k, v in c.items()}
                          for n, c in self._histograms.items()}
        for name, cells in counters.items():
            if cells:
                doc, labels = _COUNTERS[name]
                family = Metric(prometheus_name(name), doc, "unknown")
                for values, value in sorted(cells.items()):
                    family.add_sample(prometheus_name(name), dict(zip(labels, values)), value)
                yield family
        for name, cells in gauges.items():
            if cells:
                doc, labels = _GAUGES[name]
                family = GaugeMetricFamily(prometheus_name(name), doc, labels=labels)
                for values, value in sorted(cells.items()):
                    family.add_metric(values, value)
                yield family
        for name, cells in histograms.items():
            if cells:
                doc, labels = _HISTOGRAMS[name]
                family = HistogramMetricFamily(prometheus_name(name), doc, labels=labels)
                for values, (counts, total) in sorted(cells.items()):
                    cumulative, buckets = 0, []
                    for bound, count in zip([*LATENCY_BUCKETS, float("inf")], counts):
                        cumulative += count
                        buckets.append(("+Inf" if bound == float("inf") else f"{bound:.6g}",
                                        cumulative))
                    family.add_metric(values, buckets, total)
                yield family

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric, as scraped."""
        return generate_latest(self.registry)


class _Call:
    """One request being answered: set `version` once it is known."""

    def __init__(self, metrics: Metrics, model_name: str, api: str, entrypoint: str):
        self.metrics = metrics
        self.key = (model_name, api, entrypoint)
        self.version: Optional[int] = None
        self._start = 0.0

    def __enter__(self) -> _Call:
        self._start = time.monotonic()
        self.metrics._started(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            status = "OK"
        elif isinstance(exc, ServingError):
            status = exc.code.name
        else:
            status = "UNKNOWN"   # what gRPC answers for an exception it does not know
        self.metrics._finished(self, status, time.monotonic() - self._start)
        return False
