"""The VAE as a group of S data-parallel Ray actors: one coordinator with the one-worker interface.

:class:`VAEGroupWorker` has the methods of :class:`actors.vae.VAEWorker`
(``update``, ``encode``, ``get_state``, ``set_state``, ``watch``, ``progress``,
``weights``), so the session runs it in the VAE's place.  It starts S
:class:`actors.vae_dp.VAEShardWorker` actors, makes their process group
(rendezvous at shard 0's node, gloo on CPU, NCCL on GPU), gives each shard its
rows once (one object reference per shard, kept across rounds) and, per update,
its rows of the GMM's prior means; the shards train in lockstep
(:func:`actors.vae_dp.train_epochs_sharded`: one all-reduce of all gradients per
step) and each encodes its own rows.

Why our own worker group rather than Ray Train's ``TorchTrainer``: a VAE update
here is one call among a round's messages, and the networks, Adam's state and
the torch stream must live on between rounds and be checkpointed with the
module (and restored after a restart) as one module's state.  ``TorchTrainer``
runs a training function to completion with its own checkpoint and storage
scheme; a set of long-lived actors with a process group is the actor model the
rest of the run already has.

Faults: when a shard dies during an update the coordinator ends its own process
(the shards it owns end with it), so the session sees its VAE actor die and
restarts it from the module's last checkpoint, as for a one-actor VAE; the
redone update gives the same results (every draw is from the module's seed).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, NoReturn

import numpy as np

from actors.config import VAEConfig
from actors.state import WorkerState
from actors.vae_dp import VAEShardWorker
from messages import Latents, ObservationData, PriorMeans, Reconstruction
from messages.errors import ConfigError

log = logging.getLogger(__name__)


class VAEShardActor(VAEShardWorker):
    """:class:`actors.vae_dp.VAEShardWorker` reachable at its Ray node's address."""

    def host(self) -> str:
        import ray

        return str(ray.util.get_node_ip_address())


def shard_threads(threads: int, shard_resources: dict[str, Any]) -> int:
    """Each shard's torch threads: the run's ``threads``, at most the CPUs a shard's bundle has (at least 1)."""
    cpus = shard_resources.get("num_cpus", 1)
    return max(1, min(int(threads), int(cpus))) if cpus else max(1, int(threads))


