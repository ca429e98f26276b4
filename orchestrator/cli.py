"""The ``serket-ray`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from messages.errors import SerketRayError, StorageError
from orchestrator import runlock, stopping
from orchestrator.data import SCALE_MODES
from orchestrator.inputs import DataSource, RunInputs, load_run_inputs
from orchestrator.progress import ProgressDisplay
from orchestrator.recipe import TutorialRecipe
from orchestrator.runlock import LOCK_NAME

log = logging.getLogger("serket_ray.cli")


def _int_at_least(low: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"should be a {what} integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"should be a {what} integer, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _resources_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f'should be JSON like \'{{"vae": {{"num_gpus": 1}}}}\', got {text!r}: {exc}'
        ) from None
    if not isinstance(value, dict) or not all(v == "auto" or isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError(f'should map module kinds or names to actor options or "auto", got {text!r}')
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"should be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"should be a positive number, got {value}")
    return value


def parse_seeds(text: str) -> list[int]:
    """Seeds from ranges and comma lists: ``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``.

    Raises
    ------
    argparse.ArgumentTypeError
        Not non-negative integers and ranges, an empty or reversed range, or a
        seed given twice.
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"should be non-negative integers and ranges like 0-7 or 0,3,5-6, got {text!r}"
            ) from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"ranges should run from a non-negative seed upwards, got {part!r}")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed should be given once, got {text!r}")
    return seeds


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one plain line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"serket-ray: error: {message}\n")


def _add_graph_options(cmd: argparse.ArgumentParser) -> None:
    """Data and model options shared by ``run`` and ``sweep`` (see ``orchestrator.recipe.RECORDED_KEYS``)."""
    cmd.add_argument(
        "--data",
        help="data file: text (np.loadtxt), .npy, .npz, .parquet, .feather/.arrow/.ipc "
        "or MNIST IDX (*-idx3-ubyte[.gz])",
    )
    cmd.add_argument("--labels", help="labels file, same formats (only used to score accuracy)")
    cmd.add_argument("--data-key", help="array (.npz) or column (Parquet/Feather) holding the data")
    cmd.add_argument("--labels-key", help="array (.npz) or column (Parquet/Feather) holding the labels")
    _add_sequence_options(cmd)
    cmd.add_argument(
        "--scale",
        choices=SCALE_MODES,
        default="none",
        help="rescale data into [0, 1]: auto, none (default), 255, max or minmax",
    )
    cmd.add_argument(
        "--dataset",
        choices=("digits", "mnist"),
        default=None,
        help="built-in data when --data is absent: digits (scikit-learn, default, no download) or mnist "
        "(the tutorial's 3000 images, downloaded once)",
    )
    cmd.add_argument("--cache-dir", help="download cache (default: $SERKET_RAY_CACHE or ~/.cache/serket-ray)")
    cmd.add_argument("--rounds", type=_positive_int, default=5)
    cmd.add_argument("--latent-dim", type=_positive_int, default=18)
    cmd.add_argument("--epochs", type=_positive_int, default=200)
    cmd.add_argument("--batch-size", type=_positive_int, default=500)
    cmd.add_argument("--clusters", type=_positive_int, default=10)
    cmd.add_argument("--sweeps", type=_positive_int, default=100, help="GMM Gibbs sweeps per round")
    cmd.add_argument("--no-mm", action="store_true", help="VAE + GMM only")
    cmd.add_argument("--mm-message", choices=("forward-backward", "serket"), default="forward-backward")
    cmd.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="VAE training arithmetic: auto (default: bf16 on a CUDA GPU or a CPU with native bf16, AMX or "
        "AVX512-BF16; fp32 elsewhere), bf16 (autocast) or fp32; run.json records what each update used",
    )


