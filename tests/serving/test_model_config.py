"""--model_config_file: policies, labels over gRPC and REST, re-reads, HandleReloadConfigRequest."""

import json
import logging
import os
import textwrap
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config.file_system_storage_path_source_pb2 import (
    FileSystemStoragePathSourceConfig,
)

from serving import model_config
from serving.cli import main
from serving.client import RestPredictionClient
from serving.errors import ConfigFileError, ServingError
from serving.server import Server
from tests.serving.conftest import MODEL, POLL, clip, model_base, wait_for
from tests.serving.test_versions import predict_request

Policy = FileSystemStoragePathSourceConfig.ServableVersionPolicy


def config_text(base, policy="specific { versions: 1 versions: 2 }", labels=None, name=MODEL,
                extra=""):
    label_text = "".join(f'version_labels {{ key: "{k}" value: {v} }}\n'
                         for k, v in (labels or {}).items())
    return textwrap.dedent(f"""\
        model_config_list {{
          config {{
            name: "{name}"
            base_path: "{base}"
            model_platform: "tensorflow"
            model_version_policy {{ {policy} }}
            {label_text}
          }}
          {extra}
        }}
        """)


@pytest.fixture
def base(exported, tmp_path):
    """Versions 1 and 2."""
    return model_base(exported, tmp_path, versions=(1, 2))


def write(path, text):
    # Write then rename, so a poll never reads half a file.
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return str(path)


def serve(config_file, **kwargs):
    server = Server(model_config_file=config_file, port=0, rest_api_port=0, poll_interval=POLL,
                    **kwargs)
    server.start()
    assert server.wait_for_model(60)
    return server


def grpc_version(server, name=MODEL, version=None, label=None):
    """The version that answers a Predict naming `version` or `label`."""
    request = predict_request(clip(1, 2), 1)
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30).model_spec.version.value


def rest_get(server, path):
    url = f"http://127.0.0.1:{server.rest_api_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---- the config itself (no server) -----------------------------------------------------

def test_version_policies_follow_tf_serving():
    present = [1, 2, 3, 5]
    assert model_config.aspired_versions(Policy(), present) == {5}
    assert model_config.aspired_versions(Policy(latest={"num_versions": 0}), present) == {5}
    assert model_config.aspired_versions(Policy(latest={"num_versions": 2}), present) == {3, 5}
    assert model_config.aspired_versions(Policy(all={}), present) == {1, 2, 3, 5}
    assert model_config.aspired_versions(Policy(specific={"versions": [2, 4]}), present) == {2}


