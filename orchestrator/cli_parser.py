"""The ``serket-ray`` argument parser: its sub-commands, their options and the option types."""

from __future__ import annotations

import argparse
import json
from typing import Any, NoReturn

from orchestrator.data import SCALE_MODES


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


def _add_shard_options(cmd: argparse.ArgumentParser, resume: bool = False) -> None:
    """How many shard actors the GMM and the MM run as (issue 12)."""
    cmd.add_argument(
        "--shards",
        type=_positive_int,
        default=None,
        help="run the GMM and the MM as groups of S shard actors (default 1: one actor each); per module also "
        'in --resources, e.g. \'{"gmm": {"shards": 2, "num_cpus": 1}}\'' + ("; default: as recorded" if resume else ""),
    )
    cmd.add_argument(
        "--sharded",
        action="store_true",
        default=None,
        help="run the sharded GMM and MM algorithm even with one shard (the reference a sharded run equals)",
    )
    cmd.add_argument(
        "--placement",
        choices=("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
        default=None,
        help="how the run's placement group places its bundles (the VAE's and each shard's) on nodes "
        "(default PACK; SPREAD spreads the shards)",
    )
    cmd.add_argument(
        "--shard-block",
        type=_positive_int,
        default=None,
        help="points per block of a sharded run, a multiple of 256 (default 4096); at most one shard per block",
    )


def _add_run(sub: Any) -> None:
    """``serket-ray run``: learn the model."""
    run = sub.add_parser("run", help="learn the VAE + GMM + MM model")
    _add_graph_options(run)
    run.add_argument(
        "--out",
        "--storage",
        dest="out",
        default="serket-out",
        help="output directory, or a pyarrow.fs URI such as file:///abs/dir or s3://bucket/run (default: %(default)s)",
    )
    run.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output directory")
    run.add_argument("--seed", type=_non_negative_int, default=0)
    _add_cluster_options(run)
    _add_shard_options(run)
    run.add_argument(
        "--backend",
        choices=("ray", "local"),
        default="ray",
        help="ray (default): every module a Ray actor; local: every module in this process, no Ray "
        "(small runs, where Ray's start-up of several seconds dominates; no actor isolation or restarts)",
    )
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


def _add_sweep(sub: Any) -> None:
    """``serket-ray sweep``: one pipeline per seed."""
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


def _add_recog(sub: Any) -> None:
    """``serket-ray recog``: classify novel data with a learned model."""
    rec = sub.add_parser("recog", help="classify novel data with a learned model (no training)")
    rec.add_argument("--model", required=True, help="output directory (or storage URI) of a learning run")
    rec.add_argument("--data", required=True, help="data file (same formats as run)")
    rec.add_argument("--labels", help="labels file (only for scoring)")
    rec.add_argument("--data-key")
    rec.add_argument("--labels-key")
    _add_sequence_options(rec)
    rec.add_argument("--scale", choices=SCALE_MODES, default="none")
    rec.add_argument("--out", required=True, help="where to write class_recog.txt etc. (a directory or storage URI)")
    rec.add_argument("--overwrite", action="store_true")
    rec.add_argument("--no-mm", action="store_true", help="ignore the learned transitions")
    rec.add_argument("--quiet", action="store_true")
    rec.add_argument("--json", action="store_true")


def _add_resume(sub: Any) -> None:
    """``serket-ray resume``: continue a run."""
    res = sub.add_parser("resume", help="continue a run from its last completed update")
    res.add_argument("out", help="the run's output directory or storage URI")
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
    _add_shard_options(res, resume=True)
    res.add_argument("--backend", choices=("ray", "local"), default=None, help="as for run (default: the run's own)")
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


def _add_report(sub: Any) -> None:
    """``serket-ray report``: the HTML report of a run."""
    rep = sub.add_parser("report", help="write an HTML report with figures of a run to OUT/report/index.html")
    rep.add_argument("out", help="the run's output directory or storage URI")
    rep.add_argument("--labels", help="labels file (same formats as run); default: those the run recorded, if any")
    rep.add_argument("--labels-key", help="array (.npz) or column (Parquet/Feather) holding the labels")
    rep.add_argument("--quiet", action="store_true", help="print only errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _Parser(prog="serket-ray", description="Serket's VAE + GMM + MM model on Ray.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_sweep, _add_recog, _add_resume, _add_report):
        add(sub)
    return parser
