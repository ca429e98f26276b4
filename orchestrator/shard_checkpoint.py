"""A shard's part of a sharded module's checkpoint: written by the shard itself, atomically, checksummed.

An update of a sharded module (:mod:`orchestrator.shard_run`) is saved in two
steps.  First every shard writes its own part,
``<out>/<module>/shards/<round:03d>/shard<i:03d>/`` (``part.arrow``: its rows of
the per-point arrays; its per-point Serket text files), built under a temporary
name, fsynced and renamed into place exactly as :func:`orchestrator.checkpoint.write_update`
does a round directory, and returns every file's SHA-256.  Then, only after all
parts are complete, the driver writes the module's round directory (the
reduced report, the coordinator's state, the small text files) and lists the
parts' files with their checksums in run.json: an update whose part is missing
or altered is damaged like any other (:func:`orchestrator.run_dir.intact_prefix`),
and a part without a manifest entry is never read.

Additive to :mod:`orchestrator.checkpoint` (it only uses its writers).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from actors.serket_text import export_text
from orchestrator import checkpoint

#: Name of a part's array file.
PART_FILE = "part.arrow"


def part_dir(out_dir: str | os.PathLike[str], module: str, round_index: int, shard: int) -> Path:
    """``<out>/<module>/shards/<round:03d>/shard<i:03d>``."""
    return Path(out_dir) / module / "shards" / f"{round_index:03d}" / f"shard{shard:03d}"


def write_part(
    directory: Path,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    texts: dict[str, Any] | None = None,
    mode: str = "learn",
) -> dict[str, str]:
    """Write one shard's part atomically; file name -> SHA-256.

    Parameters
    ----------
    directory : Path
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
        A file could not be written (the temporary directory is removed).
    """
    final = Path(directory)
    parent = final.parent
    tmp = parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        checkpoint.write_table(tmp / PART_FILE, checkpoint.arrays_table(arrays, meta))
        if texts:
            export_text(tmp, mode, **texts)
            for txt in sorted(tmp.glob("*.txt")):
                checkpoint._fsync(txt)
        if final.exists():
            old = parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        checkpoint._fsync(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise checkpoint._storage_error(exc, final) from None
        raise
    return {p.name: checkpoint.sha256_file(p) for p in sorted(final.iterdir())}


def read_part(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of a part written by :func:`write_part`."""
    return checkpoint.table_arrays(checkpoint.read_table(Path(directory) / PART_FILE))


def remove_part_leftovers(out_dir: Path) -> None:
    """Delete temporary part directories a killed shard left behind."""
    for path in sorted(Path(out_dir).glob("module*/shards/*/.*")):
        if ".tmp-" in path.name or ".old-" in path.name:
            shutil.rmtree(path, ignore_errors=True)


def gather_text(parts: list[Path], name: str, target: Path) -> None:
    """Concatenate the parts' text file ``name`` into ``target``, streaming (never the whole file in memory).

    ``numpy.savetxt`` writes one line per row, so the concatenation of the
    shards' files is byte for byte the file of the whole array.
    """
    with open(target, "wb") as sink:
        for part in parts:
            with open(part / name, "rb") as source:
                shutil.copyfileobj(source, sink, 1 << 20)
