"""One run's workers: the executor, the reservation of their resources, starting and replacing them.

Where a worker's messages come from and go to is the session's
(:mod:`orchestrator.session`); this module only makes, places and stops workers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from actors.module import Module
from actors.seeding import module_seeds
from actors.state import WorkerState
from messages.errors import ConfigError
from orchestrator.executor import LocalExecutor, RayExecutor, auto_resources
from orchestrator.graph import Graph

log = logging.getLogger(__name__)

#: numpy's BLAS threads in every GMM and MM worker, sharded or not (the VAE's follow the run's thread count).
#: Their products are (N, K) by (K, d^2) at most: a second BLAS thread only adds hand-offs there, and beside a
#: busy core its spinning made a GMM update 10-30x slower (README, "GMM and MM on one BLAS thread").
MIXTURE_BLAS_THREADS = 1


def split_shards(module: Module, resources: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A module's shard count and the actor options of each of its workers.

    ``{"shards": S, ...}`` asks for S workers with the other options each.  Only
    the VAE takes S > 1 here (its data-parallel group,
    :class:`orchestrator.vae_group.VAEGroupWorker`); other modules keep the key
    for :func:`orchestrator.placement.actor_options` to judge.

    Raises
    ------
    ConfigError
        ``shards`` is not a positive integer.
    """
    if module.kind != "vae" or "shards" not in resources:
        return 1, resources
    rest = dict(resources)
    shards = rest.pop("shards")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"'shards' should be a positive integer, got {shards!r}")
    return shards, rest


def check_resources(resources: dict[str, Any] | None, graph: Graph, backend: str = "ray") -> dict[str, Any]:
    """Check a ``resources`` option: module name or kind -> actor options or "auto".

    ``shards`` above 1 (a module as a group of actors) needs ``backend`` "ray".

    Raises
    ------
    ConfigError
        Not a dict, a key that names no learnable module, or a value that is
        neither "auto" nor a dict of actor options.
    """
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise ConfigError(f"resources should map module names or kinds to actor options, got {resources!r}")
    known = {m.name for m in graph.learnable} | {m.kind for m in graph.learnable}
    # "shards" and "sharded" in a module's entry are checked by orchestrator.shard_plan.shard_plan
    for key, value in resources.items():
        if key not in known:
            raise ConfigError(f"resources key {key!r} names no module of the graph; use one of {sorted(known)}")
        if value != "auto" and not isinstance(value, dict):
            raise ConfigError(
                f"resources[{key!r}] should be \"auto\" or actor options like {{'num_cpus': 1}}, got {value!r}"
            )
        # the VAE's "shards" (its data-parallel group) needs Ray; the GMM's and MM's are shard_plan's
        vae_entry = key == "vae" or any(m.name == key and m.kind == "vae" for m in graph.learnable)
        shards = value.get("shards", 1) if isinstance(value, dict) and vae_entry else 1
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ConfigError(f"resources[{key!r}]['shards'] should be a positive integer, got {shards!r}")
        if shards > 1 and backend != "ray":
            raise ConfigError(f"resources[{key!r}]['shards']: {shards} needs the Ray backend, got backend {backend!r}")
    return dict(resources)


