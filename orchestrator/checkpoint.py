"""Arrow checkpoints of every module update, written atomically.

Each update of a module goes to ``<out>/<module>/<round:03d>/``:

* one Arrow IPC file per outgoing message (``latents.arrow``, ...), see
  :meth:`messages.Message.to_table`;
* ``report.arrow``: the update's other outputs (losses, labels, transitions);
* ``state.arrow`` and, for the VAE, ``weights.pt`` (a ``state_dict``): what
  the module needs to continue;
* Serket's text files for people.

The round directory is built under a temporary name, every file is fsynced,
then the directory is renamed into place (:func:`atomic_directory`, also used
for a sharded module's parts by :mod:`orchestrator.shard_checkpoint`); the text
files of the last round are then copied beside it, each by write-to-temporary
and rename.

A write that fails (no space left, read-only file system, quota, I/O error)
raises :class:`messages.errors.StorageError` naming the file and the cause,
after removing what it had half written: the temporary round directory or the
temporary file.  Nothing a resume reads is ever left half written.

A run on a remote file system (:class:`orchestrator.storage.RemotePath`, e.g.
``s3://bucket/run``) builds each round directory the same way in a local
temporary directory, byte for byte, then uploads every file whole under its
final name (:func:`atomic_directory` again); the text copies are made on the
file system itself (a server-side copy on S3); ``run.json`` is written after
the files it names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from actors.state import WorkerState
from messages import Message
from messages.errors import StorageError
from orchestrator import storage
from orchestrator.storage import RemotePath, RunPath

FORMAT_VERSION = 1


def arrays_table(arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> pa.Table:
    """Store named arrays of any shape losslessly: one row per array (name, dtype, shape, bytes)."""
    names = sorted(arrays)
    table = pa.table(
        {
            "name": pa.array(names, pa.string()),
            "dtype": pa.array([np.asarray(arrays[k]).dtype.str for k in names], pa.string()),
            "shape": pa.array([list(np.shape(arrays[k])) for k in names], pa.list_(pa.int64())),
            "data": pa.array([np.ascontiguousarray(arrays[k]).tobytes() for k in names], pa.large_binary()),
        }
    )
    info = {"format_version": FORMAT_VERSION, "meta": meta or {}}
    return table.replace_schema_metadata({"serket_ray.arrays": json.dumps(info, default=_json_default)})


def table_arrays(table: pa.Table) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`arrays_table`."""
    info = json.loads((table.schema.metadata or {})[b"serket_ray.arrays"])
    out = {}
    for name, dtype, shape, data in zip(
        *(table.column(c).to_pylist() for c in ("name", "dtype", "shape", "data")), strict=True
    ):
        out[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
    return out, info["meta"]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def write_table(path: Path, table: pa.Table) -> None:
    """Write an Arrow IPC file and fsync it.

    Raises
    ------
    StorageError
        The file could not be written (what was written of it is removed).
    """
    with _removed_on_failure(path, path):
        with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        _fsync(path)


@contextlib.contextmanager
def _removed_on_failure(written: Path, path: Path) -> Iterator[None]:
    """Remove ``written`` if the block fails; an ``OSError`` becomes a :class:`StorageError` naming ``path``."""
    try:
        yield
    except BaseException as exc:
        _unlink_quietly(written)
        if isinstance(exc, OSError):
            raise _storage_error(exc, path) from None
        raise


def _storage_error(exc: OSError, path: Path) -> StorageError:
    """``exc`` as a :class:`StorageError` naming ``path`` (the file we meant to write)."""
    if isinstance(exc, StorageError):
        cause = exc.strerror
    else:
        cause = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return StorageError(path, exc.errno, cause)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_table(path: RunPath) -> pa.Table:
    """Read an Arrow IPC file written by :func:`write_table` (local or remote)."""
    if isinstance(path, RemotePath):
        return ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    with pa.memory_map(str(path), "r") as source:
        return ipc.open_file(source).read_all()


def read_message(path: RunPath) -> Message:
    """Read a message checkpoint."""
    return Message.from_table(read_table(path))


def _fsync(path: Path, name: Path | None = None) -> None:
    """fsync a file or directory; an ``OSError`` names ``name`` (default ``path``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(name or path)) from None


def atomic_write_bytes(path: RunPath, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (remote: one whole object).

    Raises
    ------
    StorageError
        The file could not be written; ``path`` keeps its old content and the
        temporary file is removed.
    """
    if isinstance(path, RemotePath):
        storage.put(path, data)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with _removed_on_failure(tmp, path):
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def atomic_write_json(path: RunPath, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def split_report(report: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a worker's report into arrays and JSON scalars."""
    arrays = {k: v for k, v in report.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in report.items() if not isinstance(v, np.ndarray)}
    return arrays, scalars


def fault_point(phase: str) -> None:
    """Fault injection for the crash tests: ``SERKET_RAY_FAULT=<phase>:<n>`` kills this
    process with SIGKILL the n-th time (1-based) it reaches ``phase``."""
    spec = os.environ.get("SERKET_RAY_FAULT")
    if not spec or not spec.startswith(phase + ":"):
        return
    _FAULT_COUNTS[phase] = _FAULT_COUNTS.get(phase, 0) + 1
    if _FAULT_COUNTS[phase] == int(spec.split(":")[1]):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_COUNTS: dict[str, int] = {}


def remove_leftovers(out_dir: RunPath) -> None:
    """Delete temporary round directories and files a killed writer left behind.

    A remote run has none: nothing is written there under a temporary name.
    """
    if isinstance(out_dir, RemotePath):
        return
    for path in sorted(Path(out_dir).glob("module*/.*")):
        if ".tmp-" in path.name or ".old-" in path.name:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in Path(out_dir).glob(".*.tmp-*"):
        path.unlink()


def write_update(
    module_dir: RunPath,
    round_index: int,
    messages: dict[str, Message],
    report: dict[str, Any],
    state: WorkerState,
    meta: dict[str, Any],
    export: Any,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write one module update's checkpoint directory atomically.

    Parameters
    ----------
    module_dir : Path or RemotePath
        ``<out>/<module>``.
    round_index : int
    messages : dict
        Output name -> message.
    report : dict
        The worker's report (arrays and scalars).
    state : WorkerState
        The worker's state: arrays and meta go to ``state.arrow``, each blob to its own file.
    meta : dict
        Module, round, seed and schema version, stored in every table's metadata.
    export : callable
        ``export(directory) -> dict`` writing the text files for people.

    Returns
    -------
    exported : dict
        What ``export`` returned.
    files : dict
        File name -> SHA-256 of every file in the round directory.
    """
    final = module_dir / f"{round_index:03d}"
    with atomic_directory(final) as tmp:
        exported = _fill(tmp, messages, report, state, meta, export)
        fault_point("before-rename")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
    fault_point("after-rename")
    for name in sorted(n for n in files if n.endswith(".txt")):  # the last round's files, for people
        copy_file(final / name, module_dir / name)
    fault_point("after-copy")
    return exported, files


@contextlib.contextmanager
def atomic_directory(final: RunPath) -> Iterator[Path]:
    """A directory that appears at ``final`` complete, or not at all: yields a local directory to fill.

    Local ``final``: the directory is ``.<name>.tmp-<pid>`` beside ``final``.  When
    the block ends, every file in it and the directory itself are fsynced, an old
    ``final`` is moved aside, the new one renamed into place, the parent fsynced and
    the old one removed (a failed rename puts the old one back).  Remote ``final``
    (:class:`~orchestrator.storage.RemotePath`): the directory is a local temporary
    one; when the block ends the old objects below ``final`` are deleted and every
    file is uploaded whole under ``final`` (:func:`orchestrator.storage.put`), then
    the local directory is removed.

    Parameters
    ----------
    final : Path or RemotePath
        Where the directory is to be.

    Yields
    ------
    Path
        The local directory to fill (flat: files only).

    Raises
    ------
    StorageError
        An ``OSError`` in the block or while putting the directory in place, naming
        the file by its name under ``final`` (a write error that names no file: the
        file written last).  The temporary directory is removed; a local ``final``
        keeps its old content.
    """
    if isinstance(final, RemotePath):
        with tempfile.TemporaryDirectory(prefix="serket-ray-stage-") as stage:
            tmp = Path(stage) / final.name
            tmp.mkdir()
            with _named_under(final, tmp):
                yield tmp
            storage.replace_dir(tmp, final)
        return
    final = Path(final)
    parent = final.parent
    tmp = parent / f".{final.name}.tmp-{os.getpid()}"
    old = parent / f".{final.name}.old-{os.getpid()}"
    try:
        with _named_under(final, tmp, guess=False):
            parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        with _named_under(final, tmp):
            yield tmp
        with _named_under(final, tmp, guess=False):
            for path in sorted(tmp.iterdir()):
                _fsync(path)
            _fsync(tmp)
            moved = final.exists()
            if moved:  # a rerun over an old directory: move the old aside first
                final.rename(old)
            try:
                tmp.rename(final)
            except BaseException:
                if moved:
                    old.rename(final)
                raise
            _fsync(parent, final)
    except BaseException:  # a failed or interrupted write leaves no temporary directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if moved:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _named_under(final: RunPath, tmp: Path, guess: bool = True) -> Iterator[None]:
    """An ``OSError`` in the block becomes a :class:`StorageError` naming its file by its name below ``final``.

    An error naming no file names ``tmp``'s newest file when ``guess`` (a text export's
    write errors name none), else ``final``; one naming a file outside ``tmp`` keeps that name.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename:
            where = _final_name(str(exc.filename), tmp, final)
        else:
            where = _final_name(str(_newest(tmp)), tmp, final) if guess else final
        if isinstance(exc, StorageError) and str(where) == exc.path:
            raise
        raise _storage_error(exc, where) from None


def copy_file(source: RunPath, target: RunPath) -> None:
    """Copy ``source`` to ``target`` atomically: locally via a temporary file, fsync and rename; on a remote
    file system the file system's own copy (S3: a server-side copy, one whole object)."""
    if isinstance(source, RemotePath) and isinstance(target, RemotePath):
        storage.copy(source, target)
    else:
        atomic_write_bytes(target, source.read_bytes())


def _fill(
    tmp: Path,
    messages: dict[str, Message],
    report: dict[str, Any],
    state: WorkerState,
    meta: dict[str, Any],
    export: Any,
) -> Any:
    """Write one update's files into the temporary round directory ``tmp``; return what ``export`` returned."""
    for name, msg in messages.items():
        write_table(tmp / f"{name}.arrow", msg.to_table())
    arrays, scalars = split_report(report)
    scalars.pop("seconds", None)  # timings go to run.json; checkpoints stay byte-reproducible
    write_table(tmp / "report.arrow", arrays_table(arrays, {**meta, "scalars": scalars}))
    write_table(tmp / "state.arrow", arrays_table(state.arrays, {**meta, "state": state.meta}))
    for fname, blob in state.blobs.items():
        atomic_write_bytes(tmp / fname, blob)
    return export(tmp)  # its files are fsynced by atomic_directory; an error naming none names the newest


def _newest(directory: Path) -> Path:
    """The file of ``directory`` written last (the directory itself when it is empty)."""
    files = [p for p in directory.iterdir() if p.is_file()] if directory.is_dir() else []
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else directory


def _final_name(where: str, tmp: Path, final: RunPath) -> RunPath | str:
    """The name ``where`` (a path in or of the temporary directory ``tmp``) has once ``tmp`` is ``final``."""
    try:
        rel = Path(where).relative_to(tmp)
    except ValueError:
        return where
    return final if rel == Path(".") else final / rel


def sha256_file(path: RunPath) -> str:
    """Hex SHA-256 of a file's bytes (local or remote)."""
    digest = hashlib.sha256()
    with storage.open_input(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
