"""One writer per run directory: a lock file held for the life of a run or resume.

``<out>/.serket-ray.lock`` holds the owner's pid, host, process start time and
command as JSON, and its owner keeps an exclusive ``fcntl.flock`` on it while it
runs.  The kernel drops that lock when the owner dies, however it dies, so on the
same host a lock file whose flock is free was left by a dead process: it is taken
over with a warning.  A lock file written on another host cannot be checked from
here (its process may be alive there); it is refused unless the caller forces it
(``--force-unlock``).

On a remote file system (``s3://bucket/run``, :mod:`orchestrator.storage`) there
is no flock: the lock is an object, ``<out>/.serket-ray.lock``, with the same
JSON, written whole when a run starts and deleted when it ends.  It is
**advisory**: serket-ray's own processes honour it (a live owner on this host,
or any owner on another host unless ``--force-unlock``, is refused), but two
processes that start within the same instant can both find it free, since an
object store has no atomic create-if-absent here; after writing its lock each
process reads it back and stops if another one's is there.  A lock object left by
a process killed on this host is taken over (its pid is gone), with a warning.
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
from orchestrator import storage
from orchestrator.storage import RemotePath

log = logging.getLogger(__name__)

LOCK_NAME = ".serket-ray.lock"

#: Resolved run directory -> (lock, times taken) for the locks this process holds.
_HELD: dict[Path | RemotePath, list[Any]] = {}


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


class ObjectLock:
    """The advisory lock of a run on a remote file system (see the module docstring).

    Parameters
    ----------
    out_dir : RemotePath
    command : str
    force : bool
        Take over a lock written on another host.

    Raises
    ------
    LockError
        A live process on this host holds the run, a process on another host left
        its lock and ``force`` is false, or another process wrote its lock at the
        same time.
    StorageError
        The lock object cannot be written.
    """

    def __init__(self, out_dir: RemotePath, command: str = "serket-ray", force: bool = False) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LOCK_NAME
        self._held = False
        self.created_dir = not out_dir.exists()
        host = socket.gethostname()
        old = _read_remote(self.path)
        if old:
            same_host = old.get("host") == host
            mine_before = same_host and old.get("pid") == os.getpid()  # left by this process (its delete failed)
            if same_host and not mine_before and _alive(old.get("pid")):
                raise LockError(f"{out_dir} is in use by {_describe(old)}; wait for it to end or stop it first")
            if not same_host and not force:
                raise LockError(
                    f"{out_dir} is locked by {_describe(old)} (an advisory lock object: it cannot be checked from "
                    "here); if that process is gone, pass --force-unlock"
                )
            why = "that process is gone" if same_host else "--force-unlock"
            log.warning("%s: taking over the lock of %s (%s)", out_dir, _describe(old), why)
        mine = {"pid": os.getpid(), "host": host, "started": time.time(), "command": command, "advisory": True}
        storage.put(self.path, (json.dumps(mine) + "\n").encode())
        self._held = True
        back = _read_remote(self.path)
        if (back.get("pid"), back.get("host")) != (mine["pid"], host):
            self._held = False  # another process wrote its lock just after ours: it is the owner
            raise LockError(f"{out_dir} is in use by {_describe(back)}; wait for it to end or stop it first")

    def release(self) -> None:
        """Delete the lock object (idempotent)."""
        if not self._held:
            return
        self._held = False
        try:
            self.path.unlink(missing_ok=True)
            if self.created_dir and not any(self.out_dir.walk()):
                self.out_dir.remove_tree()  # the empty directory markers an object store keeps after a delete
        except OSError:
            log.debug("could not remove %s", self.path, exc_info=True)

    @property
    def held(self) -> bool:
        return self._held


def _read_remote(path: RemotePath) -> dict[str, Any]:
    """A remote lock object's JSON; ``{}`` when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StorageError.wrap(exc, path) from None
    try:
        info = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"command": "unreadable lock file"}
    return info if isinstance(info, dict) else {}


def _alive(pid: object) -> bool:
    """Whether ``pid`` is a live process on this host."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self.out_dir = storage.resolve(out_dir)
        self.key = self.out_dir.resolve()
        self.command = command if command is not None else "serket-ray " + " ".join(sys.argv[1:2])
        self.force = force

    def __enter__(self) -> RunLock | ObjectLock:
        entry = _HELD.get(self.key)
        if entry is not None and entry[0].held:
            entry[1] += 1
            return entry[0]
        lock: RunLock | ObjectLock = (
            ObjectLock(self.out_dir, self.command, self.force)
            if isinstance(self.out_dir, RemotePath)
            else RunLock(self.out_dir, self.command, self.force)
        )
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
