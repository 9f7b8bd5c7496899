"""Errors raised by mpq-gym. Each message names what went wrong *and* the fix."""
from __future__ import annotations


class MpqGymError(Exception):
    """Base class of every error mpq-gym raises on bad input."""


class UnknownWorkloadError(MpqGymError, ValueError):
    """A workload name that is not in the registry."""


class MissingDataError(MpqGymError, FileNotFoundError):
    """The data a workload needs could not be found."""


class MissingWeightsError(MpqGymError, FileNotFoundError):
    """Pretrained weights are absent and could not be downloaded."""


class ConfigError(MpqGymError, ValueError):
    """A malformed quantization configuration or an unsupported bit-width."""


class CacheCorruptedError(MpqGymError, RuntimeError):
    """A cache file exists but cannot be read back."""


class ActionError(MpqGymError, ValueError):
    """An env action outside the action space (or masked out)."""


class ResetNeeded(MpqGymError, RuntimeError):
    """``step()`` on an env whose episode has not started or has ended."""


class InputFileError(MpqGymError, ValueError):
    """A file the user named (results, run folder, table, weights) is missing, torn or of the wrong kind."""


class UntrustedRunError(InputFileError):
    """A run folder not created on this machine whose files are pickles (they can run code when loaded)."""


class CacheIntegrityWarning(UserWarning):
    """A damaged cache file was found; it is discarded and its entry recomputed (never used)."""