def shard_rows(n: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous row ranges [lo, hi) of ``shards`` near-equal parts of ``n`` points.

    Raises
    ------
    ConfigError
        ``shards`` is not an integer between 1 and ``n``.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= n:
        raise ConfigError(f"the VAE's shards should be an integer between 1 and the {n} points, got {shards!r}")
    cuts = np.linspace(0, n, shards + 1).round().astype(int)
    return [(int(cuts[i]), int(cuts[i + 1])) for i in range(shards)]


class VAEGroupWorker:
    """S data-parallel VAE shards behind the one-worker interface (a Ray actor itself).

    Parameters
    ----------
    config, name, above, below, seed, encoder, decoder, num_threads
        As :class:`actors.vae.VAEWorker`; ``num_threads`` is each shard's torch threads.
    shards : int
        S, at least 2 (one shard is :class:`actors.vae.VAEWorker` itself).
    shard_resources : dict
        Ray actor options of each shard (``num_cpus``, ``num_gpus``, ...).
    placement_group, bundles : optional
        The run's placement group and each shard's bundle index in it (the
        session reserves one bundle per shard); without them the shards go in
        this actor's own group, if any, else anywhere.
    """

    def __init__(
        self,
        config: VAEConfig,
        name: str,
        above: str,
        below: str,
        seed: Any,
        encoder: Any = None,
        decoder: Any = None,
        num_threads: int | None = None,
        shards: int = 2,
        shard_resources: dict[str, Any] | None = None,
        placement_group: Any = None,
        bundles: list[int | None] | None = None,
    ) -> None:
        import ray

        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 2:
            raise ConfigError(f"a VAE group should have at least 2 shards, got {shards!r}")
        self._ray = ray
        self.name, self.above, self.below = name, above, below
        self.config = config
        self.shards = shards
        opts = {"num_cpus": 1, **(shard_resources or {})}
        custom = opts.pop("resources", None)
        cls = ray.remote(**opts, **({"resources": custom} if custom else {}))(VAEShardActor)
        args = (config, name, above, below, seed, encoder, decoder, num_threads)
        self.workers = []
        for rank in range(shards):
            bundle = None if bundles is None else bundles[rank]
            strategy = self._strategy(placement_group, bundle)
            extra = {"scheduling_strategy": strategy} if strategy is not None else {}
            self.workers.append(cls.options(**extra).remote(*args, rank, shards))
        host, port = ray.get(self.workers[0].rendezvous.remote())
        ray.get([w.join.remote(host, port) for w in self.workers])
        self._rows: list[Any] | None = None
        self._rows_key: tuple[int, int] | None = None
        self._ranges: list[tuple[int, int]] = []
        log.info("%s: %d data-parallel shards joined at %s:%d", name, shards, host, port)

    @staticmethod
    def _strategy(placement_group: Any, bundle: int | None) -> Any:
        """A shard's place: its bundle of the run's group, else this actor's group (any bundle), else anywhere."""
        from ray.util import get_current_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if placement_group is not None and bundle is not None:
            return PlacementGroupSchedulingStrategy(
                placement_group=placement_group, placement_group_bundle_index=bundle
            )
        pg = get_current_placement_group()
        return None if pg is None else PlacementGroupSchedulingStrategy(placement_group=pg)

    def _get(self, refs: list[Any]) -> list[Any]:
        """``ray.get``, ending this process when a shard died (the session then restarts the VAE)."""
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayActorError as exc:
            self._end(exc)
        except self._ray.exceptions.RayTaskError as exc:
            # A shard's peer died mid all-reduce: the live shard's gloo call fails first ("Connection reset
            # by peer") and ray.get may see that error before the dead shard's own.  Then ask every shard.
            dead = self._dead_shard()
            if dead is None:
                raise
            self._end(f"{dead}; the live shards' error: {exc.cause!r}")

    #: Seconds to wait for each shard's answer when one may have died.
    PROBE_TIMEOUT = 30.0

    def _dead_shard(self) -> str | None:
        """The first shard that no longer answers (its error as text), or None when all of them do."""
        for i, w in enumerate(self.workers):
            try:
                self._ray.get(w.pid.remote(), timeout=self.PROBE_TIMEOUT)
            except (self._ray.exceptions.RayActorError, self._ray.exceptions.GetTimeoutError) as exc:
                return f"shard {i}: {type(exc).__name__}"
        return None

    def _end(self, why: object) -> NoReturn:
        log.error("%s: a shard died (%s); ending the group so the run restarts it", self.name, why)
        os._exit(1)

    def _load(self, data: np.ndarray) -> None:
        key = (id(data), data.shape[0])
        if self._rows is not None and self._rows_key == key:
            return
        self._ranges = shard_rows(data.shape[0], self.shards)
        self._rows = [self._ray.put(np.ascontiguousarray(data[lo:hi])) for lo, hi in self._ranges]
        parts = zip(self.workers, self._rows, self._ranges, strict=True)
        self._get([w.load_rows.remote(r, lo, data.shape[0]) for w, r, (lo, _) in parts])
        self._rows_key = key

    def watch(self, sink: Any) -> None:
        """Progress of shard 0 (every shard runs the same epochs) goes to ``sink``."""
        self._get([self.workers[0].watch.remote(sink)])

    def progress(self) -> dict[str, Any]:
        return self._get([self.workers[0].progress.remote()])[0]

    def update(
        self, round: int, data: ObservationData, prior_means: PriorMeans | None = None
    ) -> tuple[Latents, Reconstruction, dict[str, Any]]:
        """One data-parallel update; the same outputs as :meth:`actors.vae.VAEWorker.update`."""
        start = time.perf_counter()
        self._load(data.data)
        means = None if prior_means is None else np.asarray(prior_means.means)
        parts = self._get(
            [
                w.train.remote(round, None if means is None else means[lo:hi])
                for w, (lo, hi) in zip(self.workers, self._ranges, strict=True)
            ]
        )
        z = np.concatenate([p["z"] for p in parts])
        x_hat = np.concatenate([p["x_hat"] for p in parts])
        log_var = np.concatenate([p["log_var"] for p in parts])
        first = parts[0]
        seconds = time.perf_counter() - start
        log.info("%s round %d: %d shards, loss %.3f, %.2f s", self.name, round, self.shards, first["loss"][-1], seconds)
        latents = Latents(sender=self.name, receiver=self.above, round=round, z=z, lengths=data.lengths)
        recon = Reconstruction(sender=self.name, receiver=self.below, round=round, x_hat=x_hat, lengths=data.lengths)
        report = {
            "loss": first["loss"],
            "log_var": log_var,
            "seconds": seconds,
            "device": first["device"],
            "precision": first["precision"],
            "step": first["step"],
            "shards": self.shards,
            "shard_seconds": [p["seconds"] for p in parts],
        }
        return latents, recon, report

    def encode(self, data: np.ndarray, sample: bool = False) -> Any:
        """Encode with shard 0's networks (every shard holds the same)."""
        return self._get([self.workers[0].encode.remote(data, sample)])[0]

    def get_state(self) -> WorkerState:
        """Shard 0's state: every shard holds the same networks, optimiser and streams."""
        return self._get([self.workers[0].get_state.remote()])[0]

    def set_state(self, state: WorkerState) -> None:
        """Restore every shard to ``state``."""
        ref = self._ray.put(state)
        self._get([w.set_state.remote(ref) for w in self.workers])

    def weights(self) -> bytes:
        return self._get([self.workers[0].weights.remote()])[0]

    def shard_pids(self) -> list[int]:
        """Process ids of the shards (fault tests kill one)."""
        return self._get([w.pid.remote() for w in self.workers])