def _add_sequence_options(cmd: argparse.ArgumentParser) -> None:
    """How the points form many sequences (default: one sequence)."""
    cmd.add_argument(
        "--lengths",
        metavar="FILE",
        help="the points form several sequences: text or .npy with one positive integer per sequence, "
        "in order, summing to N",
    )
    cmd.add_argument(
        "--sequence-key",
        metavar="COLUMN",
        help="column of the --data file (Parquet, Feather or CSV with a header) holding each row's sequence id; "
        "the rows of one sequence contiguous, in order",
    )


def _add_cluster_options(cmd: argparse.ArgumentParser) -> None:
    """Where the actors run and what each may use."""
    cmd.add_argument("--address", help='Ray cluster address ("auto" or host:port); default: a local Ray')
    cmd.add_argument(
        "--resources",
        type=_resources_json,
        default=None,
        help='actor options per module kind or name, as JSON, e.g. \'{"vae": {"num_gpus": 1}}\' '
        '(num_cpus, num_gpus, memory, resources; default "auto")',
    )
    cmd.add_argument(
        "--reserve-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds to wait for the run's resources before failing (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _Parser(prog="serket-ray", description="Serket's VAE + GMM + MM model on Ray.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="learn the VAE + GMM + MM model")
    _add_graph_options(run)
    run.add_argument("--out", default="serket-out", help="output directory (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output directory")
    run.add_argument("--seed", type=_non_negative_int, default=0)
    _add_cluster_options(run)
    run.add_argument("--backend", choices=("ray", "local"), default="ray", help=argparse.SUPPRESS)
    run.add_argument("--quiet", action="store_true", help="print only errors")
    run.add_argument("--json", action="store_true", help="print a machine-readable summary at the end")
    run.add_argument(
        "--report", action="store_true", help="write an HTML report with figures to OUT/report/ at the end"
    )
    run.add_argument(
        "--force-unlock", action="store_true", help="take over OUT's lock left by a process on another host"
    )
    run.add_argument(
        "--threads",
        type=_positive_int,
        default=2,
        help="torch threads of the VAE (part of the run's configuration: results depend on it, "
        "placement does not; default 2)",
    )
    swp = sub.add_parser(
        "sweep", help="run independent pipelines for several seeds at once; report accuracy mean and std"
    )
    _add_graph_options(swp)
    swp.add_argument(
        "--seeds",
        type=parse_seeds,
        default=[0, 1, 2, 3],
        help="seeds: ranges and comma lists, e.g. 0-7 or 0,3,5-6 (default: 0-3)",
    )
    swp.add_argument(
        "--concurrent",
        type=_positive_int,
        default=None,
        help="at most this many pipelines at once (default: as many as the cluster's resources allow)",
    )
    swp.add_argument(
        "--out",
        default="serket-sweep",
        help="output directory; each seed's run goes to seed_<k>/ (default: %(default)s)",
    )
    swp.add_argument("--overwrite", action="store_true", help="allow writing into non-empty seed directories")
    _add_cluster_options(swp)
    swp.add_argument("--quiet", action="store_true", help="print only errors")
    swp.add_argument("--json", action="store_true", help="print a machine-readable summary at the end")
    rec = sub.add_parser("recog", help="classify novel data with a learned model (no training)")
    rec.add_argument("--model", required=True, help="output directory of a learning run")
    rec.add_argument("--data", required=True, help="data file (same formats as run)")
    rec.add_argument("--labels", help="labels file (only for scoring)")
    rec.add_argument("--data-key")
    rec.add_argument("--labels-key")
    _add_sequence_options(rec)
    rec.add_argument("--scale", choices=SCALE_MODES, default="none")
    rec.add_argument("--out", required=True, help="where to write class_recog.txt etc.")
    rec.add_argument("--overwrite", action="store_true")
    rec.add_argument("--no-mm", action="store_true", help="ignore the learned transitions")
    rec.add_argument("--quiet", action="store_true")
    rec.add_argument("--json", action="store_true")
    res = sub.add_parser("resume", help="continue a run from its last completed update")
    res.add_argument("out", help="the run's output directory")
    res.add_argument("--rounds", type=_positive_int, help="total rounds wanted (default: as started)")
    res.add_argument(
        "--from-last-intact", action="store_true", help="skip damaged checkpoints: continue from the last intact update"
    )
    res.add_argument("--address", help="Ray cluster address")
    res.add_argument(
        "--resources", type=_resources_json, default=None, help="actor options per module, as JSON (as for run)"
    )
    res.add_argument(
        "--reserve-timeout", type=_positive_float, default=60.0, help="seconds to wait for the run's resources"
    )
    res.add_argument("--backend", choices=("ray", "local"), default=None, help=argparse.SUPPRESS)
    res.add_argument("--quiet", action="store_true")
    res.add_argument("--json", action="store_true")
    res.add_argument(
        "--force-unlock", action="store_true", help="take over OUT's lock left by a process on another host"
    )
    res.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch threads of the VAE (default: as recorded in run.json)",
    )
    rep = sub.add_parser("report", help="write an HTML report with figures of a run to OUT/report/index.html")
    rep.add_argument("out", help="the run's output directory")
    rep.add_argument("--labels", help="labels file (same formats as run); default: those the run recorded, if any")
    rep.add_argument("--labels-key", help="array (.npz) or column (Parquet/Feather) holding the labels")
    rep.add_argument("--quiet", action="store_true", help="print only errors")
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output directory unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise SerketRayError(f"--out should be a directory, got an existing file: {out}")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not overwrite:
        what = "an earlier run" if (out / "run.json").exists() else "files that are not a serket-ray run"
        raise SerketRayError(f"--out {out} already holds {what}; choose another directory or pass --overwrite")


