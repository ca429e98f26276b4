"""One writer per run directory: a lock file held for the life of a run or resume.

``<out>/.serket-ray.lock`` holds the owner's pid, host, process start time and
command as JSON, and its owner keeps an exclusive ``fcntl.flock`` on it while it
runs.  The kernel drops that lock when the owner dies, however it dies, so on the
same host a lock file whose flock is free was left by a dead process: it is taken
over with a warning.  A lock file written on another host cannot be checked from
here (its process may be alive there); it is refused unless the caller forces it
(``--force-unlock``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from messages.errors import LockError, StorageError

log = logging.getLogger(__name__)

LOCK_NAME = ".serket-ray.lock"

#: Resolved run directory -> (lock, times taken) for the locks this process holds.
_HELD: dict[Path, list[Any]] = {}


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} ({info.get('command', '?')}, started {when})"


class RunLock:
    """The exclusive lock of one run directory (see the module docstring).

    Parameters
    ----------
    out_dir : path
        The run directory; created if missing.
    command : str
        What this process does there (recorded in the lock file).
    force : bool
        Take over a lock written on another host (``--force-unlock``).  A lock
        held by a live process on this host is never taken.

    Raises
    ------
    LockError
        Another live process holds the directory, or a process on another host
        left a lock and ``force`` is false.
    StorageError
        The lock file cannot be written.
    """

    def __init__(self, out_dir: str | os.PathLike[str], command: str = "serket-ray", force: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self.created_dir = not self.out_dir.exists()
        self._fd: int | None = None
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._acquire(command, force)
        except OSError as exc:
            self._close()
            if self.created_dir:
                _rmdir_quietly(self.out_dir)
            raise StorageError.wrap(exc, self.path) from None
        except BaseException:
            self._close()
            if self.created_dir:
                _rmdir_quietly(self.out_dir)
            raise

    def _acquire(self, command: str, force: bool) -> None:
        host = socket.gethostname()
        for _ in range(10):  # a holder may remove the file between our open and our flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                info = _read(self.path)
                raise LockError(
                    f"{self.out_dir} is in use by {_describe(info)}; wait for it to end or stop it first"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)  # we locked a file its holder had just removed: try again
        else:  # pragma: no cover - ten races in a row
            raise LockError(f"{self.out_dir}: could not take the lock {self.path}; another process keeps replacing it")
        self._fd = fd
        old = _read(self.path)
        if old:
            if old.get("host") != host and not force:
                raise LockError(
                    f"{self.out_dir} is locked by {_describe(old)}; if that process is gone, pass --force-unlock"
                )
            why = "that process is gone" if old.get("host") == host else "--force-unlock"
            log.warning("%s: taking over the lock of %s (%s)", self.out_dir, _describe(old), why)
        mine = {"pid": os.getpid(), "host": host, "started": time.time(), "command": command}
        data = (json.dumps(mine) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            log.debug("could not remove %s", self.path, exc_info=True)
        self._close()
        if self.created_dir:  # a run refused before it wrote anything leaves no directory behind
            _rmdir_quietly(self.out_dir)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    try:
        info = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"command": "unreadable lock file"}
    return info if isinstance(info, dict) else {}


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


class hold:  # noqa: N801 - used like a function: ``with hold(out): ...``
    """Hold the lock of ``out_dir`` for a ``with`` block; re-entrant within one process.

    A process that already holds the directory (the CLI, then the orchestrator it
    calls) takes it again without touching the file.
    """

    def __init__(self, out_dir: str | os.PathLike[str], command: str | None = None, force: bool = False) -> None:
        self.key = Path(out_dir).resolve()
        self.out_dir = Path(out_dir)
        self.command = command if command is not None else "serket-ray " + " ".join(sys.argv[1:2])
        self.force = force

    def __enter__(self) -> RunLock:
        entry = _HELD.get(self.key)
        if entry is not None and entry[0].held:
            entry[1] += 1
            return entry[0]
        lock = RunLock(self.out_dir, self.command, self.force)
        _HELD[self.key] = [lock, 1]
        return lock

    def __exit__(self, *exc: object) -> None:
        entry = _HELD.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            entry[0].release()
            del _HELD[self.key]


def release_all() -> None:
    """Release every lock this process holds (the CLI's last step, however it ends)."""
    for entry in list(_HELD.values()):
        entry[0].release()
    _HELD.clear()
