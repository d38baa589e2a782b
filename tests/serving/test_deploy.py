"""The files for the real TF Serving parse and agree with each other."""

import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

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


def test_model_config_parses_and_matches_the_compose_file():
    config = text_format.Parse(read("models.config"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "vidgen", "/models/vidgen", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1
    compose = read("docker-compose.yml")
    assert ":/models:ro" in compose and "/config/models.config" in compose
    assert '"127.0.0.1:8500:8500"' in compose and '"127.0.0.1:8501:8501"' in compose
    assert re.search(r"image: \$\{TF_SERVING_IMAGE:-tensorflow/serving:[\d.]+\}", compose)


def test_batching_parameters_use_known_fields():
    lines = [line.split("#")[0].strip() for line in read("batching_parameters.txt").splitlines()]
    fields = {re.match(r"(\w+)", line).group(1) for line in lines if line}
    assert fields <= BATCHING_FIELDS
    assert "max_batch_size { value: 16 }" in lines
    assert "pad_variable_length_inputs: false" in lines
