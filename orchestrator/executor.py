"""Where workers run: Ray actors (the real system) or this process (tests, benchmarks).

Both executors expose the same four calls, so the session's scheduling code is
the same whichever runs it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import Any

from messages.errors import ConfigError

log = logging.getLogger(__name__)


class LocalExecutor:
    """Runs workers as plain objects in this process; "references" are the values."""

    name = "local"

    def start(self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any]) -> Any:
        return cls(*args)

    def put(self, value: Any) -> Any:
        return value

    def call(self, worker: Any, method: str, n_returns: int, **kwargs: Any) -> list[Any]:
        out = getattr(worker, method)(**kwargs)
        return list(out) if n_returns > 1 else [out]

    def get(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        return list(refs)

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
        raise ConfigError(f"address should name a running Ray cluster, got {address!r}: nothing answers there ({exc})") from None


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
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"address should name a running Ray cluster, got {address!r}: {exc}") from None
    else:
        ray.init(include_dashboard=False, **kwargs)


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
    """Runs each worker as a Ray actor; messages travel as object references."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        connect_ray(address)
        import ray

        self._ray = ray
        self.actors: list[Any] = []

    def start(self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any]) -> Any:
        opts = dict(resources)
        custom = opts.pop("resources", None)
        actor_cls = self._ray.remote(**opts, **({"resources": custom} if custom else {}))(cls)
        actor = actor_cls.options(name=None).remote(*args)
        self.actors.append(actor)
        return actor

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def call(self, worker: Any, method: str, n_returns: int, **kwargs: Any) -> list[Any]:
        refs = getattr(worker, method).options(num_returns=n_returns).remote(**kwargs)
        return list(refs) if n_returns > 1 else [refs]

    def get(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        return list(self._ray.get(refs, timeout=timeout))

    def node_of(self, worker: Any) -> dict[str, Any]:
        return self._ray.get(worker.__ray_call__.remote(_where), timeout=120)

    def is_actor_failure(self, exc: BaseException) -> bool:
        """Failures a restart can cure: the actor or its node died, objects were lost, or a wait timed out."""
        from ray import exceptions as rex

        return isinstance(exc, (rex.RayActorError, rex.ObjectLostError, rex.GetTimeoutError, rex.NodeDiedError))

    def kill(self, worker: Any) -> None:
        try:
            self._ray.kill(worker, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            log.debug("actor already gone", exc_info=True)

    def shutdown(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors.clear()


def _where(worker: Any) -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "node_id": ctx.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "resources": ctx.get_assigned_resources(),
        "pid": os.getpid(),
    }


def threads_for(resources: dict[str, Any]) -> int:
    """torch threads for an actor: its CPUs rounded up (at least one)."""
    return max(1, math.ceil(float(resources.get("num_cpus", 1) or 1)))