def _summarise(result: Any, args: Any, out: Path) -> dict[str, Any]:
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


def _load_and_import(recipe: TutorialRecipe) -> RunInputs:
    got = recipe.load()
    import actors.vae  # noqa: F401 - torch's import, paid here while Ray starts

    return got


def _load_while_ray_starts(recipe: TutorialRecipe, args: Any, out: Path) -> RunInputs:
    """``recipe.load()``; for a large data file on Ray, the local Ray starts meanwhile.

    Ray starts in this (main) thread, as ``ray.init`` needs, while a thread reads the
    data and imports torch.  The output directory and address are checked first; a
    bad data file is still reported before any actor starts (Ray is stopped again).
    """
    path = Path(args.data) if args.data else None
    if args.backend != "ray" or path is None or not path.is_file() or path.stat().st_size < EARLY_RAY_BYTES:
        return recipe.load()
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.executor import check_address, connect_ray, disconnect_ray

    check_out_dir(out, args.overwrite)
    check_address(args.address)
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(_load_and_import, recipe)
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
    out = Path(args.out)
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
    )
    orch.session.extra["cli"] = recipe.recorded()
    if not args.quiet:
        print(f"data: {source}: {describe(data, labels)}", flush=True)
    try:
        shown = ProgressDisplay(args.rounds, args.quiet)
        result = orch.run(args.rounds, on_update=shown.on_update, on_progress=shown.on_progress)
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

    report = make_report(args.out, labels=args.labels, labels_key=args.labels_key)
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
    out = Path(args.out)
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

    load_manifest(args.model)
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
    out = Path(args.out)
    check_out_dir(out, args.overwrite)
    result = recognise(args.model, data, out, labels=labels, use_mm=not args.no_mm, lengths=lengths)
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

    manifest = load_manifest(args.out)
    _lock(Path(args.out), "serket-ray resume", args.force_unlock)
    rounds = args.rounds or manifest.get("target_rounds") or 0
    shown = ProgressDisplay(rounds, args.quiet)
    result = Orchestrator.resume(
        args.out,
        rounds=args.rounds,
        address=args.address,
        from_last_intact=args.from_last_intact,
        backend=args.backend,
        on_update=shown.on_update,
        on_progress=shown.on_progress,
        resources=args.resources,
        reserve_timeout=args.reserve_timeout,
        **({} if args.threads is None else {"threads": args.threads}),
    )
    if result.already_complete and not args.quiet:
        print(f"{args.out} is already complete ({rounds} rounds); nothing changed")
    return _summarise(result, args, Path(args.out))


