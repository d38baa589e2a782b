"""The files for the real TF Serving parse and agree with each other."""

import importlib.metadata
import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import model_config, monitoring

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "serving", "deploy")

# Fields of tensorflow.serving.BatchingParameters (session_bundle_config.proto); the
# pip package does not ship that proto, so its field names are listed here.
BATCHING_FIELDS = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                   "num_batch_threads", "thread_pool_name", "allowed_batch_sizes",
                   "pad_variable_length_inputs", "enable_large_batch_splitting",
                   "max_execution_batch_size"}


def read(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return f.read()


def test_model_config_serves_two_versions_under_stable_and_canary():
    config = text_format.Parse(read("models.config"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "vidgen", "/models/vidgen", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    model_config.validate(config)   # the local server takes the same file


def test_compose_file_passes_the_configs_to_a_new_enough_image():
    compose = read("docker-compose.yml")
    assert ":/models:ro" in compose and "--model_config_file=/config/models.config" in compose
    assert '"127.0.0.1:8500:8500"' in compose and '"127.0.0.1:8501:8501"' in compose
    tag = re.search(r"image: \$\{TF_SERVING_IMAGE:-tensorflow/serving:(\d+)\.(\d+)\.\d+\}",
                    compose)
    exporter = tuple(int(x) for x in importlib.metadata.version("tensorflow").split(".")[:2])
    assert tag and (int(tag.group(1)), int(tag.group(2))) >= exporter
    poll = re.search(r"--model_config_file_poll_wait_seconds=(\d+)", compose)
    assert poll and int(poll.group(1)) > 0
    # The labels name versions that are still loading when the server starts.
    assert "--allow_version_labels_for_unavailable_models=true" in compose
    assert "./monitoring.config:/config/monitoring.config:ro" in compose
    assert "--monitoring_config_file=/config/monitoring.config" in compose


def test_monitoring_config_enables_prometheus_on_its_default_path():
    config = monitoring.parse_monitoring_config(read("monitoring.config"))
    assert monitoring.prometheus_path(config) == "/monitoring/prometheus/metrics"


def test_batching_parameters_use_known_fields():
    lines = [line.split("#")[0].strip() for line in read("batching_parameters.txt").splitlines()]
    fields = {re.match(r"(\w+)", line).group(1) for line in lines if line}
    assert fields <= BATCHING_FIELDS
    assert "max_batch_size { value: 16 }" in lines
    assert "pad_variable_length_inputs: false" in lines
