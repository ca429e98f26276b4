"""Where workers run: Ray actors (the real system) or this process (tests, benchmarks).

Both executors expose the same calls, so the session's scheduling code is the
same whichever runs it.  On Ray, all actors of one run are reserved together in
one placement group (:meth:`RayExecutor.reserve`): a run either gets everything
it needs or fails at once, naming what is missing, instead of hanging.

The in-process executor is :mod:`orchestrator.local_executor`, the resource
arithmetic behind the reservation :mod:`orchestrator.placement`; both are
re-exported here.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import weakref
from typing import Any

from messages.errors import ConfigError
from orchestrator import stopping
from orchestrator.local_executor import LocalExecutor, blas_threads
from orchestrator.placement import PLACEMENT_STRATEGIES, actor_options, bundle_of, plain_resources, shortfall

__all__ = [
    "PLACEMENT_STRATEGIES",
    "LocalExecutor",
    "RayExecutor",
    "actor_options",
    "alive_node_resources",
    "auto_resources",
    "blas_threads",
    "bundle_of",
    "check_address",
    "connect_ray",
    "disconnect_ray",
    "shortfall",
]

log = logging.getLogger(__name__)


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
    """``ray.shutdown()``: stop the local Ray this process started, or leave the cluster it joined.

    A local Ray's autoscaler monitor is stopped first (:func:`stop_local_monitor`).
    """
    import ray

    stop_local_monitor()
    ray.shutdown()


def stop_local_monitor() -> bool:
    """Kill the autoscaler monitor of the local Ray this process started; True if one was running.

    ``ray.shutdown()`` sends each process it started SIGTERM and gives it a second before
    SIGKILL; the raylet and the GCS exit in milliseconds, but the monitor (Ray 2.60) lets
    the second pass, which was 1.0 s of a 1.1 s shutdown here.  A local single-node Ray
    has nothing for the monitor to scale, so it is killed at once.  Nothing is done for a
    Ray this process only joined (its processes are the cluster's), nor where Ray's
    internals differ from what this expects (``ray.shutdown()`` then waits as before).
    """
    try:
        from ray._private import ray_constants
        from ray._private import worker as ray_worker

        node = getattr(ray_worker, "_global_node", None)
        if node is None or not node.is_head():
            return False
        infos = list(node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []))
        killed = False
        for info in infos:
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(timeout=10)
                killed = True
        return killed
    except Exception:  # Ray's private layout changed: fall back to its own shutdown
        log.debug("could not stop the local Ray's monitor first", exc_info=True)
        return False


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
        cluster = plain_resources(self._ray.cluster_resources())
        available = plain_resources(self._ray.available_resources())
        node_max: dict[str, float] = {}
        for node in self._ray.nodes():
            if node.get("Alive"):
                for key, value in node.get("Resources", {}).items():
                    node_max[key] = max(node_max.get(key, 0.0), float(value))
        missing = shortfall(bundles, cluster, available, node_max)
        asked = ", ".join(f"{label} {bundles[i]}" for label, i in zip(labels, indices, strict=True) if i is not None)
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

    def set_threads(self, worker: Any, threads: int, wait: bool = True) -> Any:
        """numpy's BLAS threads in the actor's process (Ray would give it ``OMP_NUM_THREADS`` from its CPUs).

        With ``wait`` False the call's reference is returned instead of waited for, so that several
        actors start (spawn, import, ``__init__``) at the same time; :meth:`get` it later.
        """
        with stopping.deferred():
            ref = worker.__ray_call__.remote(_set_blas_threads, int(threads))
        if not wait:
            return ref
        self.get([ref], timeout=120)
        return None

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


def _set_blas_threads(worker: Any, threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # for the rest of this actor process
