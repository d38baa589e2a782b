"""The checks the config sections share: positive and non-negative fields, named in errors."""

from __future__ import annotations

from vidgen.errors import ConfigError


def positive(section, *names: str) -> None:
    """Raises ConfigError unless every field `names` of `section` is above 0."""
    for name in names:
        value = getattr(section, name)
        if value <= 0:
            raise ConfigError(
                f"{section_name(section)}.{name} must be positive. Received: {value}")


def non_negative(section, *names: str) -> None:
    """Raises ConfigError unless every field `names` of `section` is at least 0."""
    for name in names:
        value = getattr(section, name)
        if value < 0:
            raise ConfigError(
                f"{section_name(section)}.{name} must be >= 0. Received: {value}")


def section_name(section) -> str:
    """"data" for a DataConfig: how keys are written in `--set` and config.json."""
    return type(section).__name__.removesuffix("Config").lower()


def one_of(section, name: str, choices: tuple[str, ...]) -> None:
    """Raises ConfigError unless field `name` of `section` is one of `choices`."""
    value = getattr(section, name)
    if value not in choices:
        quoted = [repr(c) for c in choices]
        allowed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        key = f"{section_name(section)}.{name}"
        raise ConfigError(f"{key} must be {allowed}. Received: {key}={value!r}")
