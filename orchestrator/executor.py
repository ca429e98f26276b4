"""Where workers run: Ray actors (the real system) or this process (tests, benchmarks).

Both executors expose the same calls, so the session's scheduling code is the
same whichever runs it.  On Ray, all actors of one run are reserved together in
one placement group (:meth:`RayExecutor.reserve`): a run either gets everything
it needs or fails at once, naming what is missing, instead of hanging.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import socket
import time
import weakref
from typing import Any

from messages.errors import ConfigError
from orchestrator import stopping

log = logging.getLogger(__name__)


class LocalExecutor:
    """Runs workers as plain objects in this process; "references" are the values."""

    name = "local"

    def __init__(self) -> None:
        self.threads: int | None = None  # BLAS threads during a call (see set_threads)

    def set_threads(self, worker: Any, threads: int) -> None:
        """numpy's BLAS threads while this process runs a worker's calls (restored after each call)."""
        self.threads = int(threads)

    def reserve(
        self,
        resources: list[dict[str, Any]],
        labels: list[str] | None = None,
        strategy: str = "PACK",
        timeout: float = 60.0,
    ) -> list[int | None]:
        """Nothing to reserve in this process: every worker gets ``None`` (no bundle)."""
        return [None] * len(resources)

    def bundle_info(self, bundle: int | None) -> dict[str, Any]:
        return {}

    def start(
        self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any], bundle: int | None = None
    ) -> Any:
        return cls(*args)

    def put(self, value: Any) -> Any:
        return value

    def call(self, worker: Any, method: str, n_returns: int, **kwargs: Any) -> list[Any]:
        with blas_threads(self.threads):
            out = getattr(worker, method)(**kwargs)
        return list(out) if n_returns > 1 else [out]

    def get(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        return list(refs)

    def wait(self, refs: list[Any], timeout: float) -> bool:
        """Whether every result is ready (in this process a call has returned when it is)."""
        return True

    def is_actor_failure(self, exc: BaseException) -> bool:
        return False

    def kill(self, worker: Any) -> None:
        pass

    def node_of(self, worker: Any) -> dict[str, Any]:
        return {"node_id": None, "node_ip": "127.0.0.1", "resources": {}}

    def shutdown(self) -> None:
        pass


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, before anything starts or is written, when ``address`` cannot be reached.

    "auto" and "local" are accepted as they are (Ray resolves them); ``host:port``
    (optionally ``ray://host:port``) must accept a TCP connection within ``timeout``.

    Raises
    ------
    ConfigError
        The address is malformed or nothing listens there.
    """
    if not address or address in ("auto", "local"):
        return
    if not isinstance(address, str):
        raise ConfigError(f"address should be 'auto' or host:port, got {address!r}")
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address should be 'auto' or host:port (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"address should name a running Ray cluster, got {address!r}: nothing answers there ({exc})"
        ) from None


