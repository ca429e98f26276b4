"""Reading a run back: its manifest, the integrity of its checkpoint files, and
what differs between the run on disk and the run a user asks to continue."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from messages.errors import CheckpointError
from orchestrator.checkpoint import sha256_file
from orchestrator.session import Session, UpdateRecord

log = logging.getLogger(__name__)


def load_manifest(out_dir: str | Path) -> dict[str, Any]:
    """Read ``<out>/run.json``.

    Raises
    ------
    CheckpointError
        The directory or its manifest is missing or unreadable.
    """
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        raise CheckpointError(f"{out_dir} should hold a serket-ray run (a run.json), got none at {path}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} should be a readable JSON manifest, got: {exc}") from None
    for key in ("seed", "modules", "updates", "data"):
        if key not in manifest:
            raise CheckpointError(f"{path} should have a {key!r} entry, got keys {sorted(manifest)}")
    return manifest


def records_of(manifest: dict[str, Any]) -> list[UpdateRecord]:
    """The completed updates recorded in a manifest, in the order they ran."""
    return [UpdateRecord(**u) for u in manifest["updates"]]


def damaged_files(out_dir: Path, record: UpdateRecord) -> list[str]:
    """Files of one update that are missing or whose SHA-256 differs from the manifest's."""
    bad = []
    for rel, digest in record.files.items():
        path = out_dir / rel
        if not path.is_file():
            bad.append(f"{path} (missing)")
        elif sha256_file(path) != digest:
            bad.append(f"{path} (checksum mismatch: altered or truncated)")
    return bad


def intact_prefix(out_dir: Path, records: list[UpdateRecord]) -> tuple[list[UpdateRecord], list[str]]:
    """The longest run of leading updates whose files are all intact, and the first damage found."""
    for i, rec in enumerate(records):
        bad = damaged_files(out_dir, rec)
        if bad:
            return records[:i], bad
    return records, []


def differences(manifest: dict[str, Any], session: Session) -> list[str]:
    """What differs between a manifest and the session a user wants to continue it with."""
    now = session.manifest()
    diffs = []
    if manifest["seed"] != now["seed"]:
        diffs.append(f"seed: recorded {manifest['seed']}, given {now['seed']}")
    old_data, new_data = manifest["data"], now["data"]
    for name in sorted(set(old_data) | set(new_data)):
        old, new = old_data.get(name), new_data.get(name)
        old_len = old.get("lengths") if isinstance(old, dict) else None
        new_len = new.get("lengths") if isinstance(new, dict) else None
        if old_len != new_len:
            diffs.append(f"lengths of {name}: recorded {_describe_lengths(old_len)}, given {_describe_lengths(new_len)}")
    if _without_lengths(old_data) != _without_lengths(new_data):
        diffs.append(f"data: recorded {_short(old_data)}, given {_short(new_data)}")
    old_mods, new_mods = manifest["modules"], now["modules"]
    if sorted(old_mods) != sorted(new_mods):
        diffs.append(f"modules: recorded {sorted(old_mods)}, given {sorted(new_mods)}")
    for name in sorted(set(old_mods) & set(new_mods)):
        old_cfg, new_cfg = old_mods[name].get("config", {}), new_mods[name].get("config", {})
        for key in sorted(set(old_cfg) | set(new_cfg)):
            if old_cfg.get(key) != new_cfg.get(key):
                diffs.append(f"{name}.{key}: recorded {old_cfg.get(key)!r}, given {new_cfg.get(key)!r}")
    return diffs


def _without_lengths(fp: dict[str, Any]) -> dict[str, Any]:
    return {k: ({f: x for f, x in v.items() if f != "lengths"} if isinstance(v, dict) else v) for k, v in fp.items()}


def _describe_lengths(fp: dict[str, Any] | None) -> str:
    if fp is None:
        return "one sequence (no lengths)"
    return f"{fp['n_sequences']} sequences of {fp['min']} to {fp['max']} points (lengths sha256 {fp['sha256'][:12]})"


def _short(fp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v['sha256'][:12] if isinstance(v, dict) else str(v)[:12]}" for k, v in sorted(fp.items()))
