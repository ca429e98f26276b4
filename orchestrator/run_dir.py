"""Reading a run directory back: the one reader of what a run wrote.

Its manifest (``run.json``), the updates it records, which of them are intact
(every file's SHA-256 as recorded), the last update of each module, a worker's
saved state and a saved message.  Used by resume, the session's restore and
restart, recognition, the report and the benchmarks.  A run directory is a
local path or a remote one (:mod:`orchestrator.storage`); both read alike.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from actors.state import WorkerState
from messages import Message
from messages.errors import CheckpointError
from orchestrator import checkpoint, storage
from orchestrator.storage import RunPath


@dataclasses.dataclass
class UpdateRecord:
    """What one module update did (kept in ``run.json``)."""

    module: str
    round: int
    seconds: float
    compute_seconds: float
    scalars: dict[str, Any]
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    attempts: int = 1


def load_manifest(out_dir: str | Path | RunPath) -> dict[str, Any]:
    """Read ``<out>/run.json``.

    Raises
    ------
    CheckpointError
        The directory or its manifest is missing or unreadable.
    """
    path = storage.resolve(out_dir) / "run.json"
    try:
        found = path.is_file()
    except OSError as exc:
        raise CheckpointError(f"{path} should be readable, got: {storage.first_line(exc)}") from None
    if not found:
        raise CheckpointError(f"{out_dir} should hold a serket-ray run (a run.json), got none at {path}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} should be a readable JSON manifest, got: {exc}") from None
    for key in ("seed", "modules", "updates", "data"):
        if key not in manifest:
            raise CheckpointError(f"{path} should have a {key!r} entry, got keys {sorted(manifest)}")
    return manifest


def records_of(manifest: dict[str, Any], where: str = "run.json") -> list[UpdateRecord]:
    """The completed updates recorded in a manifest, in the order they ran.

    Raises
    ------
    CheckpointError
        An entry is not an update record (``where`` names the manifest in the message).
    """
    records = []
    for u in manifest["updates"]:
        try:
            records.append(UpdateRecord(**u))
        except TypeError:
            raise CheckpointError(f"{where} should list updates with 'module' and 'round', got {u!r}") from None
    return records


def update_dir(out_dir: RunPath, record: UpdateRecord) -> RunPath:
    """``<out>/<module>/<round:03d>``: the checkpoint directory of one update."""
    return storage.resolve(out_dir) / record.module / f"{record.round:03d}"


def damaged_files(out_dir: RunPath, record: UpdateRecord) -> list[str]:
    """Files of one update that are missing or whose SHA-256 differs from the manifest's."""
    bad = []
    for rel, digest in record.files.items():
        path = out_dir / rel
        if not path.is_file():
            bad.append(f"{path} (missing)")
        elif checkpoint.sha256_file(path) != digest:
            bad.append(f"{path} (checksum mismatch: altered or truncated)")
    return bad


def intact_prefix(out_dir: RunPath, records: list[UpdateRecord]) -> tuple[list[UpdateRecord], list[str]]:
    """The longest run of leading updates whose files are all intact, and the first damage found."""
    for i, rec in enumerate(records):
        bad = damaged_files(out_dir, rec)
        if bad:
            return records[:i], bad
    return records, []


def last_updates(records: list[UpdateRecord]) -> dict[str, UpdateRecord]:
    """The last of ``records`` (in the order they ran) of each module, by module name."""
    last: dict[str, UpdateRecord] = {}
    for rec in records:
        last[rec.module] = rec
    return last


def last_intact_updates(out_dir: RunPath, manifest: dict[str, Any], what: str = "the run") -> dict[str, UpdateRecord]:
    """Module name -> its last update, when every recorded update is intact.

    Raises
    ------
    CheckpointError
        A recorded update's files are missing or altered (``what`` names the run in the message).
    """
    records, damage = intact_prefix(out_dir, records_of(manifest))
    if damage:
        raise CheckpointError(f"damaged checkpoint in {what}: {damage[0]}")
    return last_updates(records)


def load_state(directory: RunPath) -> WorkerState:
    """A worker's state from a checkpoint directory (``state.arrow`` plus blob files)."""
    arrays, meta = checkpoint.table_arrays(checkpoint.read_table(directory / "state.arrow"))
    blobs = {p.name: p.read_bytes() for p in sorted(directory.glob("*.pt"))}
    return WorkerState(arrays=arrays, meta=meta.get("state", {}), blobs=blobs)


def saved_message(directory: RunPath, output_name: str) -> Message:
    """The message ``output_name`` an update saved in its checkpoint ``directory``."""
    return checkpoint.read_message(directory / f"{output_name}.arrow")
