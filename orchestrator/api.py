"""The orchestrator's Python API: run N rounds of a connected graph in one call."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from actors.module import Module
from messages.errors import ConfigError
from orchestrator.graph import build_graph
from orchestrator.session import Session, UpdateRecord

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
    out_dir : Path
    """

    accuracy: list[float]
    seconds: list[dict[str, float]]
    total_seconds: float
    out_dir: Path

    @property
    def final_accuracy(self) -> float | None:
        """Accuracy after the last round, if labels were given."""
        return self.accuracy[-1] if self.accuracy else None


class Orchestrator:
    """Schedules update rounds of a connected module graph on Ray.

    Parameters
    ----------
    modules : Module or list of Module
        Any module(s) of the connected graph (all connected modules are used).
    out_dir : path
        Output directory.
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
        out_dir: str | os.PathLike[str],
        seed: int = 0,
        address: str | None = None,
        resources: dict[str, Any] | None = None,
        backend: str = "ray",
    ) -> None:
        roots = [modules] if isinstance(modules, Module) else list(modules)
        if not roots:
            raise ConfigError("modules should name at least one module of the graph, got none")
        self.graph = build_graph(*roots)
        self.session = Session(self.graph, out_dir, seed=seed, address=address, backend=backend, resources=resources)

    def run(self, rounds: int, on_update: Callable[[UpdateRecord], None] | None = None) -> RunResult:
        """Run ``rounds`` rounds; each updates every module once, bottom-up.

        Parameters
        ----------
        rounds : int
        on_update : callable, optional
            Called with each :class:`UpdateRecord` (progress display).
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"rounds should be a positive integer, got {rounds!r}")
        start = time.perf_counter()
        self.session.start()
        for _ in range(rounds):
            for module in self.graph.learnable:
                record = self.session.update(module)
                if on_update is not None:
                    on_update(record)
        total = time.perf_counter() - start
        manifest = self.session.manifest()
        manifest["total_seconds"] = round(total, 3)
        from orchestrator.checkpoint import atomic_write_json

        atomic_write_json(self.session.out_dir / "run.json", manifest)
        return RunResult(
            accuracy=[r["accuracy"] for r in manifest["rounds"] if "accuracy" in r],
            seconds=[r["seconds"] for r in manifest["rounds"]],
            total_seconds=total,
            out_dir=self.session.out_dir,
        )

    def close(self) -> None:
        """Stop this run's actors."""
        self.session.close()
