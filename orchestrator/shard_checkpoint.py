"""A shard's part of a sharded module's checkpoint: written by the shard itself, atomically, checksummed.

An update of a sharded module (:mod:`orchestrator.shard_run`) is saved in two
steps.  First every shard writes its own part,
``<out>/<module>/shards/<round:03d>/shard<i:03d>/`` (``part.arrow``: its rows of
the per-point arrays; its per-point Serket text files), through
:func:`orchestrator.checkpoint.atomic_directory` as a round directory is: on a
local path built under a temporary name, fsynced and renamed into place; on a
remote one (any ``pyarrow.fs`` URI, :class:`orchestrator.storage.RemotePath`)
built in a local temporary directory and uploaded file by file, each whole.  It
returns every file's SHA-256.  Then, only after all parts are complete, the
driver writes the module's round directory (the reduced report, the
coordinator's state, the small text files) and lists the parts' files with
their checksums in run.json: an update whose part is missing or altered is
damaged like any other (:func:`orchestrator.run_dir.intact_prefix`), and a part
without a manifest entry is never read.

A part's directory is a run path (:data:`orchestrator.storage.RunPath`), which
pickles with its file system, so a shard actor on another node writes and reads
its part itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from actors.serket_text import export_text
from orchestrator import checkpoint, storage
from orchestrator.storage import RemotePath, RunPath

#: Name of a part's array file.
PART_FILE = "part.arrow"


def part_dir(out_dir: RunPath, module: str, round_index: int, shard: int) -> RunPath:
    """``<out>/<module>/shards/<round:03d>/shard<i:03d>`` (local or remote, as ``out_dir``)."""
    return storage.resolve(out_dir, probe=False) / module / "shards" / f"{round_index:03d}" / f"shard{shard:03d}"


def write_part(
    directory: RunPath,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    texts: dict[str, Any] | None = None,
    mode: str = "learn",
) -> dict[str, str]:
    """Write one shard's part atomically; file name -> SHA-256.

    Parameters
    ----------
    directory : Path or RemotePath
        The part's final directory (:func:`part_dir`).
    arrays : dict
        Named arrays (this shard's rows), stored in ``part.arrow``.
    meta : dict
        JSON-ready values kept in the table's metadata (shard, range, round).
    texts : dict, optional
        Serket text files to write beside it (keys of :data:`actors.serket_text.SERKET_FILES`).
    mode : str

    Raises
    ------
    StorageError
        A file could not be written (the temporary directory is removed; an older
        part of the same round and shard stays as it was on a local path).
    """
    with checkpoint.atomic_directory(directory) as tmp:
        checkpoint.write_table(tmp / PART_FILE, checkpoint.arrays_table(arrays, meta))
        if texts:
            export_text(tmp, mode, **texts)
        return {p.name: checkpoint.sha256_file(p) for p in sorted(tmp.iterdir())}


def read_part(directory: RunPath) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of a part written by :func:`write_part` (local or remote)."""
    return checkpoint.table_arrays(checkpoint.read_table(storage.resolve(directory, probe=False) / PART_FILE))


def remove_part_leftovers(out_dir: RunPath) -> None:
    """Delete temporary part directories a killed shard left behind (a remote run has none)."""
    if isinstance(out_dir, RemotePath):
        return
    for path in sorted(Path(out_dir).glob("module*/shards/*/.*")):
        if ".tmp-" in path.name or ".old-" in path.name:
            shutil.rmtree(path, ignore_errors=True)


def gather_text(parts: list[RunPath], name: str, target: Path) -> None:
    """Concatenate the parts' text file ``name`` into the local file ``target``, streaming (never the whole
    file in memory; a remote part is read through its file system).

    The text exports (``numpy.savetxt``'s bytes) have one line per row, so the concatenation of the
    shards' files is byte for byte the file of the whole array.
    """
    with open(target, "wb") as sink:
        for part in parts:
            with storage.open_input(part / name) as source:
                shutil.copyfileobj(source, sink, 1 << 20)
