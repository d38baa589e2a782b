"""Errors a user can cause, reported in one sentence at the boundary.

A library function's error names the arguments it was given (`run_dir`);
on a command line the user typed flags (`--run-dir`). An `ArgumentError`
is written once, each argument it names in braces, and the command lines
(`vidgen.cli_common.run_command`) spell those as the flags that set them.

Example:

    error = ArgumentError("{horizon} must be positive. Received: 0", "horizon")
    str(error)                                # 'horizon must be positive. Received: 0'
    error.with_flags({"horizon": "--horizon"})   # '--horizon must be positive. Received: 0'

A dotted name is a config key: `with_flags` spells `{data.fps}` as `--set data.fps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class VidgenError(ValueError):
    """Base class of every error caused by user input (paths, data, config)."""


class ConfigError(VidgenError):
    """A configuration key or value is invalid."""


class DataError(VidgenError):
    """A data source is missing, unreadable, or of the wrong layout."""


class ArgumentError(VidgenError):
    """A bad argument of a library function, named so that a command line can name its flag.

    Args:
        template: the message, each argument it names written `{name}`
            (other braces are left as they are).
        *arguments: the argument names in `template`.
    """

    def __init__(self, template: str, *arguments: str):
        self.template = template
        self.arguments = arguments
        super().__init__(self._spelled(lambda name: name))

    def _spelled(self, spell: Callable[[str], str]) -> str:
        message = self.template
        for name in self.arguments:
            message = message.replace("{" + name + "}", spell(name))
        return message

    def with_flags(self, flags: Mapping[str, str] | None = None) -> str:
        """The message naming flags: `flags[name]`, else `--name-with-dashes`.

        A dotted name is a config key (`data.fps`), which a command line sets with
        `--set data.fps=...`: it is spelled `--set data.fps` unless `flags` maps it.
        """
        flags = flags or {}

        def spell(name: str) -> str:
            if name in flags:
                return flags[name]
            return f"--set {name}" if "." in name else "--" + name.replace("_", "-")

        return self._spelled(spell)


class ConfigArgumentError(ArgumentError, ConfigError):
    """A bad configuration passed as an argument: caught as either kind."""


class DataArgumentError(ArgumentError, DataError):
    """Data that does not fit the arguments or config keys it was read with: either kind.

    Example:

        error = DataArgumentError("so use {data.fps}=12 or lower.", "data.fps")
        str(error)            # 'so use data.fps=12 or lower.'
        error.with_flags()    # 'so use --set data.fps=12 or lower.'
    """