class WorkerPool:
    """The executor and one worker per learnable module of a graph.

    Parameters
    ----------
    graph : Graph
    backend : {"ray", "local"}
    address : str or None
        Ray cluster address; a local Ray when omitted.
    resources : dict
        Checked by :func:`check_resources`.
    placement_strategy : str
    reserve_timeout : float
    seed : int
        The run's root seed (each worker gets its module's child seed).
    threads : int
        torch and BLAS threads of every worker.
    timeout : float
        Seconds a state transfer may take.

    Attributes
    ----------
    executor : LocalExecutor or RayExecutor or None
        None until :meth:`open`, and again after a failed start.
    workers : dict of Module to worker
    placement : dict
        Module name -> node, process and bundle of its worker (recorded in run.json).
    """

    def __init__(
        self,
        graph: Graph,
        *,
        backend: str,
        address: str | None,
        resources: dict[str, Any],
        placement_strategy: str,
        reserve_timeout: float,
        seed: int,
        threads: int,
        timeout: float,
    ) -> None:
        self.graph = graph
        self.backend = backend
        self.address = address
        self.resources = resources
        self.placement_strategy = placement_strategy
        self.reserve_timeout = reserve_timeout
        self.seed = seed
        self.threads = threads
        self.timeout = timeout
        self._pending: list[Any] = []  # thread-setting calls of workers still starting (see start, settle)
        self.executor: Any = None
        self.workers: dict[Module, Any] = {}
        self.placement: dict[str, Any] = {}
        self.actor_resources: dict[Module, dict[str, Any]] = {}
        self.bundles: dict[Module, int | None] = {}
        #: Data-parallel VAEs: module -> (shards, each shard's actor options, each shard's bundle)
        self.groups: dict[Module, tuple[int, dict[str, Any], list[int | None]]] = {}
        # issue 12: modules run as shard groups elsewhere (orchestrator.shard_run) get no worker here, but
        # their shards' bundles are reserved in the same placement group (set before open()).
        self.skip: set[str] = set()
        self.extra_options: list[dict[str, Any]] = []
        self.extra_labels: list[str] = []
        self.extra_bundles: list[int | None] = []

    def open(self) -> Any:
        """Start the executor and reserve every worker's resources at once; returns the executor.

        Raises
        ------
        ConfigError
            The cluster cannot give the run what it asks for within ``reserve_timeout`` seconds.
        """
        executor = RayExecutor(self.address) if self.backend == "ray" else LocalExecutor()
        learnable = [m for m in self.graph.learnable if m.name not in self.skip]
        self.actor_resources = {m: self.resources_for(m) for m in learnable}  # fixed for the run: restarts reuse them
        shards = {m: split_shards(m, self.actor_resources[m]) for m in learnable}
        asked, labels, owner = [], [], []
        for m in learnable:
            count, each = shards[m]
            asked += [each] * count
            labels += [self.graph.name(m) if count == 1 else f"{self.graph.name(m)} shard {i}" for i in range(count)]
            owner += [m] * count
        bundles = executor.reserve(
            asked + list(self.extra_options),
            labels=labels + list(self.extra_labels),
            strategy=self.placement_strategy,
            timeout=self.reserve_timeout,
        )
        self.extra_bundles = list(bundles[len(asked) :])
        bundles = bundles[: len(asked)]
        self.bundles, self.groups = {}, {}
        for m in learnable:
            mine = [b for b, o in zip(bundles, owner, strict=True) if o is m]
            count, each = shards[m]
            if count == 1:
                self.bundles[m] = mine[0]
            else:
                self.bundles[m] = None  # the group's coordinator takes no resources; its shards have the bundles
                self.groups[m] = (count, each, mine)
        self.executor = executor
        return executor

    def resources_for(self, module: Module) -> dict[str, Any]:
        """The actor options of a module's worker: as given for its name or kind, else "auto"."""
        if self.backend != "ray":
            return {"num_cpus": os.cpu_count() or 1}
        res = self.resources.get(module.name, self.resources.get(module.kind, "auto"))
        return auto_resources(module.kind) if res == "auto" else dict(res)

    def start(self, module: Module, above: str | None, below: str | None, wait: bool = True) -> Any:
        """Start the worker of ``module`` (its neighbours named ``above`` and ``below``) in its bundle.

        With ``wait`` False the worker may still be starting when this returns: :meth:`settle` waits
        for every such worker (so that workers start side by side, not one after the other).
        """
        index = self.graph.modules.index(module)
        seeds = module_seeds(self.seed, len(self.graph.modules))
        res = self.actor_resources.get(module) or self.resources_for(module)
        name = self.graph.name(module)
        cls, args = module.worker_spec(name, above, below, seeds[index], self.threads)
        if module in self.groups:
            from orchestrator.vae_group import VAEGroupWorker, shard_threads

            count, each, bundles = self.groups[module]
            threads = shard_threads(self.threads, each)
            args = (*args[:-1], threads, count, each, self.executor.placement_group, bundles)
            cls, res = VAEGroupWorker, {"num_cpus": 0}
        worker = self.executor.start(name, cls, args, res, bundle=self.bundles.get(module))
        # numpy's BLAS threads are fixed too (its sums depend on the count).
        pending = self.executor.set_threads(
            worker, self.threads if module.kind == "vae" else MIXTURE_BLAS_THREADS, wait=wait
        )
        if pending is not None:
            self._pending.append(pending)
        self.workers[module] = worker
        return worker

    def settle(self) -> None:
        """Wait until every worker started with ``wait=False`` is up (its thread setting done)."""
        pending, self._pending = self._pending, []
        if pending:
            self.executor.get(pending, timeout=max(120.0, self.timeout))

    def record_placement(self, module: Module) -> None:
        """Note where a module's worker runs (node, process, bundle) for run.json."""
        self.placement[self.graph.name(module)] = {
            **self.executor.node_of(self.workers[module]),
            **self.executor.bundle_info(self.bundles.get(module)),
        }

    def call(self, module: Module, method: str, n_returns: int = 1, **kwargs: Any) -> list[Any]:
        """Call a method of a module's worker; one reference per return value."""
        return self.executor.call(self.workers[module], method, n_returns, **kwargs)

    def get_state(self, module: Module) -> WorkerState:
        """The worker's state (``get_state``), within ``timeout`` seconds."""
        return self.executor.get(self.call(module, "get_state"), timeout=self.timeout)[0]

    def set_state(self, module: Module, state: WorkerState) -> None:
        """Restore the worker's state (``set_state``), within ``timeout`` seconds."""
        self.executor.get(self.call(module, "set_state", state=state), timeout=self.timeout)

    def kill(self, module: Module) -> None:
        """Stop a module's worker (the reservation stays for its replacement)."""
        self.executor.kill(self.workers[module])

    def shutdown(self) -> None:
        """Stop the workers and give back their reservation."""
        if self.executor is not None:
            self.executor.shutdown()

    def abandon(self) -> None:
        """After a failed start: stop what was started and forget it."""
        self.executor.shutdown()
        self.executor = None
        self.workers.clear()
        self._pending.clear()
