"""TF Serving's model config: the `ModelServerConfig` text proto, its checks and version policies.

`--model_config_file` names a text-format `tensorflow.serving.ModelServerConfig`:

    model_config_list {
      config {
        name: "vidgen"
        base_path: "/models/vidgen"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }

The checks and their messages are TF Serving's (model_servers/server_core.cc):
names are unique, the platform is "tensorflow", and every base_path is
absolute (TF Serving resolves relative paths only against
`model_config_list_root_dir`, which its command line does not expose, so a
relative path is refused rather than guessed). The policies follow
file_system_storage_path_source.cc: `latest` serves the `num_versions`
highest versions (at least 1), `all` every version, `specific` the listed
ones that exist.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ConfigFileError, ServingError, invalid, read_config_text

ModelServerConfig = model_server_config_pb2.ModelServerConfig
PLATFORM = "tensorflow"
POLICIES = ("latest", "all", "specific")

_EXAMPLE = ('model_config_list { config { name: "NAME" base_path: "/abs/BASE/NAME" '
            'model_platform: "tensorflow" } }')


def single_model_config(name: str, base_path: str) -> ModelServerConfig:
    """The config TF Serving builds for --model_name/--model_base_path (policy latest 1)."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = PLATFORM
    return config


def parse_model_config(text: str, source: str = "<string>") -> ModelServerConfig:
    """A ModelServerConfig from its text format.

    Args:
        text: the file's contents.
        source: where it came from, for the error message.

    Raises:
        ConfigFileError: the text is not a ModelServerConfig; the message says what was
            expected (an unknown version policy lists the three TF Serving has).
    """
    try:
        return text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as e:
        detail = str(e)
        if "ServableVersionPolicy" in detail:
            expected = ("a version policy of latest { num_versions: N }, all {} or "
                        "specific { versions: N ... }")
        else:
            expected = f"a text-format ModelServerConfig such as {_EXAMPLE}"
        raise ConfigFileError(f"{source}: expected {expected}, received a parse error: "
                              f"{detail}") from None


def read_model_config(path: str) -> ModelServerConfig:
    """Reads and parses the text ModelServerConfig at `path` (ConfigFileError if it cannot)."""
    return parse_model_config(read_config_text(path, "ModelServerConfig"), path)


def validate(config: ModelServerConfig) -> None:
    """TF Serving's checks of a ModelServerConfig, with its messages (INVALID_ARGUMENT).

    Only `model_config_list` is accepted: `custom_model_config` needs a loader compiled
    into the server, which TF Serving's own binary does not have either.
    """
    if config.WhichOneof("config") == "custom_model_config":
        raise invalid("ModelServer does not yet support custom model config.")
    names = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise invalid(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if not model.name:
            raise invalid("Expected every model in the config to have a name, received an "
                          f"empty name for base_path {model.base_path!r}")
        platform = platform_of(model)
        if platform != PLATFORM:
            raise invalid(f"Model {model.name} requests unsupported platform {platform}")
        if not model.base_path.startswith("/") and "://" not in model.base_path:
            raise invalid(f"Expected model {model.name} to have an absolute path or URI; got "
                          f"base_path()={model.base_path}")
        if "://" in model.base_path:
            raise invalid(f"Model {model.name}: this server reads local directories only, "
                          f"received base_path()={model.base_path}")


def platform_of(model) -> str:
    """The model's platform, with TF Serving's errors for the deprecated model_type field."""
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise invalid("Illegal setting both ModelServerConfig::model_type (deprecated) "
                          "and ModelServerConfig::model_platform.")
        if model.model_type == model_server_config_pb2.TENSORFLOW:
            return PLATFORM
        raise invalid(f"ModelServerConfig::model_type choice {model.model_type} not supported.")
    if not model.model_platform:
        raise invalid("Illegal setting neither ModelServerConfig::model_type (deprecated) "
                      "nor ModelServerConfig::model_platform.")
    return model.model_platform


def policy_name(policy) -> str:
    """'latest', 'all' or 'specific' (an unset policy is TF Serving's default, latest)."""
    return policy.WhichOneof("policy_choice") or "latest"


def aspired_versions(policy, versions: Iterable[int]) -> set[int]:
    """The versions a policy wants served, out of those present.

    Args:
        policy: a FileSystemStoragePathSourceConfig.ServableVersionPolicy.
        versions: the version numbers that could be loaded.
    """
    present = sorted(set(versions))
    name = policy_name(policy)
    if name == "all":
        return set(present)
    if name == "specific":
        return set(present) & set(policy.specific.versions)
    n = max(policy.latest.num_versions, 1)
    return set(present[-n:])


def describe(config: ModelServerConfig) -> str:
    """One line per model: name, base path, policy and labels (for the start-up banner)."""
    lines = []
    for model in config.model_config_list.config:
        policy = model.model_version_policy
        name = policy_name(policy)
        if name == "latest":
            name = f"latest {max(policy.latest.num_versions, 1)}"
        elif name == "specific":
            name = "specific " + ",".join(str(v) for v in policy.specific.versions)
        labels = ", ".join(f"{k}->{v}" for k, v in sorted(model.version_labels.items()))
        lines.append(f"{model.name} from {model.base_path} (versions: {name}"
                     + (f"; labels {labels})" if labels else ")"))
    return "; ".join(lines)


def unavailable_label(model: str, version: int) -> ServingError:
    """TF Serving's refusal of a label on a version that is not serving."""
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {model}, "
                        "which is not currently available for inference")
