"""Experiment configuration: the schema, as frozen dataclasses with their checks.

A configuration is data. Models never read it; factories turn its sections
into keyword arguments. The type checking and `--set` machinery lives in
`vidgen.config.overrides`. The resolved configuration is written into every run
directory before the first step, so a run can always be reproduced.

Example:

    from vidgen.config import apply_overrides
    from vidgen.presets import get_preset

    cfg = apply_overrides(get_preset("quick"), ["data.frame_size=32"])
    cfg.to_json("runs/demo/config.json")
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from vidgen.config.data import DataConfig
from vidgen.config.model import ModelConfig
from vidgen.config.overrides import apply_to_tree, from_dict
from vidgen.config.runtime import STRATEGIES, RuntimeConfig
from vidgen.config.train import TrainConfig
from vidgen.errors import ConfigError
from vidgen.fileio import write_json_atomic

__all__ = ["STRATEGIES", "Config", "DataConfig", "ModelConfig", "RuntimeConfig", "TrainConfig",
           "apply_overrides"]


# Keys that moved between sections: config.json files written before still load.
MOVED_KEYS = {f"train.{name}": f"runtime.{name}"
              for name in ("strategy", "mixed_precision", "jit_compile")}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole experiment: one section per stage of the data flow, and the runtime."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def validate(self) -> Config:
        for field in dataclasses.fields(self):
            getattr(self, field.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        return from_dict(cls, _migrated(values), prefix="")

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (temporary file, then rename)."""
        write_json_atomic(path, self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Config:
        try:
            with open(path) as f:
                values = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"Config file {os.fspath(path)!r} does not exist.") from None
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"Config file {os.fspath(path)!r} is not valid JSON: {e}") from None
        return cls.from_dict(values)


def _migrated(values: Any) -> Any:
    """`values` with the keys of `MOVED_KEYS` in their new sections (older config.json)."""
    if not isinstance(values, dict):
        return values
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for old, new in MOVED_KEYS.items():
        (old_section, key), (new_section, new_key) = old.split("."), new.split(".")
        section = values.get(old_section)
        if isinstance(section, dict) and key in section:
            target = values.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_key, section.pop(key))
    return values


def apply_overrides(cfg: Config, overrides: list[str] | None) -> Config:
    """Returns `cfg` with `section.key=value` overrides applied, validated.

    Args:
        cfg: the base configuration (usually a preset).
        overrides: strings such as `"data.frame_size=32"` or
            `"train.batch_size=8"`; values are parsed as JSON first (string
            fields take the text as it is).

    Returns:
        A new, validated `Config`.

    Raises:
        ConfigError: naming the bad key and the valid ones, or the bad value.
    """
    return Config.from_dict(apply_to_tree(cfg.to_dict(), overrides, MOVED_KEYS)).validate()
