"""The machinery under `vidgen.config`: JSON values checked against dataclass fields, overrides.

The schema (`vidgen.config`) says what a configuration holds; this module
turns plain JSON-like values into those frozen dataclasses, converting only
where nothing is lost (an integral float to an int, a list to a tuple), and
applies `section.key=value` overrides to a nested dictionary, with errors
that name the bad key and the valid ones.

Example:

    values = apply_to_tree({"data": {"frame_size": 64}}, ["data.frame_size=32"])
    cfg = from_dict(Config, values, prefix="")
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from vidgen.errors import ConfigError


def from_dict(cls, values: Any, prefix: str = ""):
    """An instance of the dataclass `cls` from a JSON object, every field type-checked.

    Nested dataclass fields take nested objects; `prefix` ("data.") names the
    section in errors. Unknown keys are refused, naming the valid ones.
    """
    if not isinstance(values, dict):
        raise ConfigError(
            f"Config section {prefix.rstrip('.') or '<root>'} must be a JSON object. "
            f"Received: {values!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(
            f"Unknown config key {prefix}{unknown[0]}. Valid keys here: "
            f"{', '.join(prefix + k for k in sorted(hints))}")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = from_dict(kind, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(value, kind, f"{prefix}{name}")
    return cls(**kwargs)


def coerce(value: Any, kind: Any, key: str) -> Any:
    """Checks `value` against the annotated type `kind`, converting where lossless."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list. Received: {value!r}")
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(coerce(v, item, key) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false. Received: {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} expects an integer. Received: {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} expects a number. Received: {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string. Received: {value!r}")
    raise ConfigError(f"{key} has an unsupported type {kind!r}")


def parse_value(text: str) -> Any:
    """`--set` values are JSON (`8`, `true`, `[1, 2]`); anything else is a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_to_tree(values: dict[str, Any], overrides: Sequence[str] | None,
                  moved: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`values` (a nested dict, changed in place and returned) with "a.b=value" overrides.

    Values are parsed as JSON first, except for string fields, which take the
    text as it is (so `data.source=123` stays a path). `moved` maps keys that
    moved ("train.strategy") to their new name, for the error message.
    """
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} must look like section.key=value, "
                "for example data.frame_size=64.")
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        if moved and dotted in moved:
            raise ConfigError(f"Config key {dotted!r} is now {moved[dotted]!r}. "
                              f"Received: {item!r}; use --set {moved[dotted]}={text.strip()}")
        parts = dotted.split(".")
        node = values
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                here = ".".join(parts[:depth])
                valid = sorted(k for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(
                    f"Unknown config section {dotted!r}: {part!r} is not a section"
                    f"{' of ' + here if here else ''}. Valid sections: {', '.join(valid)}")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node or isinstance(node[leaf], dict):
            prefix = ".".join(parts[:-1])
            valid = sorted(f"{prefix}.{k}" if prefix else k for k in node)
            raise ConfigError(
                f"Unknown config key {dotted!r}. Valid keys: {', '.join(valid)}")
        text = text.strip()
        node[leaf] = text if isinstance(node[leaf], str) else parse_value(text)
    return values
