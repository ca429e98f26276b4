"""A module as a group of S Ray actors, each owning one shard of the points; the driver sees reduced statistics only.

:class:`ShardedPipeline` runs the GMM and the MM of a run on S shards: GMM shard
i and MM shard i are two actors in bundle i of one placement group (so they
share a node; ``strategy="SPREAD"`` or ``"STRICT_SPREAD"`` spreads the
bundles over nodes).  Each GMM actor receives its latents once, as an object
reference made where the data is (nothing passes the driver); the posteriors
go from GMM shard i to MM shard i and the message back as object references,
never fetched by the driver.  The coordinators (:class:`actors.gmm_shards.ShardedGMM`,
:class:`actors.mm_shards.ShardedMM`) run on the driver and receive, per call,
S small arrays of reduced statistics (K counts, K x d sums, K x d x d second
moments; K x K pair counts; K-vectors of the forward-backward chain).
:class:`RayShards` counts the pickled bytes of everything that comes back to
the driver and of every argument it sends, per round.

:class:`ShardedPipeline` is the stand-alone group (GMM + MM only), used by
``bench/shards.py`` and ``tests/test_shard_group.py``.  A whole run
(``serket-ray run --shards S``) uses :class:`orchestrator.shard_run.ShardedGroup`
instead, whose Ray calls are :class:`RayShardOps` below (its actors in the run's
own placement group, beside the VAE's bundle) and whose traffic is counted by
the same :class:`RayShards`.
"""

from __future__ import annotations

import logging
import pickle
import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from actors.config import GMMConfig, MMConfig
from actors.gmm_shards import GMMShard, ShardedGMM
from actors.mm_core import sequence_starts
from actors.mm_shards import MMShard, ShardedMM
from actors.shard_core import shard_ranges
from messages.errors import StorageError

log = logging.getLogger(__name__)


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class GMMShardActor(GMMShard):
    """:class:`GMMShard` plus what a shard's process reports about itself."""

    def peak_rss(self) -> int:
        return peak_rss_bytes()

    def cpu(self) -> float:
        return cpu_seconds()

    def ready(self) -> bool:
        return True

    def node(self) -> str:
        """Id of the Ray node this shard runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()


class MMShardActor(MMShard):
    """:class:`MMShard` plus what a shard's process reports about itself."""

    def peak_rss(self) -> int:
        return peak_rss_bytes()

    def cpu(self) -> float:
        return cpu_seconds()


