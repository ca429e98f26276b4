"""A run's GMM and MM as groups of S shard actors, inside the session's normal round loop (VAE, GMM, MM).

:class:`ShardedGroup` owns the shard workers of the sharded modules
(:mod:`orchestrator.shard_workers`; GMM shard i and MM shard i in bundle i of
the run's placement group) and their coordinators (:class:`actors.gmm_shards.ShardedGMM`,
:class:`actors.mm_shards.ShardedMM`, on the driver).  One update of the GMM:

1. every GMM shard receives the VAE's ``Latents`` as an object reference and
   keeps its own rows (the driver never holds them);
2. every GMM shard receives its MM shard's message of the last round as an
   object reference (shard to shard);
3. the coordinator runs the sweeps: the shards return reduced, exact (int64)
   statistics, the coordinator samples and broadcasts the parameters;
4. every shard writes its checkpoint part and returns its checksums and its
   (class, label) counts; the driver reduces the counts to the accuracy;
5. every shard's rows of the per-point class means go, as object references,
   to one small task that assembles the VAE's ``PriorMeans`` message (on Ray it
   runs in the cluster, not in the driver).

One update of the MM: every MM shard loads its GMM shard's posteriors (object
references), the coordinator runs Baum-Welch on reduced counts, the
forward-backward messages stay on the MM shards for the GMM's next update, and
each MM shard writes its part.  The session then writes the module's round
directory and lists every part's files in run.json
(:mod:`orchestrator.shard_checkpoint`).

When a shard actor dies during an update (:meth:`ShardedGroup.repair`), each
dead shard of either module is replaced in its bundle and restored from its
module's last committed part; the failed module is rolled back as a whole (all
its shards from their last parts, its coordinator from the snapshot taken
after the last committed update) and the update is run again, so the result
is the undisturbed run's.

The backend-specific calls (start an actor, call it for a reference, check
that it lives, run a small task) go through an ``ops`` object:
:class:`LocalShardOps` here, :class:`orchestrator.shard_group.RayShardOps` on Ray.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from actors.gmm_shards import ShardedGMM
from actors.mm_shards import ShardedMM
from actors.module import Module
from actors.seeding import generator_state_json, module_seeds, numpy_generator, set_generator_state
from actors.serket_text import export_text
from actors.shard_core import LocalShards, shard_ranges
from actors.state import WorkerState
from messages import PriorMeans
from orchestrator.checkpoint import read_table, table_arrays
from orchestrator.placement import bundle_of
from orchestrator.run_dir import load_state
from orchestrator.shard_checkpoint import gather_text, part_dir, remove_part_leftovers
from orchestrator.shard_plan import ShardPlan
from orchestrator.shard_workers import GMMShardWorker, MMShardWorker
from orchestrator.storage import RunPath, resolve

log = logging.getLogger(__name__)

#: Runs of at most this many points also get the whole-run per-point text files (class_learn.txt, Pdz_learn.txt,
#: msg_learn.txt) in the round directory, concatenated from the shards' files, and the GMM's labels in its
#: report.arrow (for ``serket-ray report``); above it they stay per shard.
GATHER_TEXT_MAX = 100_000
#: Actor options of a GMM or MM shard when --resources gives none ("auto"): half a CPU each, one CPU per bundle.
DEFAULT_SHARD_RESOURCES = {"num_cpus": 0.5}
#: ``SERKET_RAY_SHARD_FAULT=<module>:<shard>:<round>:<step>:<flagfile>[,...]`` (tests): that shard SIGKILLs itself
#: once, at that step of that round (a GMM shard: its sweep; an MM shard: its forward-backward pass), Ray only.
FAULT_ENV = "SERKET_RAY_SHARD_FAULT"


def assemble_prior_means(sender: str, receiver: str, round: int, lengths: Any, *parts: np.ndarray) -> PriorMeans:
    """The VAE's ``PriorMeans`` message from the shards' rows, in global order (a task on Ray)."""
    return PriorMeans(sender=sender, receiver=receiver, round=round, means=np.concatenate(parts), lengths=lengths)


class _Threads:
    """The run's BLAS thread count around a call, with threadpoolctl's library scan made once (it costs ~6 ms)."""

    def __init__(self, threads: int) -> None:
        from threadpoolctl import ThreadpoolController

        self.threads, self.controller = int(threads), ThreadpoolController()

    def __call__(self) -> Any:
        return self.controller.limit(limits=self.threads, user_api="blas")


class _ThreadedLocalShards(LocalShards):
    """:class:`LocalShards` whose calls run under the run's BLAS thread count."""

    def __init__(self, shards: list[Any], threads: _Threads) -> None:
        super().__init__(shards)
        self.threads = threads
        self.received = self.sent = 0

    def map(self, method: str, *args: Any, per_shard: Any = None) -> list[Any]:
        with self.threads():
            return super().map(method, *args, per_shard=per_shard)

    def call(self, index: int, method: str, *args: Any) -> Any:
        with self.threads():
            return super().call(index, method, *args)