REFUSED = {
    "duplicate name": (config_text("/a", extra='config { name: "vidgen" base_path: "/b" '
                                               'model_platform: "tensorflow" }'),
                       "Illegal to list model vidgen multiple times in config list"),
    "relative base_path": (config_text("models/vidgen"),
                           "Expected model vidgen to have an absolute path or URI; got "
                           "base_path()=models/vidgen"),
    "no platform": (config_text("/a").replace('model_platform: "tensorflow"', ""),
                    "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                    "ModelServerConfig::model_platform."),
    "other platform": (config_text("/a").replace('"tensorflow"', '"pytorch"'),
                       "Model vidgen requests unsupported platform pytorch"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_tf_serving_checks_and_messages(case):
    text, message = REFUSED[case]
    with pytest.raises(ServingError) as e:
        model_config.validate(model_config.parse_model_config(text))
    assert (e.value.code, e.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_unreadable_and_unparsable_files_are_named(tmp_path):
    with pytest.raises(ConfigFileError, match="expected a readable text ModelServerConfig"):
        model_config.read_model_config(str(tmp_path / "missing.config"))
    path = write(tmp_path / "m.config", config_text("/a", policy="newest {}"))
    with pytest.raises(ConfigFileError) as e:
        model_config.read_model_config(path)
    assert str(e.value).startswith(f"{path}: expected a version policy of latest "
                                   "{ num_versions: N }, all {} or specific")
    assert 'no field named "newest"' in str(e.value)


def test_cli_wants_the_models_one_way(tmp_path, capsys):
    path = write(tmp_path / "m.config", config_text(str(tmp_path)))
    assert main(["start", "--model_config_file", path, "--model_base_path", str(tmp_path),
                 "--model_name", MODEL]) == 2
    assert ("--model_config_file and --model_base_path/--model_name are mutually exclusive"
            in capsys.readouterr().err)
    assert main(["start"]) == 2
    assert "received neither" in capsys.readouterr().err
    bad = write(tmp_path / "bad.config", "model_config_list { nope: 1 }")
    assert main(["start", "--model_config_file", bad]) == 2
    assert capsys.readouterr().err.count(f"--model_config_file {bad}: expected") == 1


def test_labels_need_the_flag_at_start_up(base, tmp_path, capsys):
    path = write(tmp_path / "m.config", config_text(base, labels={"stable": 1}))
    with pytest.raises(ServingError) as e:
        Server(model_config_file=path, port=0, rest_api_port=None)
    assert (e.value.code, e.value.message) == (
        grpc.StatusCode.FAILED_PRECONDITION, "Request to assign label to version 1 of model "
        "vidgen, which is not currently available for inference")
    assert main(["start", "--model_config_file", path]) == 2
    assert "--allow_version_labels_for_unavailable_models" in capsys.readouterr().err


# ---- a served config -------------------------------------------------------------------

def test_labels_route_requests_over_grpc_and_rest(base, tmp_path):
    path = write(tmp_path / "m.config", config_text(base, labels={"stable": 1, "canary": 2}))
    server = serve(path, allow_version_labels_for_unavailable_models=True)
    try:
        manager = server.core.models.manager(MODEL)
        assert wait_for(lambda: manager.available_versions == [1, 2], 60)
        assert grpc_version(server) == 2   # no version: the highest
        assert grpc_version(server, version=1) == 1
        assert grpc_version(server, label="stable") == 1
        assert grpc_version(server, label="canary") == 2
        with pytest.raises(grpc.RpcError) as e:
            grpc_version(server, label="nope")
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope")

        url = f"http://127.0.0.1:{server.rest_api_port}"
        frames = {label: RestPredictionClient(url, MODEL, version_label=label).predict(
            clip(1, 2), 1) for label in ("stable", "canary")}
        by_version = {v: RestPredictionClient(url, MODEL, version=v).predict(clip(1, 2), 1)
                      for v in (1, 2)}
        assert (frames["stable"] == by_version[1]).all()
        assert (frames["canary"] == by_version[2]).all()
        assert not (by_version[1] == by_version[2]).all()
        status, meta = rest_get(server, "/v1/models/vidgen/labels/canary/metadata")
        assert status == 200 and meta["model_spec"]["version"] == "2"
        # The status form ignores the label and lists every version, as TF Serving does.
        status, body = rest_get(server, "/v1/models/vidgen/labels/canary")
        assert status == 200 and [s["version"] for s in body["model_version_status"]] == [
            "1", "2"]
        with pytest.raises(ServingError) as e:
            RestPredictionClient(url, MODEL, version_label="nope").predict(clip(1, 2), 1)
        assert (e.value.http_status, e.value.message) == (
            400, "Unrecognized servable version label: nope")
    finally:
        server.stop(grace=5)


def test_config_re_reads_move_labels_and_keep_the_old_config_on_bad_edits(
        base, tmp_path, caplog):
    path = write(tmp_path / "m.config", config_text(base))
    server = serve(path, model_config_file_poll_wait_seconds=0.1)
    models = server.core.models
    manager = models.manager(MODEL)

    def reads_after(n):   # waits for n more complete re-reads of the file
        start = models.config_reads
        return wait_for(lambda: models.config_reads >= start + n, 30)

    try:
        assert wait_for(lambda: manager.available_versions == [1, 2], 60)
        write(path, config_text(base, labels={"stable": 1, "canary": 2}))
        assert wait_for(lambda: models.labels(MODEL) == {"stable": 1, "canary": 2}, 30)
        assert grpc_version(server, label="canary") == 2
        write(path, config_text(base, labels={"stable": 1, "canary": 1}))
        assert wait_for(lambda: models.labels(MODEL)["canary"] == 1, 30)
        assert grpc_version(server, label="canary") == 1

        with caplog.at_level(logging.ERROR, logger="vidgen.serving"):
            write(path, "model_config_list { config { nmae: 1 } }")
            assert reads_after(3)
            write(path, config_text(base, labels={"stable": 1, "canary": 3}))
            assert reads_after(3)
        refusals = [r.getMessage() for r in caplog.records if "was not applied" in r.message]
        assert len(refusals) == 2, refusals   # once per problem, not once per re-read
        assert 'no field named "nmae"' in refusals[0]
        assert ("Request to assign label to version 3 of model vidgen, which is not currently "
                "available for inference") in refusals[1]
        assert models.labels(MODEL) == {"stable": 1, "canary": 1}   # still in force

        # A policy change applies too: version 2 is no longer named, so it stops serving.
        write(path, config_text(base, policy="specific { versions: 1 }",
                                labels={"stable": 1}))
        assert wait_for(lambda: manager.available_versions == [1], 30)
        assert manager.version_state(2).state == "END"
        assert grpc_version(server) == 1
    finally:
        server.stop(grace=5)


def test_reload_config_request_replaces_the_config(base):
    server = Server(base, MODEL, port=0, rest_api_port=None, poll_interval=POLL)
    server.start()
    assert server.wait_for_model(60)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    try:
        assert grpc_version(server) == 2

        def reload(text):
            request = model_management_pb2.ReloadConfigRequest()
            request.config.CopyFrom(model_config.parse_model_config(text))
            return stub.HandleReloadConfigRequest(request, timeout=60)

        with pytest.raises(grpc.RpcError) as e:   # a label on version 1, which is not served
            reload(config_text(base, policy="all {}", labels={"stable": 1}))
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION, "Request to assign label to version 1 of "
            "model vidgen, which is not currently available for inference")
        with pytest.raises(grpc.RpcError) as e:
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(),
                                           timeout=30)
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "ServerModelConfig type not supported by "
            "HandleReloadConfigRequest. Only ModelConfigList is currently supported")
        assert server.core.models.names == [MODEL]   # both refused: nothing changed

        other = (f'config {{ name: "other" base_path: "{base}" model_platform: "tensorflow" '
                 'model_version_policy { all {} } }')
        response = reload(config_text(base, policy="latest { num_versions: 2 }",
                                      labels={"stable": 2}, extra=other))
        assert response.status.error_code == 0
        other_manager = server.core.models.manager("other")
        assert other_manager.loaded.is_set()   # the answer came once the new model served
        assert wait_for(lambda: other_manager.available_versions == [1, 2], 60)
        manager = server.core.models.manager(MODEL)
        assert wait_for(lambda: manager.available_versions == [1, 2], 60)
        assert grpc_version(server, name="other") == 2
        assert grpc_version(server, name="other", version=1) == 1
        assert grpc_version(server, label="stable") == 2
    finally:
        channel.close()
        server.stop(grace=5)
