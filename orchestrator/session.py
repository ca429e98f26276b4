"""A session: one graph's actors, its message routing, checkpoints and run.json.

Both ways in use a session: the Serket-style ``module.update()`` (the default
session, created on the first call) and :class:`orchestrator.Orchestrator`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors.gmm import GMM
from actors.module import Module, Observation
from actors.seeding import module_seeds
from messages import Message, ObservationData
from messages.errors import ConfigError
from orchestrator import checkpoint
from orchestrator.executor import LocalExecutor, RayExecutor, auto_resources, threads_for
from orchestrator.graph import Graph, build_graph

log = logging.getLogger(__name__)


@dataclasses.dataclass
class UpdateRecord:
    """What one module update did (kept in ``run.json``)."""

    module: str
    round: int
    seconds: float
    compute_seconds: float
    scalars: dict[str, Any]


class Session:
    """Runs one graph's module updates and routes their messages.

    Parameters
    ----------
    graph : Graph
    out_dir : path
        Where ``module%03d_<name>/`` directories and ``run.json`` go.
    seed : int
        Root seed; each module gets a child ``SeedSequence`` in graph order.
    address : str, optional
        Ray cluster address ("auto" or host:port); a local Ray when omitted.
    backend : {"ray", "local"}
        ``local`` runs the workers in this process (no Ray): for tests and
        benchmarks of the numerical pipeline.
    resources : dict, optional
        Module name or kind -> Ray actor options (``num_cpus``, ``num_gpus``,
        ``resources``) or "auto".
    """

    def __init__(
        self,
        graph: Graph,
        out_dir: str | os.PathLike[str],
        seed: int = 0,
        address: str | None = None,
        backend: str = "ray",
        resources: dict[str, Any] | None = None,
    ) -> None:
        if backend not in ("ray", "local"):
            raise ConfigError(f"backend should be 'ray' or 'local', got {backend!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed should be a non-negative integer, got {seed!r}")
        self.graph = graph
        self.out_dir = Path(out_dir)
        self.seed = int(seed)
        self.address = address
        self.backend = backend
        self.resources = dict(resources or {})
        self.labels = self._labels()
        self.executor: Any = None
        self.workers: dict[Module, Any] = {}
        self.refs: dict[tuple[Module, int], Any] = {}
        self.rounds: dict[Module, int] = {m: 0 for m in graph.learnable}
        self.records: list[UpdateRecord] = []
        self.placement: dict[str, Any] = {}
        self.started = time.time()

    def _labels(self) -> np.ndarray | None:
        for m in self.graph.modules:
            if isinstance(m, GMM) and m.category is not None:
                return m.labels()
        return None

    # -- start-up -----------------------------------------------------------
    def start(self) -> None:
        """Start the executor (Ray) and one worker per learnable module."""
        if self.executor is not None:
            return
        self.executor = RayExecutor(self.address) if self.backend == "ray" else LocalExecutor()
        seeds = module_seeds(self.seed, len(self.graph.modules))
        for obs in self.graph.observations:
            name = self.graph.name(obs)
            receiver = self.graph.name(obs.above[0]) if obs.above else name
            msg = ObservationData(sender=name, receiver=receiver, round=0, data=obs.data)
            self.refs[(obs, 0)] = self.executor.put(msg)  # once: every round reuses the reference
        for module in self.graph.learnable:
            index = self.graph.modules.index(module)
            res = self._resources_for(module)
            name = self.graph.name(module)
            above = self.graph.name(module.above[0]) if module.above else None
            below = self.graph.name(module.below[0]) if module.below else None
            cls, args = module.worker_spec(name, above, below, seeds[index], threads_for(res))
            self.workers[module] = self.executor.start(name, cls, args, res)
        for module, worker in self.workers.items():
            self.placement[self.graph.name(module)] = self.executor.node_of(worker)
        log.info("started %d workers on %s", len(self.workers), self.executor.name)

    def _resources_for(self, module: Module) -> dict[str, Any]:
        if self.backend != "ray":
            return {"num_cpus": os.cpu_count() or 1}
        res = self.resources.get(module.name, self.resources.get(module.kind, "auto"))
        return auto_resources(module.kind) if res == "auto" else dict(res)

    # -- one update ---------------------------------------------------------
    def update(self, module: Module) -> UpdateRecord:
        """Run one update of ``module`` with the latest messages addressed to it."""
        if module not in self.rounds:
            raise ConfigError(f"{module!r} is not a learnable module of this session's graph")
        self.start()
        t0 = time.perf_counter()
        round_index = self.rounds[module]
        inbox = {key: self.refs[(src, idx)] for key, (src, idx) in module.inbox_sources().items() if (src, idx) in self.refs}
        names = module.output_names()
        out_refs = self.executor.call(self.workers[module], "update", len(names), round=round_index, **inbox)
        for i, ref in enumerate(out_refs[:-1]):
            self.refs[(module, i)] = ref
        values = self.executor.get(out_refs)
        state = self.executor.get(self.executor.call(self.workers[module], "get_state", 1))[0]
        outputs = dict(zip(names, values))
        messages = {k: v for k, v in outputs.items() if isinstance(v, Message)}
        name = self.graph.name(module)
        meta = {"module": name, "round": round_index, "seed": self.seed, "schema_version": checkpoint.FORMAT_VERSION}
        scalars = checkpoint.write_update(
            self.out_dir / name, round_index, messages, outputs["report"], state, meta,
            lambda d: module.export(d, outputs, self.labels),
        )
        seconds = time.perf_counter() - t0
        record = UpdateRecord(name, round_index, seconds, float(outputs["report"].get("seconds", seconds)), scalars)
        self.records.append(record)
        self.rounds[module] = round_index + 1
        self.write_manifest()
        return record

    # -- run.json -------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The run's record: config, seed, per-round accuracy and seconds, placement."""
        rounds: dict[int, dict[str, Any]] = {}
        for rec in self.records:
            entry = rounds.setdefault(rec.round, {"round": rec.round, "seconds": {}, "compute_seconds": {}})
            entry["seconds"][rec.module] = round(rec.seconds, 4)
            entry["compute_seconds"][rec.module] = round(rec.compute_seconds, 4)
            if "accuracy" in rec.scalars:
                entry["accuracy"] = rec.scalars["accuracy"]
        modules = {}
        for m in self.graph.modules:
            entry = {"kind": m.kind, "config": m.config_dict()}
            if m.learnable:
                entry.update(self.placement.get(self.graph.name(m), {}))
            modules[self.graph.name(m)] = entry
        return {
            "format_version": checkpoint.FORMAT_VERSION,
            "seed": self.seed,
            "backend": self.backend,
            "address": self.address,
            "n_points": self.graph.modules[0].n_points(),
            "modules": modules,
            "rounds": [rounds[r] for r in sorted(rounds)],
            "updates": [dataclasses.asdict(r) for r in self.records],
            "wall_seconds": round(time.time() - self.started, 3),
            "python": platform.python_version(),
        }

    def write_manifest(self) -> None:
        """Write ``run.json`` atomically."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_json(self.out_dir / "run.json", self.manifest())

    def close(self) -> None:
        """Stop the workers (the Ray runtime itself stays up for the caller)."""
        if self.executor is not None:
            self.executor.shutdown()


def default_session(module: Module) -> Session:
    """The session of a Serket-style script: created on the first ``update()``.

    Outputs go to the current directory; the seed comes from ``SERKET_RAY_SEED``
    (default 0) and the cluster from ``RAY_ADDRESS`` (default: a local Ray).
    """
    session = getattr(module, "_session", None)
    if session is None:
        graph = build_graph(module)
        session = Session(
            graph,
            out_dir=Path.cwd(),
            seed=int(os.environ.get("SERKET_RAY_SEED", "0")),
            address=os.environ.get("RAY_ADDRESS") or None,
        )
        for m in graph.modules:
            m._session = session  # type: ignore[attr-defined]
    return session


__all__ = ["Observation", "Session", "UpdateRecord", "default_session"]
