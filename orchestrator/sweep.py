"""Seed sweeps: several independent pipelines at once on one Ray cluster.

Each seed gets its own graph, its own :class:`~orchestrator.api.Orchestrator`
(run from its own thread on the driver), its own placement group and its own
output directory ``<out>/seed_<k>``.  As many pipelines run at once as the
cluster's nodes can hold; the rest wait for a free slot.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from actors.module import Module
from messages.errors import ConfigError, SerketRayError
from orchestrator import storage
from orchestrator.api import Orchestrator
from orchestrator.checkpoint import atomic_write_json
from orchestrator.executor import alive_node_resources, auto_resources, bundle_of, connect_ray
from orchestrator.graph import build_graph
from orchestrator.storage import RemotePath, RunPath

log = logging.getLogger(__name__)

#: Actor options per module kind in a sweep: one CPU for the VAE, none reserved for
#: the GMM and MM (a pipeline's modules run one after the other, so while the GMM
#: or MM works its VAE's CPU is idle).  Two pipelines fit on two cores.
SWEEP_RESOURCES: dict[str, dict[str, Any]] = {
    "vae": {"num_cpus": 1, "num_gpus": 0},
    "gmm": {"num_cpus": 0},
    "mm": {"num_cpus": 0},
}


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One seed's run.

    Attributes
    ----------
    seed : int
    accuracy : float or None
        Accuracy after the last round (``None`` without labels or when the run failed).
    seconds : float
        Wall time of the run, start-up included.
    out_dir : Path or RemotePath
    error : str or None
        ``"<ExceptionType>: <message>"`` when the run failed.
    """

    seed: int
    accuracy: float | None
    seconds: float
    out_dir: RunPath
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`sweep`.

    Attributes
    ----------
    rows : list of SweepRow
        One per seed, in the order the seeds were given.
    concurrent : int
        Pipelines run at once.
    total_seconds : float
        Wall time of the whole sweep.
    resources : dict
        Module kind or name -> actor options each pipeline ran with.
    """

    rows: list[SweepRow]
    concurrent: int
    total_seconds: float
    resources: dict[str, Any]

    @property
    def accuracies(self) -> np.ndarray:
        """Final accuracies of the runs that have one, shape (n_scored,)."""
        return np.array([r.accuracy for r in self.rows if r.accuracy is not None], dtype=float)

    @property
    def mean(self) -> float | None:
        """Mean final accuracy over the seeds (``None`` when no run has one)."""
        acc = self.accuracies
        return float(acc.mean()) if acc.size else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1) of the final accuracy; 0 for one seed."""
        acc = self.accuracies
        if not acc.size:
            return None
        return float(acc.std(ddof=1)) if acc.size > 1 else 0.0

    def table(self) -> str:
        """The rows as a text table, then the mean and standard deviation."""
        lines = [f"{'seed':>6}  {'accuracy':>8}  {'seconds':>8}"]
        for r in self.rows:
            acc = "-" if r.accuracy is None else f"{r.accuracy:.4f}"
            lines.append(f"{r.seed:>6}  {acc:>8}  {r.seconds:>8.1f}" + (f"  failed: {r.error}" if r.error else ""))
        if self.mean is not None:
            lines.append(f"{'mean':>6}  {self.mean:>8.4f}")
            lines.append(f"{'std':>6}  {self.std:>8.4f}")
        lines.append(f"{len(self.rows)} seeds, {self.concurrent} at once, {self.total_seconds:.1f} s in all")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``sweep.json`` holds)."""
        return {
            "rows": [{**dataclasses.asdict(r), "out_dir": str(r.out_dir)} for r in self.rows],
            "mean_accuracy": self.mean,
            "std_accuracy": self.std,
            "concurrent": self.concurrent,
            "total_seconds": round(self.total_seconds, 3),
            "resources": self.resources,
        }


def pipeline_resources(modules: list[Module], resources: dict[str, Any] | None) -> dict[str, Any]:
    """Actor options per module for one sweep pipeline: ``SWEEP_RESOURCES`` for
    the kinds in the graph, overridden by ``resources`` (name or kind keys)."""
    kinds = {m.kind for m in build_graph(*modules).learnable}
    out: dict[str, Any] = {k: dict(v) for k, v in SWEEP_RESOURCES.items() if k in kinds}
    out.update(resources or {})
    return out


def pipeline_bundles(modules: list[Module], resources: dict[str, Any]) -> list[dict[str, float]]:
    """The non-empty placement-group bundles one pipeline reserves.

    Parameters
    ----------
    modules : list of Module
        One pipeline's graph.
    resources : dict
        Module name or kind -> actor options or "auto".

    Returns
    -------
    list of dict
        Resource name -> amount, one per actor that needs any resource.
    """
    bundles = []
    for m in build_graph(*modules).learnable:
        res = resources.get(m.name, resources.get(m.kind, "auto"))
        bundle = bundle_of(auto_resources(m.kind) if res == "auto" else res)
        if bundle:
            bundles.append(bundle)
    return bundles


def pipelines_that_fit(bundles: list[dict[str, float]], nodes: list[dict[str, float]], limit: int) -> int:
    """How many copies of a pipeline's bundles fit on the nodes (first fit, largest bundle first).

    Parameters
    ----------
    bundles : list of dict
        One pipeline's bundles (resource name -> amount).
    nodes : list of dict
        Each node's resources (resource name -> amount).
    limit : int
        Stop counting here.

    Returns
    -------
    int
        Between 0 and ``limit``.
    """
    if not bundles:
        return limit
    free = [dict(n) for n in nodes]
    order = sorted(bundles, key=lambda b: -sum(b.values()))
    eps = 1e-9
    for count in range(limit):
        for bundle in order:
            node = next((n for n in free if all(n.get(k, 0.0) + eps >= v for k, v in bundle.items())), None)
            if node is None:
                return count
            for k, v in bundle.items():
                node[k] -= v
    return limit


def concurrency(bundles: list[dict[str, float]], n_seeds: int, max_concurrent: int | None = None) -> int:
    """Pipelines to run at once on the connected cluster.

    Counts how many pipelines the alive nodes' total resources hold (what
    ``ray.cluster_resources()`` sums), not what is free this instant: Ray's view
    of free resources lags behind runs that just ended.  At least one: a
    pipeline that cannot fit at all fails with a :class:`ConfigError` naming
    what is missing.
    """
    limit = n_seeds if max_concurrent is None else min(n_seeds, max_concurrent)
    return max(1, pipelines_that_fit(bundles, alive_node_resources(), limit))


def _checked(seeds: list[int], rounds: int, max_concurrent: int | None) -> list[int]:
    """The seeds as ints, once :func:`sweep`'s arguments are checked (a :class:`ConfigError` otherwise)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds should name at least one seed, got none")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"each seed should be given once, got {seeds}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds should be a positive integer, got {rounds!r}")
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1
    ):
        raise ConfigError(f"max_concurrent should be a positive integer, got {max_concurrent!r}")
    return seeds


