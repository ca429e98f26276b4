"""Checkpoints written off the critical path: one background thread, in the order they were submitted.

:class:`orchestrator.session.Session` hands each finished update's checkpoint
(its Arrow files, text exports, then ``run.json``) to a :class:`CheckpointWriter`
and goes on to the next update, so writing one update overlaps computing the
next.  Everything :mod:`orchestrator.checkpoint` promises still holds, because
the jobs are the same writes, one at a time, in order:

* every round directory is built under a temporary name and renamed into place,
  and ``run.json`` is rewritten after it, so the manifest only ever names
  complete files, and updates appear in it in the order they ran;
* a process killed mid-write (SIGKILL) leaves at most a temporary directory,
  which resume deletes;
* a failed write (:class:`messages.errors.StorageError`) stops the writer: the
  jobs queued after it are dropped (never an update recorded after a missing
  one), and the error is raised in the caller's thread at the next sync point
  (:meth:`check`, :meth:`submit` or :meth:`drain`).

The caller drains the writer before anything that reads the checkpoints back
(restarting a worker) and before it gives up the run's lock.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class _DroppedError(Exception):
    """A job not run because an earlier one failed."""


class CheckpointWriter:
    """Runs checkpoint jobs on one background thread, first in, first out.

    Parameters
    ----------
    background : bool
        False runs each job at once in the caller's thread (its error raised by
        :meth:`submit`): for workers that compute in this process (the local
        backend), where a writer thread would only compete with them for the
        interpreter lock (the text exports format in Python).
    """

    def __init__(self, background: bool = True) -> None:
        self.background = bool(background)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[concurrent.futures.Future[object]] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue ``job`` after the jobs already submitted; its future holds what it returns.

        Raises
        ------
        Exception
            The error of an earlier job that failed (nothing is queued then).
        """
        self.check()
        if not self.background:
            done: concurrent.futures.Future[T] = concurrent.futures.Future()
            done.set_result(self._run(job))
            return done
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="serket-ray-ckpt")
        future = self._pool.submit(self._run, job)
        self._pending.append(future)  # type: ignore[arg-type]
        return future

    def _run(self, job: Callable[[], T]) -> T:
        with self._lock:
            if self._error is not None:
                raise _DroppedError()
        try:
            return job()
        except BaseException as exc:
            with self._lock:
                self._error = self._error or exc
            raise

    def check(self) -> None:
        """Raise the error of a job that failed, if one has (without waiting for the others)."""
        self._pending = [f for f in self._pending if not f.done()]
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def drain(self, raise_error: bool = True) -> None:
        """Wait until every submitted job has finished; then raise the first failure (``raise_error``)."""
        concurrent.futures.wait(self._pending)  # a job's failure is kept in self._error; a signal here propagates
        self._pending = []
        if raise_error:
            self.check()

    def close(self) -> None:
        """Wait for the jobs and stop the thread; errors are left to :meth:`drain`."""
        self.drain(raise_error=False)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
