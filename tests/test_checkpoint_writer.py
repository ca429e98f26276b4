"""The background checkpoint writer (orchestrator/checkpoint_writer.py): order, errors, drain; no Ray."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from messages.errors import StorageError
from orchestrator.checkpoint_writer import CheckpointWriter


def test_jobs_run_one_at_a_time_in_order_off_the_callers_thread() -> None:
    writer = CheckpointWriter()
    gate = threading.Event()
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        if i == 0:
            gate.wait(5)
        seen.append((i, threading.current_thread().name))
        return i

    futures = [writer.submit(lambda i=i: job(i)) for i in (0, 1, 2)]
    assert not futures[0].done()  # the caller went on while the first job waits
    gate.set()
    writer.drain()
    assert [f.result() for f in futures] == [0, 1, 2]
    assert [i for i, _ in seen] == [0, 1, 2]
    assert {name for _, name in seen} != {threading.current_thread().name}
    writer.close()


def test_a_failed_write_drops_the_later_jobs_and_surfaces_at_the_next_sync_point(tmp_path: Path) -> None:
    writer = CheckpointWriter()
    written: list[int] = []

    def fail() -> None:
        raise StorageError(tmp_path / "x.arrow", errno.ENOSPC, "No space left on device")

    writer.submit(lambda: written.append(0))
    writer.submit(fail)
    later = writer.submit(lambda: written.append(2))
    with pytest.raises(StorageError, match="No space left"):
        writer.drain()
    assert written == [0] and later.exception() is not None  # never an update recorded after a missing one
    with pytest.raises(StorageError):
        writer.submit(lambda: written.append(3))
    writer.drain(raise_error=False)
    writer.close()
    assert written == [0]


def test_without_a_background_thread_each_job_runs_at_once_and_its_error_is_raised_there(tmp_path: Path) -> None:
    writer = CheckpointWriter(background=False)
    where = writer.submit(lambda: threading.current_thread().name)
    assert where.done() and where.result() == threading.current_thread().name

    def fail() -> None:
        raise StorageError(tmp_path / "x.arrow", errno.EROFS, "Read-only file system")

    with pytest.raises(StorageError, match="Read-only"):
        writer.submit(fail)
