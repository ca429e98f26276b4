"""What differs between the run on disk and the run a user asks to continue.

Reading the run itself (manifest, records, intact prefix) is :mod:`orchestrator.run_dir`'s."""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.session import Session

log = logging.getLogger(__name__)


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
            diffs.append(
                f"lengths of {name}: recorded {_describe_lengths(old_len)}, given {_describe_lengths(new_len)}"
            )
    if _without_lengths(old_data) != _without_lengths(new_data):
        diffs.append(f"data: recorded {_short(old_data)}, given {_short(new_data)}")
    if manifest.get("shards") != now.get("shards"):
        diffs.append(
            f"shards: recorded {_describe_shards(manifest.get('shards'))}, given {_describe_shards(now.get('shards'))}"
            " (a sharded run resumes on the shards it was started with)"
        )
    old_mods, new_mods = manifest["modules"], now["modules"]
    if sorted(old_mods) != sorted(new_mods):
        diffs.append(f"modules: recorded {sorted(old_mods)}, given {sorted(new_mods)}")
    for name in sorted(set(old_mods) & set(new_mods)):
        old_cfg, new_cfg = old_mods[name].get("config", {}), new_mods[name].get("config", {})
        for key in sorted(set(old_cfg) | set(new_cfg)):
            if old_cfg.get(key) != new_cfg.get(key):
                diffs.append(f"{name}.{key}: recorded {old_cfg.get(key)!r}, given {new_cfg.get(key)!r}")
    return diffs


def _describe_shards(plan: dict[str, Any] | None) -> str:
    if not plan:
        return "one actor per module"
    return f"{plan['n_shards']} shards of {plan['block']}-point blocks for {plan['modules']}"


def _without_lengths(fp: dict[str, Any]) -> dict[str, Any]:
    return {k: ({f: x for f, x in v.items() if f != "lengths"} if isinstance(v, dict) else v) for k, v in fp.items()}


def _describe_lengths(fp: dict[str, Any] | None) -> str:
    if fp is None:
        return "one sequence (no lengths)"
    return f"{fp['n_sequences']} sequences of {fp['min']} to {fp['max']} points (lengths sha256 {fp['sha256'][:12]})"


def _short(fp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v['sha256'][:12] if isinstance(v, dict) else str(v)[:12]}" for k, v in sorted(fp.items()))