def connect_ray(address: str | None) -> None:
    """Start a local Ray, or join the cluster at ``address`` ("auto" or host:port).

    Raises
    ------
    ConfigError
        The cluster at ``address`` cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        # Workers on a cluster do not inherit this process's environment:
        # pass the OpenMP wait policy on (see actors/__init__.py).
        policy = {k: os.environ[k] for k in ("OMP_WAIT_POLICY",) if k in os.environ}
        if policy:
            kwargs["runtime_env"] = {"env_vars": policy}
    try:
        if address:
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"address should name a running Ray cluster, got {address!r}: {exc}") from None
        else:
            ray.init(include_dashboard=False, **kwargs)
    finally:
        stopping.reinstall()  # ray.init replaces the driver's SIGTERM handler with its own


def disconnect_ray() -> None:
    """``ray.shutdown()``: stop the local Ray this process started, or leave the cluster it joined."""
    import ray

    ray.shutdown()


def alive_node_resources() -> list[dict[str, float]]:
    """The total resources of each alive node of the connected cluster."""
    import ray

    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")]


def auto_resources(kind: str) -> dict[str, Any]:
    """Default resources per module kind on the connected cluster.

    The VAE gets one GPU when the cluster has one; otherwise most of the largest
    node's CPUs (modules of one pipeline run one after the other, so the GMM
    and MM take a quarter CPU each and leave the VAE the rest).
    """
    import ray

    total = ray.cluster_resources()
    node_cpus = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=1.0)
    if kind == "vae":
        if total.get("GPU", 0) >= 1:
            return {"num_cpus": 1, "num_gpus": 1}
        return {"num_cpus": max(1.0, node_cpus - 0.5), "num_gpus": 0}
    return {"num_cpus": 0.25, "num_gpus": 0}


PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

#: Actor options that take resources, and the resource each takes.
_RESOURCE_OPTIONS = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def actor_options(resources: dict[str, Any]) -> dict[str, Any]:
    """Ray actor options from a module's resources, with ``num_cpus`` made explicit.

    Ray schedules an actor without ``num_cpus`` as if it needed one CPU; saying
    so keeps the actor's request and its placement-group bundle the same.

    Raises
    ------
    ConfigError
        A resource amount is not a non-negative number.
    """
    if not isinstance(resources, dict):
        raise ConfigError(f"actor resources should be a dict like {{'num_cpus': 1}}, got {resources!r}")
    opts = dict(resources)
    # issue 12 hook: "shards" (per module, as in {"gmm": {"shards": 4}}) is not an actor option.  1 is today's
    # one actor; more runs only through orchestrator.shard_group.ShardedPipeline (GMM + MM) for now.
    shards = opts.pop("shards", 1)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"'shards' should be a positive integer, got {shards!r}")
    if shards > 1:
        raise ConfigError(
            f"'shards': {shards} is not wired into a whole run yet; the sharded GMM + MM run through "
            "orchestrator.shard_group.ShardedPipeline (bench/shards.py); use 'shards': 1 or leave it out"
        )
    opts.setdefault("num_cpus", 1)
    custom = opts.get("resources") or {}
    if not isinstance(custom, dict):
        raise ConfigError(f"'resources' should map custom resource names to amounts, got {custom!r}")
    for key, value in [*((k, opts[k]) for k in _RESOURCE_OPTIONS if k in opts), *custom.items()]:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"resource {key!r} should be a non-negative number, got {value!r}")
    return opts


def bundle_of(resources: dict[str, Any]) -> dict[str, float]:
    """The placement-group bundle an actor with these options needs.

    Parameters
    ----------
    resources : dict
        Ray actor options: ``num_cpus``, ``num_gpus``, ``memory`` (bytes) and
        ``resources`` (custom name -> amount); other options are ignored.

    Returns
    -------
    dict
        Resource name -> amount, zero amounts left out (empty for an actor that
        needs nothing: such actors are left out of the group, as a bundle
        cannot be empty).
    """
    opts = actor_options(resources)
    bundle = {name: float(opts[key]) for key, name in _RESOURCE_OPTIONS.items() if opts.get(key)}
    bundle.update({str(k): float(v) for k, v in (opts.get("resources") or {}).items() if v})
    return bundle


def _plain(resources: dict[str, float]) -> dict[str, float]:
    """Cluster resources without Ray's per-group and per-node bookkeeping entries."""
    return {k: v for k, v in resources.items() if "_group_" not in k and not k.startswith(("node:", "bundle_group"))}


def _fmt(value: float, key: str) -> str:
    if key in ("memory", "object_store_memory"):
        return f"{value / 2**30:.3g} GiB"
    return f"{value:g}"


def shortfall(
    bundles: list[dict[str, float]],
    cluster: dict[str, float],
    available: dict[str, float],
    node_max: dict[str, float],
) -> list[str]:
    """What the bundles ask for that the cluster cannot give, one line per resource.

    Parameters
    ----------
    bundles : list of dict
        Resource name -> amount, one per actor.
    cluster, available : dict
        ``ray.cluster_resources()`` and ``ray.available_resources()``.
    node_max : dict
        Resource name -> the most any one alive node has.

    Returns
    -------
    list of str
        Empty when the cluster as a whole could hold the bundles (they are
        then only held up by other work, or by the placement strategy).
    """
    eps = 1e-6
    lines = []
    for key in sorted({k for b in bundles for k in b}):
        asked = sum(b.get(key, 0.0) for b in bundles)
        largest = max(b.get(key, 0.0) for b in bundles)
        total, free, per_node = cluster.get(key, 0.0), available.get(key, 0.0), node_max.get(key, 0.0)
        if total <= 0:
            lines.append(f"{key!r}: asked {_fmt(asked, key)}, the cluster has none")
        elif asked > total + eps:
            lines.append(f"{key!r}: asked {_fmt(asked, key)} in all, the cluster has {_fmt(total, key)}")
        elif largest > per_node + eps:
            lines.append(f"{key!r}: one actor asks {_fmt(largest, key)}, the largest node has {_fmt(per_node, key)}")
        elif asked > free + eps:
            lines.append(
                f"{key!r}: asked {_fmt(asked, key)}, only {_fmt(free, key)} of {_fmt(total, key)} free now "
                "(other work holds the rest)"
            )
    return lines


