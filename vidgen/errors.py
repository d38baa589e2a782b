"""Errors a user can cause, reported in one sentence at the boundary."""


class VidgenError(ValueError):
    """Base class of every error caused by user input (paths, data, config)."""


class ConfigError(VidgenError):
    """A configuration key or value is invalid."""


class DataError(VidgenError):
    """A data source is missing, unreadable, or of the wrong layout."""