def quiet_local_ray(address: str | None) -> None:
    """Ask a local Ray for token authentication explicitly (``RAY_AUTH_MODE=token``).

    Ray >= 2.60 turns token authentication on for a new local cluster when
    ``RAY_AUTH_MODE`` is unset and logs a WARNING saying so on every run; set
    explicitly, the mode is the same and Ray says nothing.  Only for a local Ray
    (no ``--address``, no ``RAY_ADDRESS``) and only when the user has not chosen a
    mode: a cluster's own setting is left alone.  It must happen before Ray is
    imported, which reads the mode once.
    """
    if address or os.environ.get("RAY_ADDRESS") or "ray" in sys.modules:
        return
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def _end_line(text: str) -> None:
    """The command's last line, on stderr, after clearing a progress bar left on a terminal."""
    if sys.stdout.isatty():
        sys.stdout.write("\r\x1b[K")
        sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


def _lock(out: Path, command: str, force: bool) -> None:
    """Take ``out``'s run lock until this command ends (released by :func:`main`)."""
    if out.exists() and not out.is_dir():
        return  # check_out_dir says what is wrong
    runlock.hold(out, command, force).__enter__()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``serket-ray``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, getattr(args, "quiet", False))
    quiet_local_ray(getattr(args, "address", None))
    out = getattr(args, "out", None)
    try:
        if args.command in ("run", "resume"):
            again = (
                f"serket-ray: stopped at once ({{signal}}); the last complete update is kept; "
                f"`serket-ray resume {out}` continues"
            )
            with stopping.stop_on_signals(again):
                try:
                    (cmd_run if args.command == "run" else cmd_resume)(args)
                except stopping.Interrupted:
                    raise
                except BaseException as exc:  # whatever a library made of the signal, it was the signal
                    if stopping.requested() is not None:
                        raise stopping.Interrupted(stopping.requested()) from exc
                    raise
        elif args.command == "recog":
            cmd_recog(args)
        elif args.command == "sweep":
            cmd_sweep(args)
        elif args.command == "report":
            cmd_report(args)
        return 0
    except SerketRayError as exc:
        if args.debug:
            raise
        print(f"serket-ray: error: {exc}", file=sys.stderr)
        return 2
    except stopping.Interrupted as exc:
        kept = stopping.what_was_kept(out)
        then = (
            ""
            if kept.complete
            else f"; `serket-ray resume {out}` continues"
            if kept.resumable
            else "; nothing to resume"
        )
        _end_line(f"serket-ray: stopped by {exc.name} {kept.where()}{then}")
        return exc.exit_status
    except StorageError as exc:
        if args.debug:
            raise
        if args.command in ("run", "resume"):
            kept = stopping.what_was_kept(out)
            if kept.complete:
                then = "; the run itself is complete"
            else:
                then = (
                    f"; make room, then `serket-ray resume {out}` continues"
                    if kept.resumable
                    else "; nothing to resume"
                )
            _end_line(f"serket-ray: error: {exc}; stopped {kept.where()}{then}")
        else:
            _end_line(f"serket-ray: error: {exc}")
        return 1
    except KeyboardInterrupt:
        print("serket-ray: interrupted", file=sys.stderr)
        return 130
    finally:
        runlock.release_all()


def entry() -> NoReturn:
    """The ``serket-ray`` console script: :func:`main`, then a quick exit.

    By the time ``main`` returns, every file of the run is written, fsynced and
    renamed.  What a normal interpreter exit would still do is wait: Ray's exit
    hook sleeps 0.5 s before stopping the local Ray it started, and tearing down
    torch, pyarrow and their thread pools takes seconds more on a busy machine.
    So Ray is stopped here (without the sleep), output is flushed, and the
    process ends at once.
    """
    status = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()  # stops the processes of a local Ray this run started; only disconnects from a cluster
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