def sweep(
    build_modules: Callable[[], list[Module]],
    seeds: list[int],
    out_dir: str | os.PathLike[str] | RemotePath,
    rounds: int,
    address: str | None = None,
    resources: dict[str, Any] | None = None,
    max_concurrent: int | None = None,
    on_done: Callable[[SweepRow], None] | None = None,
    **session_options: Any,
) -> SweepResult:
    """Run one independent pipeline per seed, as many at once as the cluster allows.

    Parameters
    ----------
    build_modules : callable
        Returns a new graph's modules each call (modules hold per-graph state,
        so no two runs may share them).
    seeds : list of int
        One run per seed, in ``out_dir/seed_<k>``.
    out_dir : path, URI or RemotePath
    rounds : int
        Rounds per run.
    address : str, optional
        Ray cluster address; a local Ray when omitted.
    resources : dict, optional
        Module kind or name -> actor options or "auto", over ``SWEEP_RESOURCES``
        (one CPU per VAE, none reserved for the GMM and MM).
    max_concurrent : int, optional
        At most this many pipelines at once (default: as many as fit).
    on_done : callable, optional
        Called with each seed's :class:`SweepRow` as it finishes (from the
        run's thread).
    **session_options
        Passed to each :class:`Orchestrator` (e.g. ``reserve_timeout``).

    Returns
    -------
    SweepResult
        Also written to ``out_dir/sweep.json``.

    Raises
    ------
    ConfigError
        Bad seeds or options.
    SerketRayError
        A problem every run would meet (e.g. resources the cluster lacks): no
        further seeds are started and the first such error is raised.
    """
    seeds = _checked(seeds, rounds, max_concurrent)
    out = storage.resolve(out_dir)  # a local path or a pyarrow.fs URI (orchestrator.storage)
    started = time.perf_counter()
    first = build_modules()
    res = pipeline_resources(first, resources)
    connect_ray(address)
    n_at_once = concurrency(pipeline_bundles(first, res), len(seeds), max_concurrent)
    log.info("sweep of %d seeds, %d at once, resources per pipeline %s", len(seeds), n_at_once, res)

    spare = {"modules": first}
    lock = threading.Lock()
    stop = threading.Event()
    fatal: list[BaseException] = []

    def one(seed: int) -> SweepRow | None:
        if stop.is_set():
            return None
        with lock:
            modules = spare.pop("modules", None)
        modules = modules if modules is not None else build_modules()
        run_dir = out / f"seed_{seed}"
        t0 = time.perf_counter()
        try:
            orch = Orchestrator(modules, run_dir, seed=seed, address=address, resources=res, **session_options)
            try:
                result = orch.run(rounds)
            finally:
                orch.close()
            row = SweepRow(seed, result.final_accuracy, time.perf_counter() - t0, run_dir)
        except Exception as exc:  # noqa: BLE001 - one seed's failure is recorded; the others go on
            if isinstance(exc, SerketRayError):
                stop.set()
                with lock:
                    fatal.append(exc)
            log.error("seed %d failed: %s: %s", seed, type(exc).__name__, exc)
            row = SweepRow(seed, None, time.perf_counter() - t0, run_dir, f"{type(exc).__name__}: {exc}")
        if on_done is not None:
            on_done(row)
        return row

    with ThreadPoolExecutor(max_workers=n_at_once, thread_name_prefix="sweep") as pool:
        rows = list(pool.map(one, seeds))
    if fatal:
        raise fatal[0]
    result = SweepResult([r for r in rows if r is not None], n_at_once, time.perf_counter() - started, res)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", result.as_dict())
    log.info("sweep done:\n%s", result.table())
    return result


__all__ = ["SWEEP_RESOURCES", "SweepResult", "SweepRow", "concurrency", "pipelines_that_fit", "sweep"]
