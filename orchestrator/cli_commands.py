"""The ``serket-ray`` sub-commands: ``run``, ``resume``, ``recog``, ``sweep`` and ``report``.

Each ``cmd_*`` takes the parsed arguments, checks everything before any actor
starts, does its work and returns the summary it printed (as ``--json`` would).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from messages.errors import SerketRayError
from orchestrator import runlock, storage
from orchestrator.inputs import DataSource, RunInputs, load_run_inputs
from orchestrator.progress import ProgressDisplay
from orchestrator.recipe import TutorialRecipe
from orchestrator.runlock import LOCK_NAME
from orchestrator.storage import RunPath


def check_out_dir(out: RunPath, overwrite: bool) -> None:
    """Refuse a non-empty output directory (local or remote) unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise SerketRayError(f"--out should be a directory, got an existing file: {out}")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not overwrite:
        what = "an earlier run" if (out / "run.json").exists() else "files that are not a serket-ray run"
        raise SerketRayError(f"--out {out} already holds {what}; choose another directory or pass --overwrite")


def _summarise(result: Any, args: Any, out: RunPath) -> dict[str, Any]:
    summary = {
        "out": str(out),
        "accuracy": result.accuracy,
        "final_accuracy": result.final_accuracy,
        "seconds": result.seconds,
        "total_seconds": round(result.total_seconds, 3),
        "already_complete": result.already_complete,
    }
    if not args.quiet:
        for i, secs in enumerate(result.seconds):
            acc = f"accuracy {result.accuracy[i]:.4f}  " if i < len(result.accuracy) else ""
            parts = "  ".join(f"{k} {v:.2f}s" for k, v in secs.items())
            print(f"round {i + 1}: {acc}{parts}")
        print(f"total {result.total_seconds:.1f} s; outputs in {out}")
    if args.json:
        print(json.dumps(summary))
    return summary


#: Data files at least this large are read while the local Ray starts.
EARLY_RAY_BYTES = 8 << 20


