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


class LockError(SerketRayError):
    """The run directory is in use by another process (or was left locked on another host)."""


class StorageError(OSError):
    """A file of the run could not be written: no space left, read-only, over quota, I/O error.

    Attributes
    ----------
    path : str
        The file (or directory) that could not be written.
    errno : int or None
    strerror : str
        The cause, as the operating system words it.
    """

    def __init__(self, path: object, errno: int | None, strerror: str) -> None:
        super().__init__(errno, strerror, str(path))
        self.path = str(path)

    def __str__(self) -> str:
        import errno as errno_names

        code = errno_names.errorcode.get(self.errno, "") if self.errno else ""
        return f"cannot write {self.path}: {self.strerror}" + (f" ({code})" if code else "")

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str]]:
        """Pickle as its own arguments (``OSError``'s would pass errno, strerror, filename), e.g. from a Ray actor."""
        return (type(self), (self.path, self.errno, self.strerror))

    @classmethod
    def wrap(cls, exc: OSError, path: object) -> StorageError:
        """The same failure, naming ``path`` (or the file the OS named) and the cause."""
        if isinstance(exc, StorageError):
            return exc
        import os

        where = exc.filename if exc.filename else path
        cause = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        return cls(where, exc.errno, cause)
