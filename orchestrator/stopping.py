"""Stopping a run cleanly: on SIGINT / SIGTERM, and saying what was kept.

While :func:`stop_on_signals` is active, the first SIGINT or SIGTERM raises
:class:`Interrupted` in the main thread wherever it is -- training the VAE in
this process, writing a checkpoint, between two polls of an actor.  Inside a
call into Ray's C core (see :func:`deferred`), where an exception raised by a
signal handler would be lost or turned into a ``SystemError``, the signal is
only recorded and raised as soon as that call returns; the executor keeps those
calls short (waits are cut into slices of a quarter second).  It is a
``BaseException`` (like ``KeyboardInterrupt``), so the retry and clean-up code
that catches ``Exception`` lets it through, while ``finally`` blocks still kill
the run's actors and remove its placement group.  What is on disk stays
consistent wherever the exception lands: every checkpoint and ``run.json`` is
written to a temporary name and renamed, and a half-built round directory is
removed (or, if even that is cut short, never read: resume deletes it).

A second signal while stopping ends the process at once (``os._exit``): the
last complete update is intact all the same, since nothing is renamed into
place half written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.storage import resolve

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A run was stopped by a signal.

    Attributes
    ----------
    signum : int
    exit_status : int
        ``128 + signum``: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.exit_status = 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


#: The handler of the active :func:`stop_on_signals`, re-installed after ``ray.init``
#: (which installs its own SIGTERM handler in the driver).
_ACTIVE: list[Any] = []

#: ``depth`` of nested :func:`deferred` blocks in the main thread, the signal that
#: arrived inside one (``pending``), and whether a stop was asked for at all.
_STATE: dict[str, Any] = {"depth": 0, "pending": None, "requested": None}


def requested() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _STATE["requested"]


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal back while the block runs; raise :class:`Interrupted` right after it.

    Wrap calls into foreign C code (Ray's core) that cannot pass on an exception
    raised by a signal handler.  Nested blocks defer until the outermost one ends;
    outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STATE["depth"] += 1
    try:
        yield
    finally:
        _STATE["depth"] -= 1
    if _STATE["depth"] == 0 and _STATE["pending"] is not None:
        signum, _STATE["pending"] = _STATE["pending"], None
        raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals(second_message: str = "") -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into :class:`Interrupted`; exit at once on a second.

    Parameters
    ----------
    second_message : str
        Line written to stderr when a second signal ends the process at once.

    Only the main thread can install signal handlers; elsewhere this does nothing.
    The handlers stay installed after an interrupt (so that a signal during the
    clean-up that follows still ends the process at once) and are restored after
    a normal exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _STATE["requested"] is not None:  # a second signal while stopping: stop now
            if second_message:
                os.write(2, (second_message.format(signal=signal.Signals(signum).name) + "\n").encode())
            os._exit(128 + signum)
        _STATE["requested"] = signum
        if _STATE["depth"] > 0:
            _STATE["pending"] = signum  # raised when the deferred call returns
            return
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    _ACTIVE.append(handler)
    try:
        yield
    finally:
        _ACTIVE.remove(handler)
        if _STATE["requested"] is None:
            for s, old in previous.items():
                signal.signal(s, old)


def reinstall() -> None:
    """Put the active :func:`stop_on_signals` handler back (after a library replaced it)."""
    if _ACTIVE and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _ACTIVE[-1])


@dataclasses.dataclass(frozen=True)
class Kept:
    """Where a stopped run stands, read from its ``run.json`` on disk (what a resume reads).

    Attributes
    ----------
    done, total : int or None
        Updates recorded as complete, and those the run was started for.
    next : str or None
        The first update not kept, ``"round 3, module002_gmm"``.
    unreadable : bool
        ``run.json`` is there but could not be read back (remote storage that stopped answering).
    """

    done: int | None
    total: int | None
    next: str | None
    unreadable: bool = False

    @property
    def resumable(self) -> bool:
        return self.done is not None

    @property
    def complete(self) -> bool:
        return self.done is not None and self.total is not None and self.done >= self.total

    def where(self) -> str:
        """``"in round 3, module002_gmm; 7 of 15 updates are kept"`` and the like."""
        if self.unreadable:
            return "where its run.json could not be read back (the storage does not answer)"
        if self.done is None:
            return "before anything was written"
        of = f" of {self.total}" if self.total is not None else ""
        if self.complete:
            return f"after the run's last update ({self.done}{of} updates are kept)"
        return f"in {self.next}; {self.done}{of} updates are kept"


def what_was_kept(out_dir: str | os.PathLike[str] | None) -> Kept:
    """Where the run in ``out_dir`` stands (see :class:`Kept`)."""
    try:
        manifest = json.loads((resolve(out_dir, probe=False) / "run.json").read_text()) if out_dir is not None else None
    except FileNotFoundError:
        manifest = None
    except OSError:  # there, but unreadable: a remote store that stopped answering
        return Kept(None, None, None, unreadable=not isinstance(resolve(out_dir, probe=False), Path))
    except ValueError:  # not JSON; ConfigError (a URI pyarrow cannot read) is a ValueError too
        manifest = None
    if not isinstance(manifest, dict):
        return Kept(None, None, None)
    learnable = [name for name, m in manifest.get("modules", {}).items() if m.get("kind") != "observation"]
    done = len(manifest.get("updates", []))
    target = manifest.get("target_rounds")
    total = target * len(learnable) if isinstance(target, int) and learnable else None
    nxt = f"round {done // len(learnable) + 1}, {learnable[done % len(learnable)]}" if learnable else None
    return Kept(done, total, nxt)