def _load_while_ray_starts(recipe: TutorialRecipe, args: Any, out: RunPath) -> RunInputs:
    """``recipe.load()``; for a large data file on Ray, the local Ray starts meanwhile.

    Ray starts in this (main) thread, as ``ray.init`` needs, while a thread reads the
    data (this process never imports torch on Ray: the VAE's actor does).  The output
    directory and address are checked first; a bad data file is still reported
    before any actor starts (Ray is stopped again).
    """
    path = Path(args.data) if args.data else None
    if args.backend != "ray" or path is None or not path.is_file() or path.stat().st_size < EARLY_RAY_BYTES:
        return recipe.load()
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.executor import check_address, connect_ray, disconnect_ray

    check_out_dir(out, args.overwrite)
    check_address(args.address)
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(recipe.load)
        try:
            connect_ray(args.address)
        except BaseException:
            loading.result()  # a bad data file is the first thing to report
            raise
        try:
            return loading.result()
        except BaseException:
            disconnect_ray()
            raise


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the tutorial's graph on the given data and run it."""
    from orchestrator import Orchestrator
    from orchestrator.data import describe

    # Everything is checked before any actor starts.
    out = storage.resolve(args.out)  # a bad storage URI is the first thing said
    recipe = TutorialRecipe.from_options(args)
    data, labels, lengths, source = _load_while_ray_starts(recipe, args, out)
    modules = recipe.build(data, labels, lengths)
    _lock(out, "serket-ray run", args.force_unlock)
    check_out_dir(out, args.overwrite)
    orch = Orchestrator(
        modules,
        out,
        seed=args.seed,
        address=args.address,
        backend=args.backend,
        resources=args.resources,
        reserve_timeout=args.reserve_timeout,
        threads=args.threads,
        shards=args.shards,
        sharded=args.sharded,
        shard_block=args.shard_block,
        **({} if args.placement is None else {"placement_strategy": args.placement}),
    )
    orch.session.extra["cli"] = recipe.recorded()
    if not args.quiet:
        print(f"data: {source}: {describe(data, labels)}", flush=True)
    try:
        shown = ProgressDisplay(args.rounds, args.quiet)
        result = orch.run(args.rounds, on_update=shown.on_update, on_progress=shown.progress_callback)
    finally:
        orch.close()
    if getattr(args, "report", False):
        from orchestrator.report import make_report

        report = make_report(out, labels=labels, data=data)
        if not args.quiet:
            print(f"report: {report.index}", flush=True)
    return _summarise(result, args, out)


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    """Write ``OUT/report/index.html`` and its figures for a run."""
    from orchestrator.report import make_report

    report = make_report(storage.resolve(args.out), labels=args.labels, labels_key=args.labels_key)
    if not args.quiet:
        for note in report.notes:
            print(f"note: {note}")
        print(f"report: {report.index} ({len(report.figures)} figures)")
    return {
        "index": str(report.index),
        "figures": {k: str(v) for k, v in report.figures.items()},
        "notes": report.notes,
    }


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Run one pipeline per seed, as many at once as the cluster allows; print the table."""
    from orchestrator.data import describe
    from orchestrator.executor import check_address
    from orchestrator.sweep import sweep

    # Everything is checked before any actor starts.
    recipe = TutorialRecipe.from_options(args)
    data, labels, lengths, source = recipe.load()
    recipe.build(data, labels, lengths)
    out = storage.resolve(args.out)
    for seed in args.seeds:
        check_out_dir(out / f"seed_{seed}", args.overwrite)
    check_address(args.address)
    if not args.quiet:
        print(f"data: {source}: {describe(data, labels)}; seeds {args.seeds}", flush=True)

    def build() -> list[Any]:
        return recipe.build(data, labels, lengths)  # anew per seed: modules hold per-graph state

    def done(row: Any) -> None:
        if not args.quiet:
            acc = "-" if row.accuracy is None else f"{row.accuracy:.4f}"
            print(
                f"seed {row.seed}: accuracy {acc}  {row.seconds:.1f} s"
                + (f"  FAILED: {row.error}" if row.error else ""),
                flush=True,
            )

    result = sweep(
        build,
        args.seeds,
        out,
        args.rounds,
        address=args.address,
        resources=args.resources,
        max_concurrent=args.concurrent,
        reserve_timeout=args.reserve_timeout,
        on_done=done,
    )
    summary = result.as_dict()
    if not args.quiet:
        print(result.table())
    if args.json:
        print(json.dumps(summary))
    failed = [r.seed for r in result.rows if r.error]
    if failed:
        raise SerketRayError(
            f"{len(failed)} of {len(result.rows)} seeds failed: {failed}; see the table above and {out}"
        )
    return summary


def cmd_recog(args: argparse.Namespace) -> dict[str, Any]:
    """Classify novel data with a learned model."""
    from orchestrator.recog import recognise
    from orchestrator.run_dir import load_manifest

    model = storage.resolve(args.model)
    load_manifest(model)
    data, labels, lengths, source = load_run_inputs(
        DataSource(
            data=args.data,
            labels=args.labels,
            data_key=args.data_key,
            labels_key=args.labels_key,
            scale=args.scale,
            lengths=args.lengths,
            sequence_key=args.sequence_key,
        )
    )
    out = storage.resolve(args.out)
    check_out_dir(out, args.overwrite)
    result = recognise(model, data, out, labels=labels, use_mm=not args.no_mm, lengths=lengths)
    summary = {
        "out": str(out),
        "n_points": int(data.shape[0]),
        "n_sequences": 1 if lengths is None else int(lengths.size),
        "accuracy": result.accuracy,
    }
    if not args.quiet:
        acc = "" if result.accuracy is None else f"; accuracy {result.accuracy:.4f}"
        print(f"recognised {data.shape[0]} points from {source}{acc}; outputs in {out}")
    if args.json:
        print(json.dumps(summary))
    return summary


def cmd_resume(args: argparse.Namespace) -> dict[str, Any]:
    """Continue a run from its last completed update."""
    from orchestrator import Orchestrator
    from orchestrator.run_dir import load_manifest

    out = storage.resolve(args.out)
    manifest = load_manifest(out)
    _lock(out, "serket-ray resume", args.force_unlock)
    rounds = args.rounds or manifest.get("target_rounds") or 0
    shown = ProgressDisplay(rounds, args.quiet)
    result = Orchestrator.resume(
        out,
        rounds=args.rounds,
        address=args.address,
        from_last_intact=args.from_last_intact,
        backend=args.backend,
        on_update=shown.on_update,
        on_progress=shown.progress_callback,
        resources=args.resources,
        reserve_timeout=args.reserve_timeout,
        **({} if args.threads is None else {"threads": args.threads}),
        **{k: getattr(args, k) for k in ("shards", "sharded", "shard_block") if getattr(args, k) is not None},
        **({} if args.placement is None else {"placement_strategy": args.placement}),
    )
    if result.already_complete and not args.quiet:
        print(f"{args.out} is already complete ({rounds} rounds); nothing changed")
    return _summarise(result, args, out)


def _lock(out: RunPath, command: str, force: bool) -> None:
    """Take ``out``'s run lock until this command ends (released by :func:`main`)."""
    if out.exists() and not out.is_dir():
        return  # check_out_dir says what is wrong
    runlock.hold(out, command, force).__enter__()
