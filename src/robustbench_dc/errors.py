"""Exceptions for problems the user can fix; their message says how. The CLI prints them and exits non-zero."""


class UserError(Exception):
    """Bad input, missing data or a broken file: not a bug in the suite."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset is not where we looked; the message lists the places and how to get it."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, truncated or does not match what was asked for."""


class ConfigError(UserError, ValueError):
    """An invalid model, operator or option value (a ``ValueError`` too, as PyTorch raises for bad arguments)."""
