"""`DataArgumentError`: data that does not fit the arguments or config keys it was read with.

An `ArgumentError` (`vidgen.errors`) names the arguments a library function
was given and a command line spells them as flags. The arguments of a data
error are often config keys (`data.fps`): a command line sets those with
`--set data.fps=...`, so that is how `with_flags` spells a dotted name
unless the command line maps it to a flag of its own.

Example:

    error = DataArgumentError("so use {data.fps}=12 or lower.", "data.fps")
    str(error)            # 'so use data.fps=12 or lower.'
    error.with_flags()    # 'so use --set data.fps=12 or lower.'
"""

from __future__ import annotations

from collections.abc import Mapping

from vidgen.errors import ArgumentError, DataError


class DataArgumentError(ArgumentError, DataError):
    """A data error naming the arguments (or config keys, dotted) that would fix it.

    Caught as either kind. Args are those of `ArgumentError`: the message
    with each argument it names written `{name}`, then the names.
    """

    def with_flags(self, flags: Mapping[str, str] | None = None) -> str:
        """The message naming flags: `flags[name]`, `--set key` for a config key, else `--name`."""
        keys = {name: f"--set {name}" for name in self.arguments if "." in name}
        return super().with_flags({**keys, **(flags or {})})
