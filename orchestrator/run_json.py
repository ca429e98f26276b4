"""The run's record, ``run.json``: what a session writes after every update.

:mod:`orchestrator.run_dir` reads it back.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.state import WorkerState
from messages import Message
from orchestrator import checkpoint
from orchestrator.fingerprints import code_version
from orchestrator.graph import Graph
from orchestrator.run_dir import UpdateRecord
from orchestrator.storage import RunPath


def rounds_summary(records: list[UpdateRecord]) -> list[dict[str, Any]]:
    """Per round, in order: each module's seconds and compute seconds, and the accuracy when one was scored."""
    rounds: dict[int, dict[str, Any]] = {}
    for rec in records:
        entry = rounds.setdefault(rec.round, {"round": rec.round, "seconds": {}, "compute_seconds": {}})
        entry["seconds"][rec.module] = round(rec.seconds, 4)
        entry["compute_seconds"][rec.module] = round(rec.compute_seconds, 4)
        if "accuracy" in rec.scalars:
            entry["accuracy"] = rec.scalars["accuracy"]
    return [rounds[r] for r in sorted(rounds)]


def modules_summary(graph: Graph, placement: dict[str, Any]) -> dict[str, Any]:
    """Module name -> its kind, its config and (learnable ones) where its worker runs."""
    modules = {}
    for m in graph.modules:
        entry = {"kind": m.kind, "config": m.config_dict()}
        if m.learnable:
            entry.update(placement.get(graph.name(m), {}))
        modules[graph.name(m)] = entry
    return modules


def run_manifest(
    graph: Graph,
    records: list[UpdateRecord],
    placement: dict[str, Any],
    *,
    seed: int,
    threads: int,
    fingerprint: dict[str, Any],
    backend: str,
    address: str | None,
    started: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The run's record: config, seed, per-round accuracy and seconds, placement.

    Parameters
    ----------
    graph : Graph
    records : list of UpdateRecord
        The completed updates, in the order they ran.
    placement : dict
        Module name -> node, process and bundle of its worker.
    seed, threads : int
    fingerprint : dict
        :func:`orchestrator.fingerprints.data_fingerprint` of the run's data.
    backend : str
    address : str or None
    started : float
        ``time.time()`` when the session was made.
    extra : dict
        Entries added last (target rounds, the recorded command line).
    """
    return {
        "format_version": checkpoint.FORMAT_VERSION,
        "code_version": code_version(),
        "seed": seed,
        "threads": threads,
        "data": fingerprint,
        "backend": backend,
        "address": address,
        "n_points": graph.modules[0].n_points(),
        "modules": modules_summary(graph, placement),
        "rounds": rounds_summary(records),
        "updates": [dataclasses.asdict(r) for r in records],
        "wall_seconds": round(time.time() - started, 3),
        "python": platform.python_version(),
        **extra,
    }


def write_run_json(out_dir: RunPath, manifest: dict[str, Any]) -> None:
    """Write ``<out_dir>/run.json`` atomically (the directory made when missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_json(out_dir / "run.json", manifest)


def checkpoint_update(
    out_dir: RunPath,
    name: str,
    outputs: dict[str, Any],
    state: WorkerState,
    meta: dict[str, Any],
    export: Callable[[Path], dict[str, str]],
) -> UpdateRecord:
    """Write one update's messages, report, state and text exports; the record run.json will hold.

    Parameters
    ----------
    out_dir : Path or RemotePath
        The run's directory; the update goes to ``<out_dir>/<name>/<round:03d>/``.
    name : str
        The module's name.
    outputs : dict
        Output name -> the worker's value: its messages and its ``report`` dict.
    state : WorkerState
        The worker's state after the update (its ``get_state``).
    meta : dict
        ``round``, ``seed``, ``t0`` (``time.perf_counter()`` when the update began) and ``attempts``.
    export : callable
        Writes the module's text exports into a directory; returns their file names.
    """
    round_index = meta["round"]
    messages = {k: v for k, v in outputs.items() if isinstance(v, Message)}
    scalars, files = checkpoint.write_update(
        out_dir / name,
        round_index,
        messages,
        outputs["report"],
        state,
        {"module": name, "round": round_index, "seed": meta["seed"], "schema_version": checkpoint.FORMAT_VERSION},
        export,
    )
    seconds = time.perf_counter() - meta["t0"]
    return UpdateRecord(
        name,
        round_index,
        seconds,
        float(outputs["report"].get("seconds", seconds)),
        scalars,
        {f"{name}/{round_index:03d}/{k}": v for k, v in files.items()},
        meta["attempts"],
    )
