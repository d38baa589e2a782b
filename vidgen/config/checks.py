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