class LocalShardOps:
    """Shard workers as plain objects in this process (``backend="local"``)."""

    backend = "local"

    def __init__(self, executor: Any, threads: int) -> None:
        self.executor, self.threads = executor, _Threads(threads)

    def start(self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any], bundle: int | None) -> Any:
        return cls(*args)

    def shards(self, workers: list[Any]) -> Any:
        return _ThreadedLocalShards(workers, self.threads)

    def ref(self, worker: Any, method: str, *args: Any) -> Any:
        with self.threads():
            return getattr(worker, method)(*args)

    def alive(self, worker: Any) -> bool:
        return True

    def get(self, ref: Any) -> Any:
        return ref

    def assemble(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def kill(self, worker: Any) -> None:
        pass

    def where(self, worker: Any) -> dict[str, Any]:
        return {"pid": os.getpid()}


def _sum_options(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Actor options asking for what two actors ask together (one shard's bundle: its GMM and MM actor)."""
    ba, bb = bundle_of(a), bundle_of(b)
    total = {k: ba.get(k, 0.0) + bb.get(k, 0.0) for k in set(ba) | set(bb)}
    opts: dict[str, Any] = {"num_cpus": total.pop("CPU", 0.0)}
    if "GPU" in total:
        opts["num_gpus"] = total.pop("GPU")
    if "memory" in total:
        opts["memory"] = total.pop("memory")
    if total:
        opts["resources"] = total
    return opts


class ShardedGroup:
    """The sharded GMM (and MM) of one run.

    Parameters
    ----------
    plan : ShardPlan
    graph : orchestrator.graph.Graph
    out_dir : Path or RemotePath
        The run's storage (the shards write their parts there themselves).
    seed : int
        The run's root seed (the modules get the same child seeds as unsharded).
    labels : numpy.ndarray, shape (N,), optional
        True labels (accuracy only).
    resources : dict
        Module name or kind -> actor options (without the sharding keys) or "auto".
    backend : {"ray", "local"}
    """

    def __init__(
        self,
        plan: ShardPlan,
        graph: Any,
        out_dir: RunPath,
        seed: int,
        labels: np.ndarray | None,
        resources: dict[str, Any],
        backend: str,
    ) -> None:
        self.plan, self.graph, self.out_dir, self.backend = plan, graph, resolve(out_dir, probe=False), backend
        by_kind = {m.kind: m for m in graph.learnable if m.name in plan.modules}
        self.gmm: Module = by_kind["gmm"]
        self.mm: Module | None = by_kind.get("mm")
        self.modules = [m for m in (self.gmm, self.mm) if m is not None]
        obs = graph.observations[0]
        self.n = int(obs.n_points())
        self.lengths = obs.lengths
        self.ranges = shard_ranges(self.n, plan.n_shards, plan.block)
        seeds = module_seeds(seed, len(graph.modules))
        self.gmm_seed = seeds[graph.modules.index(self.gmm)]
        self.mm_seed = seeds[graph.modules.index(self.mm)] if self.mm is not None else None
        self._fresh_coordinators()
        if labels is not None:
            uniq, inverse = np.unique(np.asarray(labels), return_inverse=True)
            self.label_ids, self.label_values = inverse.astype(np.int64), uniq
        else:
            self.label_ids, self.label_values = None, None
        self.resources = {m: self._options(m, resources) for m in self.modules}
        self.committed: dict[Module, int | None] = {m: None for m in self.modules}
        self.ops: Any = None
        self.gworkers: list[Any] = []
        self.mworkers: list[Any] = []
        self.bundles: list[int | None] = []

    # -- set-up -----------------------------------------------------------------
    def _fresh_coordinators(self) -> None:
        self.coord = ShardedGMM(self.gmm.config, self.gmm_seed, moves=True, sequence=self.mm is not None)
        self.mcoord = ShardedMM(self.mm.config, self.lengths is not None) if self.mm is not None else None
        self.mm_rng = numpy_generator(self.mm_seed) if self.mm_seed is not None else None  # MMWorker's state shape
        self.snapshots = {self.gmm: self._snapshot(self.gmm)}
        if self.mm is not None:
            self.snapshots[self.mm] = self._snapshot(self.mm)

    def _options(self, module: Module, resources: dict[str, Any]) -> dict[str, Any]:
        if self.backend != "ray":
            return {}
        res = resources.get(module.name, resources.get(module.kind, "auto"))
        return dict(DEFAULT_SHARD_RESOURCES) if res == "auto" else dict(res)

    def bundle_options(self) -> list[dict[str, Any]]:
        """Actor options of each shard's bundle (its GMM actor's and its MM actor's together), S of them."""
        g = self.resources[self.gmm]
        both = _sum_options(g, self.resources[self.mm]) if self.mm is not None else dict(g)
        return [dict(both) for _ in range(self.plan.n_shards)]

    def labels_for(self) -> list[str]:
        return [f"{self.graph.name(self.gmm)} shard {i}" for i in range(self.plan.n_shards)]

    def _fault(self, module: Module, index: int) -> str | None:
        """This shard's part of ``SERKET_RAY_SHARD_FAULT`` (comma-separated specs), Ray only."""
        if self.backend != "ray":
            return None
        for spec in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
            name, shard, rest = spec.split(":", 2)
            if name in (module.name, self.graph.name(module)) and int(shard) == index:
                return rest
        return None

    def _gmm_args(self, i: int) -> tuple[Any, ...]:
        a, b = self.ranges[i]
        ids = None if self.label_ids is None else self.label_ids[a:b]
        n_labels = 0 if self.label_values is None else len(self.label_values)
        k = self.gmm.config.n_components
        fault = self._fault(self.gmm, i)
        return (i, a, b, k, self.coord.key, self.plan.block, ids, n_labels, fault, self.lengths, self.n)

    def _mm_args(self, i: int) -> tuple[Any, ...]:
        assert self.mm is not None
        a, b = self.ranges[i]
        return (i, a, b, self.lengths, self.n, self.plan.block, self._fault(self.mm, i))

    def _start_gmm(self, i: int) -> Any:
        label = f"{self.graph.name(self.gmm)}[{i}]"
        return self.ops.start(label, GMMShardWorker, self._gmm_args(i), self.resources[self.gmm], self.bundles[i])

    def _start_mm(self, i: int) -> Any:
        assert self.mm is not None
        label = f"{self.graph.name(self.mm)}[{i}]"
        return self.ops.start(label, MMShardWorker, self._mm_args(i), self.resources[self.mm], self.bundles[i])

    def start(self, ops: Any, bundles: list[int | None]) -> None:
        """Start every shard actor, shard i in bundle ``bundles[i]``."""
        self.ops, self.bundles = ops, list(bundles)
        self.gworkers = [self._start_gmm(i) for i in range(self.plan.n_shards)]
        self.mworkers = [self._start_mm(i) for i in range(self.plan.n_shards)] if self.mm is not None else []
        ops.shards(self.gworkers + self.mworkers).map("ready")
        log.info("started %d shards of %s", self.plan.n_shards, [self.graph.name(m) for m in self.modules])

    def placement(self, module: Module) -> dict[str, Any]:
        """What run.json records of where a sharded module runs."""
        workers = self.gworkers if module is self.gmm else self.mworkers
        return {
            "shards": [
                {**self.ops.where(w), "bundle_index": self.bundles[i], "points": list(self.ranges[i])}
                for i, w in enumerate(workers)
            ],
            "resources": self.resources[module],
        }

    # -- coordinator snapshots ----------------------------------------------------
    def _snapshot(self, module: Module) -> dict[str, Any]:
        if module is self.gmm:
            ref = None if self.coord.reference is None else self.coord.reference.copy()
            return {"rng": generator_state_json(self.coord.rng), "reference": ref}
        assert self.mcoord is not None
        copy = lambda a: None if a is None else np.array(a)  # noqa: E731
        return {"transitions": copy(self.mcoord.transitions), "initial": copy(self.mcoord.initial)}

    def _roll_back_coordinator(self, module: Module) -> None:
        snap = self.snapshots[module]
        if module is self.gmm:
            set_generator_state(self.coord.rng, snap["rng"])
            self.coord.reference = None if snap["reference"] is None else snap["reference"].copy()
        else:
            assert self.mcoord is not None
            self.mcoord.transitions, self.mcoord.initial = snap["transitions"], snap["initial"]

    def state(self, module: Module) -> WorkerState:
        """The coordinator's state, as the checkpoint stores it (MMWorker's layout for the MM, so recog reads it)."""
        if module is self.gmm:
            arrays = {} if self.coord.reference is None else {"reference": self.coord.reference}
            return WorkerState(arrays=arrays, meta={"rng": generator_state_json(self.coord.rng), "sharded": True})
        assert self.mcoord is not None and self.mm_rng is not None
        arrays = {} if self.mcoord.transitions is None else {"transitions": self.mcoord.transitions}
        if self.mcoord.initial is not None:
            arrays["initial"] = self.mcoord.initial
        return WorkerState(arrays=arrays, meta={"rng": generator_state_json(self.mm_rng), "sharded": True})

    def _parts(self, module: Module, round_index: int | None) -> list[RunPath | None]:
        if round_index is None:
            return [None] * self.plan.n_shards
        name = self.graph.name(module)
        return [part_dir(self.out_dir, name, round_index, i) for i in range(self.plan.n_shards)]

    # -- updates -----------------------------------------------------------------
    def update(self, module: Module, round_index: int, inbox: dict[str, Any]) -> dict[str, Any]:
        """One update of a sharded module; what the session checkpoints.

        Returns
        -------
        dict
            ``report`` (reduced arrays and scalars), ``state`` (WorkerState), ``parts``
            (run.json path -> SHA-256 of every part file), ``export`` (writes the round
            directory's text files, returns run.json's scalars) and, for the GMM,
            ``prior_means`` (a reference to the VAE's message).
        """
        if module is self.gmm:
            return self._update_gmm(round_index, inbox["latents"])
        return self._update_mm(round_index)

    def _write_parts(self, shards: Any, module: Module, round_index: int) -> dict[str, str]:
        name = self.graph.name(module)
        meta = {"module": name, "round": round_index, "n_shards": self.plan.n_shards, "block": self.plan.block}
        dirs = self._parts(module, round_index)
        sums = shards.map("write_part", per_shard=[(d, meta) for d in dirs])
        files = {}
        for i, part in enumerate(sums):
            for fname, digest in part.items():
                files[f"{name}/shards/{round_index:03d}/shard{i:03d}/{fname}"] = digest
        return files

    def _update_gmm(self, round_index: int, latents_ref: Any) -> dict[str, Any]:
        ops, cfg, gname = self.ops, self.gmm.config, self.graph.name(self.gmm)
        g = ops.shards(self.gworkers)
        g.map("load_latents", latents_ref)  # each shard resolves the reference and keeps its rows
        if self.mm is not None and self.committed[self.mm] is not None and cfg.use_class_prior:
            g.map("set_prior_message", per_shard=[(ops.ref(w, "message"),) for w in self.mworkers])
        else:
            g.map("set_prior_message", None)
        report = self.coord.update(g, self.n, round_index)
        parts = self._write_parts(g, self.gmm, round_index)
        conf = g.map("confusion")
        below = self.graph.name(self.gmm.below[0]) if self.gmm.below else gname
        rows = [ops.ref(w, "prior_means_part", report["class_means"]) for w in self.gworkers]
        prior = ops.assemble(assemble_prior_means, gname, below, round_index, self.lengths, *rows)
        scalars: dict[str, Any] = {"cluster_sizes": np.asarray(report["sizes"]).astype(int).tolist()}
        acc = None
        if conf[0] is not None:
            cm = np.sum(conf, axis=0)
            r, c = linear_sum_assignment(-cm)
            acc = float(cm[r, c].sum() / self.n)
            scalars["accuracy"] = acc
            assert self.label_values is not None
            scalars["matching"] = np.stack([r, self.label_values[c]], axis=1).tolist()
        scalars.update(self._traffic(g), n_shards=self.plan.n_shards)
        dirs = [d for d in self._parts(self.gmm, round_index) if d is not None]
        mode = self.gmm.mode

        def export(directory: Path) -> dict[str, Any]:
            export_text(directory, mode, class_means=report["class_means"], accuracy=acc)
            if self.n <= GATHER_TEXT_MAX:
                for fname in (f"class_{mode}.txt", f"Pdz_{mode}.txt"):
                    gather_text(dirs, fname, directory / fname)
            return scalars

        full = {k: report[k] for k in ("class_means", "counts", "weights", "covariances", "sizes", "seconds")}
        full["moves"] = list(self.coord.last_moves)
        if self.n <= GATHER_TEXT_MAX:  # small runs: the labels in the report too, as an unsharded GMM's (report)
            full["labels"] = np.concatenate(g.map("sampler_labels"))
        return {"report": full, "state": self.state(self.gmm), "parts": parts, "export": export, "prior_means": prior}

    def _update_mm(self, round_index: int) -> dict[str, Any]:
        assert self.mm is not None and self.mcoord is not None
        ops = self.ops
        m = ops.shards(self.mworkers)
        m.map("load", per_shard=[(ops.ref(w, "posteriors"),) for w in self.gworkers])  # GMM shard i -> MM shard i
        report = self.mcoord.update(m, self.n, round_index)
        parts = self._write_parts(m, self.mm, round_index)
        scalars = {"sequence_log_likelihood": report["log_likelihood"], **self._traffic(m)}
        scalars["n_shards"] = self.plan.n_shards
        dirs = [d for d in self._parts(self.mm, round_index) if d is not None]
        mode = self.mm.mode

        def export(directory: Path) -> dict[str, Any]:
            export_text(directory, mode, transitions=report["transitions"], initial=report.get("initial"))
            if self.n <= GATHER_TEXT_MAX:
                gather_text(dirs, f"msg_{mode}.txt", directory / f"msg_{mode}.txt")
            return scalars

        return {"report": dict(report), "state": self.state(self.mm), "parts": parts, "export": export}

    @staticmethod
    def _traffic(shards: Any) -> dict[str, int]:
        return {"driver_bytes_received": int(shards.received), "driver_bytes_sent": int(shards.sent)}

    def commit(self, module: Module, round_index: int) -> None:
        """The update's checkpoint is complete: later repairs restore from it."""
        self.committed[module] = round_index
        self.snapshots[module] = self._snapshot(module)

    # -- faults and resume -----------------------------------------------------------
    def repair(self, failed: Module) -> None:
        """After a failed update of ``failed``: replace dead shards, roll ``failed`` back to its last commit."""
        t0 = time.perf_counter()
        replaced = []
        for module, workers, start in ((self.gmm, self.gworkers, self._start_gmm), (self.mm, self.mworkers, None)):
            if module is None:
                continue
            parts = self._parts(module, self.committed[module])
            for i, w in enumerate(workers):
                if self.ops.alive(w):
                    continue
                self.ops.kill(w)
                workers[i] = (start or self._start_mm)(i)
                self.ops.get(self.ops.ref(workers[i], "restore_part", parts[i]))
                replaced.append(f"{self.graph.name(module)}[{i}]")
        if failed is self.gmm:
            parts = self._parts(self.gmm, self.committed[self.gmm])
            self.ops.shards(self.gworkers).map("restore_part", per_shard=[(p,) for p in parts])
        self._roll_back_coordinator(failed)
        log.warning(
            "%s: replaced shards %s, rolled back to round %s (%.2f s)",
            self.graph.name(failed),
            replaced or "none",
            self.committed[failed],
            time.perf_counter() - t0,
        )

    def restore(self, last: dict[Module, int]) -> dict[str, Any]:
        """Continue after the committed rounds ``last`` (module -> round); the GMM's message to the VAE, if any.

        The coordinators come back from their round directories' state (and the GMM's
        report), every shard from its part.
        """
        remove_part_leftovers(self.out_dir)
        refs: dict[str, Any] = {}
        for module in self.modules:
            round_index = last.get(module)
            if round_index is None:
                continue
            directory = self.out_dir / self.graph.name(module) / f"{round_index:03d}"
            state = load_state(directory)
            if module is self.gmm:
                set_generator_state(self.coord.rng, state.meta["rng"])
                self.coord.reference = state.arrays.get("reference")
            else:
                assert self.mcoord is not None and self.mm_rng is not None
                set_generator_state(self.mm_rng, state.meta["rng"])
                self.mcoord.transitions = state.arrays.get("transitions")
                self.mcoord.initial = state.arrays.get("initial")
            workers = self.gworkers if module is self.gmm else self.mworkers
            self.ops.shards(workers).map("restore_part", per_shard=[(p,) for p in self._parts(module, round_index)])
            self.commit(module, round_index)
            if module is self.gmm:
                arrays, _ = table_arrays(read_table(directory / "report.arrow"))
                gname = self.graph.name(self.gmm)
                below = self.graph.name(self.gmm.below[0]) if self.gmm.below else gname
                rows = [self.ops.ref(w, "prior_means_part", arrays["class_means"]) for w in self.gworkers]
                refs["prior_means"] = self.ops.assemble(
                    assemble_prior_means, gname, below, round_index, self.lengths, *rows
                )
        return refs
