"""The orchestrator's Python API: run N rounds of a connected graph in one call."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from actors.module import Module
from messages.errors import CheckpointError, ConfigError
from orchestrator import checkpoint, run_dir, runlock
from orchestrator import resume as resume_mod
from orchestrator.checkpoint import atomic_write_json
from orchestrator.executor import check_address
from orchestrator.graph import build_graph
from orchestrator.run_dir import UpdateRecord
from orchestrator.session import DEFAULT_THREADS, ProgressCallback, Session
from orchestrator.storage import RemotePath, RunPath, resolve

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Outcome of :meth:`Orchestrator.run`.

    Attributes
    ----------
    accuracy : list of float
        GMM accuracy after each round (empty without labels).
    seconds : list of dict
        Per round, module directory name -> wall seconds of its update.
    total_seconds : float
        Wall time of ``run`` including start-up.
    out_dir : Path or RemotePath
    """

    accuracy: list[float]
    seconds: list[dict[str, float]]
    total_seconds: float
    out_dir: RunPath
    already_complete: bool = False

    @property
    def final_accuracy(self) -> float | None:
        """Accuracy after the last round, if labels were given."""
        return self.accuracy[-1] if self.accuracy else None


def _recorded_graph(out: RunPath, manifest: dict[str, Any]) -> list[Module]:
    """The modules of a CLI run, rebuilt from the recipe its run.json recorded."""
    if "cli" not in manifest:
        raise CheckpointError(
            f"{out} was started from Python; pass the same modules to Orchestrator.resume(out, modules)"
        )
    from orchestrator.recipe import TutorialRecipe

    return TutorialRecipe.from_recorded(manifest["cli"]).graph()


def _recorded_shards(manifest: dict[str, Any], options: dict[str, Any]) -> None:
    """Resume a sharded run on the shards it recorded, unless the caller names shards (then compared)."""
    recorded = manifest.get("shards")
    given = any(options.get(k) is not None for k in ("shards", "sharded", "shard_block"))
    resources = options.get("resources") or {}
    given = given or any(isinstance(v, dict) and ("shards" in v or "sharded" in v) for v in resources.values())
    if recorded and not given:
        options.update(shards=recorded["n_shards"], sharded=True, shard_block=recorded["block"])


def _result(manifest: dict[str, Any], total: float, out_dir: RunPath, complete: bool = False) -> RunResult:
    return RunResult(
        accuracy=[r["accuracy"] for r in manifest["rounds"] if "accuracy" in r],
        seconds=[r["seconds"] for r in manifest["rounds"]],
        total_seconds=total,
        out_dir=out_dir,
        already_complete=complete,
    )