class RayExecutor:
    """Runs each worker as a Ray actor; messages travel as object references.

    Attributes
    ----------
    placement_group : ray.util.placement_group.PlacementGroup or None
        The run's reservation, made by :meth:`reserve`.
    bundles : list of dict
        The group's bundles (resource name -> amount).
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        connect_ray(address)
        import ray

        self._ray = ray
        self.actors: list[Any] = []
        self.placement_group: Any = None
        self.bundles: list[dict[str, float]] = []
        self.strategy: str | None = None
        self._finalizer: weakref.finalize | None = None

    def reserve(
        self,
        resources: list[dict[str, Any]],
        labels: list[str] | None = None,
        strategy: str = "PACK",
        timeout: float = 60.0,
    ) -> list[int | None]:
        """Reserve every actor's resources at once in one placement group.

        Parameters
        ----------
        resources : list of dict
            Ray actor options per actor (``num_cpus``, ``num_gpus``, ``memory``,
            ``resources``).
        labels : list of str, optional
            Actor names, for the error message.
        strategy : {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}
        timeout : float
            Seconds to wait for the reservation.

        Returns
        -------
        list of (int or None)
            Per actor, its bundle index, or ``None`` for an actor that needs no
            resources (left out of the group: a bundle cannot be empty).

        Raises
        ------
        ConfigError
            The reservation was not granted within ``timeout`` seconds (the group
            is removed again); the message names what was asked and what the
            cluster has and has free.
        """
        from ray.exceptions import GetTimeoutError
        from ray.util.placement_group import placement_group

        if strategy not in PLACEMENT_STRATEGIES:
            raise ConfigError(f"placement strategy should be one of {PLACEMENT_STRATEGIES}, got {strategy!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"reservation timeout should be a positive number of seconds, got {timeout!r}")
        labels = list(labels) if labels is not None else [f"actor {i}" for i in range(len(resources))]
        self.release()
        indices: list[int | None] = []
        bundles: list[dict[str, float]] = []
        for res in resources:
            bundle = bundle_of(res)
            indices.append(len(bundles) if bundle else None)
            if bundle:
                bundles.append(bundle)
        if not bundles:
            return indices
        with stopping.deferred():
            pg = placement_group(bundles, strategy=strategy)
        # Removed when this executor is: a session dropped without close() gives its
        # reservation back once it is garbage collected, as its actors end with their handles.
        self._finalizer = weakref.finalize(self, _remove_group, pg)
        with stopping.deferred():
            ready = pg.ready()
        waited = min(1.0, timeout)
        try:
            try:
                self.get([ready], timeout=waited)
            except GetTimeoutError:
                # Sessions of this process dropped without close() may still hold the
                # resources until the cycle collector runs: run it, then wait on.
                gc.collect()
                self.get([ready], timeout=max(timeout - waited, 0.001))
        except GetTimeoutError:
            self._finalizer()
            raise ConfigError(self._refusal(bundles, indices, labels, strategy, timeout)) from None
        self.placement_group, self.bundles, self.strategy = pg, bundles, strategy
        log.info("reserved %d bundles (%s): %s", len(bundles), strategy, bundles)
        return indices

    def _refusal(
        self,
        bundles: list[dict[str, float]],
        indices: list[int | None],
        labels: list[str],
        strategy: str,
        timeout: float,
    ) -> str:
        cluster = _plain(self._ray.cluster_resources())
        available = _plain(self._ray.available_resources())
        node_max: dict[str, float] = {}
        for node in self._ray.nodes():
            if node.get("Alive"):
                for key, value in node.get("Resources", {}).items():
                    node_max[key] = max(node_max.get(key, 0.0), float(value))
        missing = shortfall(bundles, cluster, available, node_max)
        asked = ", ".join(f"{label} {bundles[i]}" for label, i in zip(labels, indices) if i is not None)
        keys = sorted({k for b in bundles for k in b} | {"CPU", "GPU"})
        has = {k: cluster.get(k, 0.0) for k in keys}
        free = {k: available.get(k, 0.0) for k in keys}
        why = (
            "; ".join(missing)
            if missing
            else (
                f"nothing is missing from the cluster as a whole, but the {strategy} strategy cannot place the "
                "actors on its nodes"
            )
        )
        return (
            f"the run's actors could not be reserved within {timeout:g} s: {why}. Asked: {asked}; the cluster "
            f"has {has}, "
            f"{free} free. Ask for less (resources=... or --resources) or add nodes with what is missing."
        )

    def bundle_info(self, bundle: int | None) -> dict[str, Any]:
        """What run.json records of a worker's reservation."""
        if bundle is None or self.placement_group is None:
            return {"placement_group": None}
        return {
            "placement_group": {
                "id": self.placement_group.id.hex(),
                "strategy": self.strategy,
                "bundle_index": bundle,
                "bundle": self.bundles[bundle],
            },
        }

    def start(
        self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any], bundle: int | None = None
    ) -> Any:
        """Start ``cls(*args)`` as an actor, inside bundle ``bundle`` of the run's placement group."""
        opts = actor_options(resources)
        custom = opts.pop("resources", None)
        actor_cls = self._ray.remote(**opts, **({"resources": custom} if custom else {}))(cls)
        extra: dict[str, Any] = {}
        if bundle is not None and self.placement_group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            extra["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self.placement_group, placement_group_bundle_index=bundle
            )
        with stopping.deferred():
            actor = actor_cls.options(name=None, **extra).remote(*args)
        self.actors.append(actor)
        return actor

    def put(self, value: Any) -> Any:
        with stopping.deferred():
            return self._ray.put(value)

    def call(self, worker: Any, method: str, n_returns: int, **kwargs: Any) -> list[Any]:
        with stopping.deferred():
            refs = getattr(worker, method).options(num_returns=n_returns).remote(**kwargs)
        return list(refs) if n_returns > 1 else [refs]

    #: Longest single wait inside Ray's core: a stop signal is acted on within this.
    SLICE = 0.25

    def get(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        """The results, waiting at most ``timeout`` seconds (in slices, so that a stop signal is not held back).

        Raises
        ------
        ray.exceptions.GetTimeoutError
            Not every result is ready within ``timeout``.
        """
        from ray.exceptions import GetTimeoutError

        if not self.wait(refs, timeout=float("inf") if timeout is None else timeout, fetch_local=True):
            raise GetTimeoutError(f"{len(refs)} results not ready within {timeout} s")
        with stopping.deferred():
            return list(self._ray.get(refs))

    def wait(self, refs: list[Any], timeout: float, fetch_local: bool = False) -> bool:
        """Whether every result is ready (or failed) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            with stopping.deferred():
                ready, _ = self._ray.wait(
                    refs, num_returns=len(refs), timeout=max(0.0, min(self.SLICE, left)), fetch_local=fetch_local
                )
            if len(ready) == len(refs):
                return True
            if left <= self.SLICE:
                return False

    def node_of(self, worker: Any) -> dict[str, Any]:
        with stopping.deferred():
            ref = worker.__ray_call__.remote(_where)
        return self.get([ref], timeout=120)[0]

    def set_threads(self, worker: Any, threads: int) -> None:
        """numpy's BLAS threads in the actor's process (Ray would give it ``OMP_NUM_THREADS`` from its CPUs)."""
        with stopping.deferred():
            ref = worker.__ray_call__.remote(_set_blas_threads, int(threads))
        self.get([ref], timeout=120)

    def is_actor_failure(self, exc: BaseException) -> bool:
        """Failures a restart can cure: the actor or its node died, objects were lost, or a wait timed out."""
        from ray import exceptions as rex

        return isinstance(exc, (rex.RayActorError, rex.ObjectLostError, rex.GetTimeoutError, rex.NodeDiedError))

    def kill(self, worker: Any) -> None:
        try:
            with stopping.deferred():
                self._ray.kill(worker, no_restart=True)
        except Exception:
            log.debug("actor already gone", exc_info=True)

    def release(self) -> None:
        """Remove the run's placement group (its actors, if any are left, end with it)."""
        if self._finalizer is not None:
            self._finalizer()  # runs once
            self._finalizer = None
        self.placement_group, self.bundles, self.strategy = None, [], None

    def shutdown(self) -> None:
        """Stop this run's actors and give back its reservation."""
        for actor in self.actors:
            self.kill(actor)
        self.actors.clear()
        self.release()


def _remove_group(pg: Any) -> None:
    """Remove a placement group, quietly when Ray or the group is gone already."""
    try:
        import ray
        from ray.util.placement_group import remove_placement_group

        if ray.is_initialized():
            remove_placement_group(pg)
    except Exception:
        log.debug("placement group already gone", exc_info=True)


def _where(worker: Any) -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "node_id": ctx.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "resources": ctx.get_assigned_resources(),
        "pid": os.getpid(),
    }


def blas_threads(threads: int | None) -> Any:
    """A context limiting numpy's BLAS (OpenBLAS, MKL, ...) to ``threads`` threads; nothing for None."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(threads), user_api="blas")


def _set_blas_threads(worker: Any, threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # for the rest of this actor process