class RayShards:
    """:class:`actors.shard_core.Shards` over Ray actors, counting the bytes the driver sends and receives."""

    def __init__(self, actors: Sequence[Any], timeout: float | None = None) -> None:
        import ray

        self._ray = ray
        self.timeout = timeout  # seconds a call may take before it fails with GetTimeoutError (None: no limit)
        self.actors = list(actors)
        self.n_shards = len(self.actors)
        self.received = 0
        self.sent = 0

    def _size(self, obj: Any) -> int:
        """Pickled bytes of ``obj``; an object reference counts as its id (its value never reaches the driver)."""
        if isinstance(obj, self._ray.ObjectRef):
            return len(obj.binary())
        if isinstance(obj, (tuple, list)):
            return sum(self._size(o) for o in obj)
        return len(pickle.dumps(obj, protocol=5))

    def _count(self, args: tuple[Any, ...], results: list[Any]) -> None:
        self.sent += self._size(args)
        self.received += self._size(results)

    def map(self, method: str, *args: Any, per_shard: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        extra = per_shard or [()] * self.n_shards
        refs = [getattr(a, method).remote(*args, *e) for a, e in zip(self.actors, extra, strict=True)]
        results = self._get(refs)
        self._count((args, list(extra)), results)
        return results

    def call(self, index: int, method: str, *args: Any) -> Any:
        result = self._get(getattr(self.actors[index], method).remote(*args))
        self._count(args, [result])
        return result

    def _get(self, refs: Any) -> Any:
        """``ray.get``; a shard's failed write (its part) raises the shard's own :class:`StorageError` (one line)."""
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(refs, timeout=self.timeout)
        except RayTaskError as exc:
            if isinstance(exc.cause, StorageError):
                raise exc.cause from None
            raise


class ShardedPipeline:
    """GMM + MM over S shards on Ray.

    Parameters
    ----------
    data : sequence of ray.ObjectRef, or (callable, int)
        One reference per shard to its latents (n_i, d), in global order, put once
        for the shard; shard i must hold the points ``shard_ranges(n, S)[i]``.  Or
        ``(make, S)``: ``make(start, stop) -> (n_i, d)`` runs as a task in shard
        i's bundle, so its rows are made on the shard's node and never pass the driver.
    n : int
        Total points N.
    gmm_config, mm_config : GMMConfig, MMConfig
    seed : numpy.random.SeedSequence
    lengths : numpy.ndarray, shape (S_seq,), optional
    strategy : str
        Placement strategy of the S bundles (``PACK``, ``SPREAD``, ``STRICT_SPREAD``).
    bundle : dict
        Resources of one shard's bundle (its GMM and MM actor share it half and half).
    moves : bool
        Run the GMM's moves before its sweeps, as a run does: the sequence-guided
        split/merge search on the shards (an MM sits above); False: the sweeps only.
    """

    def __init__(
        self,
        data: Sequence[Any],
        n: int,
        gmm_config: GMMConfig,
        mm_config: MMConfig,
        seed: np.random.SeedSequence,
        lengths: np.ndarray | None = None,
        strategy: str = "PACK",
        bundle: dict[str, float] | None = None,
        moves: bool = False,
    ) -> None:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        make = data[0] if len(data) == 2 and callable(data[0]) else None
        n_shards = int(data[1]) if make is not None else len(data)
        self.n, self.ranges = n, shard_ranges(n, n_shards)
        bundle = bundle or {"CPU": 1.0}
        self.pg = placement_group([dict(bundle)] * n_shards, strategy=strategy)
        ray.get(self.pg.ready(), timeout=120)
        self.gmm = ShardedGMM(gmm_config, seed, moves=moves, sequence=moves)
        self.mm = ShardedMM(mm_config, lengths is not None)
        starts = sequence_starts(lengths, n)
        half = {key: value / 2 for key, value in bundle.items()}
        gmm_actors, mm_actors = [], []
        for i, (a, b) in enumerate(self.ranges):
            where = PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i)
            if make is None:
                ref = data[i]
            else:
                ref = ray.remote(make).options(num_cpus=0, scheduling_strategy=where).remote(a, b)
            opts = {
                "num_cpus": half.get("CPU", 0.5),
                "resources": {k: v for k, v in half.items() if k not in ("CPU", "GPU")},
                "scheduling_strategy": where,
                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}},
            }
            gmm_actors.append(
                ray.remote(GMMShardActor).options(**opts).remote(ref, a, gmm_config.n_components, self.gmm.key)
            )
            mm_actors.append(ray.remote(MMShardActor).options(**opts).remote(a, starts[a:b]))
        self.gmm_shards, self.mm_shards = RayShards(gmm_actors), RayShards(mm_actors)
        ray.get([g.ready.remote() for g in gmm_actors])

    def round(self, round: int) -> dict[str, Any]:
        """One GMM update then one MM update; the MM's message is left on the GMM shards for the next round.

        Returns
        -------
        dict
            ``gmm`` and ``mm`` (their coordinators' reduced reports), ``gmm_seconds``, ``mm_seconds``,
            ``driver_received`` and ``driver_sent`` (pickled bytes this round), ``gmm_cpu`` and ``mm_cpu``
            (CPU seconds of each shard actor in its update), ``driver_gmm_cpu`` and ``driver_mm_cpu``
            (the driver's, i.e. the coordinators' and Ray client's, CPU seconds in each update).
        """
        import ray

        g, m = self.gmm_shards, self.mm_shards
        before = (g.received + m.received, g.sent + m.sent)
        cpu0 = ray.get([a.cpu.remote() for a in g.actors + m.actors])
        d0 = cpu_seconds()
        t0 = time.perf_counter()
        gmm = self.gmm.update(g, self.n, round)
        t1 = time.perf_counter()
        d1 = cpu_seconds()
        cpu1 = ray.get([a.cpu.remote() for a in g.actors + m.actors])
        # shard to shard: each MM actor resolves its GMM actor's posteriors itself
        m.map("load", per_shard=[(a.posteriors.remote(),) for a in g.actors])
        mm = self.mm.update(m, self.n, round)
        g.map("set_prior", per_shard=[(a.message.remote(),) for a in m.actors])
        t2 = time.perf_counter()
        d2 = cpu_seconds()
        cpu2 = ray.get([a.cpu.remote() for a in g.actors + m.actors])
        n_shards = g.n_shards
        return {
            "gmm_cpu": [b - a for a, b in zip(cpu0[:n_shards], cpu1[:n_shards], strict=True)],
            "mm_cpu": [b - a for a, b in zip(cpu1[n_shards:], cpu2[n_shards:], strict=True)],
            "driver_gmm_cpu": d1 - d0,
            "driver_mm_cpu": d2 - d1,
            "gmm": gmm,
            "mm": mm,
            "gmm_seconds": t1 - t0,
            "mm_seconds": t2 - t1,
            "driver_received": g.received + m.received - before[0],
            "driver_sent": g.sent + m.sent - before[1],
        }

    def peak_rss(self) -> dict[str, list[int]]:
        """Peak RSS in bytes of every GMM and MM shard actor."""
        import ray

        return {
            "gmm": ray.get([a.peak_rss.remote() for a in self.gmm_shards.actors]),
            "mm": ray.get([a.peak_rss.remote() for a in self.mm_shards.actors]),
        }

    def nodes(self) -> list[str]:
        """The Ray node id of every GMM shard actor (its MM shard shares the bundle)."""
        import ray

        return ray.get([a.node.remote() for a in self.gmm_shards.actors])

    def labels(self) -> np.ndarray:
        """Every point's label, gathered (tests only: this is what a run never does)."""
        import ray

        return np.concatenate([r["labels"] for r in ray.get([a.result.remote() for a in self.gmm_shards.actors])])

    def close(self) -> None:
        """Kill the actors and remove the placement group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for a in self.gmm_shards.actors + self.mm_shards.actors:
            ray.kill(a)
        remove_placement_group(self.pg)


class RayShardOps:
    """What :class:`orchestrator.shard_run.ShardedGroup` asks of Ray: shard actors in the run's placement group.

    Parameters
    ----------
    executor : orchestrator.executor.RayExecutor
        The run's executor (its placement group holds the shards' bundles).
    threads : int
        BLAS threads of every shard actor (the run's ``threads``).
    timeout : float, optional
        Seconds one call to the shards may take (the session's ``timeout``): a hung shard then
        counts as dead and is replaced.
    alive_timeout : float
        Seconds a shard may take to answer before it counts as dead.
    """

    backend = "ray"

    def __init__(self, executor: Any, threads: int, timeout: float | None = None, alive_timeout: float = 30.0) -> None:
        import ray

        self._ray = ray
        self.executor, self.threads, self.alive_timeout = executor, int(threads), float(alive_timeout)
        self.timeout = timeout

    def start(self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any], bundle: int | None) -> Any:
        actor = self.executor.start(label, cls, args, resources, bundle=bundle)
        self.executor.set_threads(actor, self.threads)
        return actor

    def shards(self, workers: list[Any]) -> RayShards:
        return RayShards(workers, timeout=self.timeout)

    def ref(self, worker: Any, method: str, *args: Any) -> Any:
        return getattr(worker, method).remote(*args)

    def get(self, ref: Any) -> Any:
        return self._ray.get(ref)

    def alive(self, worker: Any) -> bool:
        """Whether the actor answers within ``alive_timeout`` seconds."""
        from ray import exceptions as rex

        try:
            self._ray.get(worker.ready.remote(), timeout=self.alive_timeout)
            return True
        except (rex.RayActorError, rex.GetTimeoutError, rex.ObjectLostError):
            return False

    def assemble(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` as a task in the cluster (no CPU: it only concatenates); its result's reference."""
        return self._ray.remote(num_cpus=0)(fn).remote(*args)

    def kill(self, worker: Any) -> None:
        self.executor.kill(worker)

    def where(self, worker: Any) -> dict[str, Any]:
        return self.executor.node_of(worker)