class Orchestrator:
    """Schedules update rounds of a connected module graph on Ray.

    Parameters
    ----------
    modules : Module or list of Module
        Any module(s) of the connected graph (all connected modules are used).
    out_dir : path, URI or RemotePath
        Output directory: a local path or a ``pyarrow.fs`` URI such as
        ``"s3://bucket/run?endpoint_override=host:port&scheme=http"`` (see
        :mod:`orchestrator.storage`).
    seed : int
    address : str, optional
        "auto" or host:port of an existing Ray cluster; a local Ray otherwise.
    resources : dict, optional
        Module name or kind -> Ray actor options, e.g. ``{"vae": {"num_gpus": 1}}``.
    backend : {"ray", "local"}
        ``local`` runs everything in this process without Ray.

    Examples
    --------
    >>> orch = Orchestrator([vae, gmm, mm], "out", seed=0)   # doctest: +SKIP
    >>> result = orch.run(5)                                # doctest: +SKIP
    """

    def __init__(
        self,
        modules: Module | list[Module],
        out_dir: str | os.PathLike[str] | RemotePath,
        seed: int = 0,
        address: str | None = None,
        resources: dict[str, Any] | None = None,
        backend: str = "ray",
        **session_options: Any,
    ) -> None:
        roots = [modules] if isinstance(modules, Module) else list(modules)
        if not roots:
            raise ConfigError("modules should name at least one module of the graph, got none")
        self.graph = build_graph(*roots)
        if backend == "ray":
            check_address(address)
        self.session = Session(
            self.graph, out_dir, seed=seed, address=address, backend=backend, resources=resources, **session_options
        )

    def run(
        self,
        rounds: int,
        on_update: Callable[[UpdateRecord], None] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> RunResult:
        """Run ``rounds`` rounds; each updates every module once, bottom-up.

        Parameters
        ----------
        rounds : int
            Number of rounds.
        on_update : callable, optional
            Called with each :class:`UpdateRecord` (progress display).
        on_progress : callable, optional
            Called as ``on_progress(module name, info)`` while the VAE trains
            (epochs done, loss, seconds); see :meth:`Session.update`.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"rounds should be a positive integer, got {rounds!r}")
        self.session.extra["target_rounds"] = rounds
        with runlock.hold(self.session.out_dir, "Orchestrator.run"):
            self.session.write_manifest()  # a run killed before its first update can still be resumed
            return self._schedule(rounds, on_update, on_progress)

    def _schedule(
        self,
        rounds: int,
        on_update: Callable[[UpdateRecord], None] | None,
        on_progress: ProgressCallback | None = None,
    ) -> RunResult:
        start = time.perf_counter()
        self.session.start(watch_progress=on_progress is not None)
        lock = threading.Lock()  # the writer thread reports written updates while this one draws the epoch bar

        def written(record: UpdateRecord) -> None:
            if on_update is not None:
                with lock:
                    on_update(record)

        def progress(name: str, info: dict[str, Any]) -> None:
            if on_progress is not None:
                with lock:
                    on_progress(name, info)

        try:
            for r in range(rounds):
                for module in self.graph.learnable:
                    if self.session.rounds[module] > r:  # done before a resume
                        continue
                    self.session.submit(module, progress if on_progress is not None else None, written)
            self.session.drain()
        finally:
            self.session.drain(raise_error=False)  # no write outlives the run's lock
        total = time.perf_counter() - start
        manifest = self.session.manifest()
        manifest["total_seconds"] = round(total, 3)
        atomic_write_json(self.session.out_dir / "run.json", manifest)
        return _result(manifest, total, self.session.out_dir)

    @classmethod
    def resume(
        cls,
        out_dir: str | os.PathLike[str] | RemotePath,
        modules: Module | list[Module] | None = None,
        rounds: int | None = None,
        address: str | None = None,
        from_last_intact: bool = False,
        backend: str | None = None,
        on_update: Callable[[UpdateRecord], None] | None = None,
        on_progress: ProgressCallback | None = None,
        **session_options: Any,
    ) -> RunResult:
        """Continue the run in ``out_dir`` from its last completed update.

        Parameters
        ----------
        out_dir : path, URI or RemotePath
            A run's output directory (with its ``run.json``), local or remote.
        modules : Module or list of Module, optional
            The same graph the run was started with; rebuilt from the recorded
            command line when the run was started by ``serket-ray run``.
        rounds : int, optional
            Total rounds wanted (default: those the run was started with).
        from_last_intact : bool
            When a checkpoint file is damaged, continue from the last update whose
            files are all intact instead of refusing.

        Raises
        ------
        CheckpointError
            Damaged files (named with their paths), or a different config or data.
        """
        out = resolve(out_dir)
        run_dir.load_manifest(out)  # says clearly when out is not a run, before anything is locked
        with runlock.hold(out, "Orchestrator.resume"):
            return cls._resume_locked(
                out, modules, rounds, address, from_last_intact, backend, on_update, on_progress, **session_options
            )

    @classmethod
    def _resume_locked(
        cls,
        out: RunPath,
        modules: Module | list[Module] | None,
        rounds: int | None,
        address: str | None,
        from_last_intact: bool,
        backend: str | None,
        on_update: Callable[[UpdateRecord], None] | None,
        on_progress: ProgressCallback | None,
        **session_options: Any,
    ) -> RunResult:
        manifest = run_dir.load_manifest(out)
        if modules is None:
            modules = _recorded_graph(out, manifest)
        recorded_threads = manifest.get("threads", DEFAULT_THREADS)
        threads = session_options.setdefault("threads", recorded_threads)
        if threads != recorded_threads:
            log.warning(
                "threads: recorded %s, given %s; the updates from here on round differently from an uninterrupted run",
                recorded_threads,
                threads,
            )
        _recorded_shards(manifest, session_options)
        target = rounds if rounds is not None else manifest.get("target_rounds")
        if target is None:
            raise ConfigError("rounds should be given: the run does not record how many it was started with")
        orch = cls(
            modules,
            out,
            seed=manifest["seed"],
            address=address,
            backend=backend or manifest.get("backend", "ray"),
            **session_options,
        )
        orch.session.extra = {k: manifest[k] for k in ("target_rounds", "cli") if k in manifest}
        orch.session.extra["target_rounds"] = target
        diffs = resume_mod.differences(manifest, orch.session)
        if diffs:
            raise CheckpointError(f"cannot resume {out}: the run differs from the one recorded: " + "; ".join(diffs))
        records = run_dir.records_of(manifest)
        intact, damage = run_dir.intact_prefix(out, records)
        if damage:
            if not from_last_intact:
                raise CheckpointError(
                    f"damaged checkpoint: {damage[0]}; nothing was loaded. Resume from the last intact update "
                    f"({len(intact)} of {len(records)}) with --from-last-intact"
                )
            log.warning("resuming from the last intact update (%d of %d): %s", len(intact), len(records), damage[0])
        n_steps = target * len(orch.graph.learnable)
        if len(intact) >= n_steps and not damage:
            log.info("%s is already complete (%d rounds); nothing to do", out, target)
            return _result(manifest, float(manifest.get("total_seconds", 0.0)), out, complete=True)
        checkpoint.remove_leftovers(out)
        try:
            orch.session.restore(intact)
            return orch._schedule(target, on_update, on_progress)
        finally:
            orch.close()

    def close(self) -> None:
        """Stop this run's actors."""
        self.session.close()
