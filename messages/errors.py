"""The project's own exception types.  All are ``ValueError`` subclasses so that
callers catching ``ValueError`` keep working; the CLI turns them into one line
and exit status 2."""

from __future__ import annotations


class SerketRayError(ValueError):
    """Base class of every error the project raises about its inputs."""


class MessageError(SerketRayError):
    """A message field does not have the shape, dtype or values it should."""


class ConfigError(SerketRayError):
    """A hyperparameter or option is out of range or of the wrong type."""


class DataError(SerketRayError):
    """Input data or labels cannot be used: unreadable, wrong shape, non-finite, ..."""


class GraphError(SerketRayError):
    """Modules are connected in a way the orchestrator cannot run."""


class CheckpointError(SerketRayError):
    """A checkpoint or output directory is missing, damaged or belongs to another run."""
