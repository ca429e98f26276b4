"""A session: one graph's updates, with their retries, message routing, checkpoints and run.json.

Both ways in use a session: the Serket-style ``module.update()`` (the default
session, created on the first call) and :class:`orchestrator.Orchestrator`.

The session routes messages (which worker's output goes to which inbox) and
keeps the run's record; :mod:`orchestrator.workers` makes and places the workers,
:mod:`orchestrator.polling` reports a training worker's progress,
:mod:`orchestrator.run_json` writes run.json and :mod:`orchestrator.fingerprints`
identifies the data.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from actors.gmm import GMM
from actors.module import Module, Observation
from actors.state import WorkerState
from messages import Message, ObservationData
from messages.errors import ConfigError
from orchestrator.checkpoint_writer import CheckpointWriter
from orchestrator.fingerprints import code_version, data_fingerprint, lengths_fingerprint
from orchestrator.graph import Graph
from orchestrator.polling import ProgressCallback, ProgressWatch
from orchestrator.retries import with_retries
from orchestrator.run_dir import UpdateRecord, last_updates, load_state, saved_message, update_dir
from orchestrator.run_json import checkpoint_update, run_manifest, write_run_json
from orchestrator.shard_plan import shard_plan, without_shard_keys
from orchestrator.shard_run import LocalShardOps, ShardedGroup
from orchestrator.storage import RemotePath, resolve
from orchestrator.workers import MIXTURE_BLAS_THREADS, WorkerPool, check_resources

log = logging.getLogger(__name__)

#: torch threads per worker unless a run says otherwise (see ``Session``'s ``threads``).
DEFAULT_THREADS = 2


class Session:
    """Runs one graph's module updates and routes their messages.

    Parameters
    ----------
    graph : Graph
    out_dir : path, URI or RemotePath
        Where ``module%03d_<name>/`` directories and ``run.json`` go: a local path
        or a ``pyarrow.fs`` URI (``s3://bucket/run``; :mod:`orchestrator.storage`).
    seed : int
        Root seed; each module gets a child ``SeedSequence`` in graph order.
    address : str, optional
        Ray cluster address ("auto" or host:port); a local Ray when omitted.
    backend : {"ray", "local"}
        ``local`` runs the workers in this process (no Ray): for tests and
        benchmarks of the numerical pipeline.
    resources : dict, optional
        Module name or kind -> Ray actor options (``num_cpus``, ``num_gpus``,
        ``memory``, ``resources``) or "auto".
    max_retries : int
        Restarts of a dead actor per update.
    timeout : float
        Seconds an update may take before its actor counts as dead.
    placement_strategy : {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}
        How the run's placement group spreads its actors over nodes.
    reserve_timeout : float
        Seconds to wait for the run's resources before refusing with a
        :class:`ConfigError` that names what is missing.
    progress_interval : float
        Seconds between two polls of a training worker's progress (Ray only).
    threads : int
        torch's intra-op threads and numpy's BLAS threads in every worker.  Part of
        the run's configuration, recorded in ``run.json`` and reused by resume:
        results differ bitwise between thread counts, so the count is fixed
        (default :data:`DEFAULT_THREADS`) instead of following the CPUs an actor
        was given, and one seed gives one result on any placement.
    shards : int, optional
        Run the GMM and the MM as groups of this many shard actors
        (:mod:`orchestrator.shard_run`); also per module in ``resources``
        (``{"gmm": {"shards": 2}}``).  1 (default) is one actor per module.
    sharded : bool, optional
        Run the sharded algorithm even at ``shards=1`` (the reference of a sharded run).
    shard_block : int, optional
        Points per block of a sharded run (a multiple of 256; default 4096).
    """

    def __init__(
        self,
        graph: Graph,
        out_dir: str | os.PathLike[str] | RemotePath,
        seed: int = 0,
        address: str | None = None,
        backend: str = "ray",
        resources: dict[str, Any] | None = None,
        max_retries: int = 2,
        timeout: float = 3600.0,
        placement_strategy: str = "PACK",
        reserve_timeout: float = 60.0,
        progress_interval: float = 0.5,
        threads: int = DEFAULT_THREADS,
        shards: int | None = None,
        sharded: bool | None = None,
        shard_block: int | None = None,
    ) -> None:
        _check_options(threads, backend, seed)
        self.threads = int(threads)
        self.graph = graph
        self.out_dir = resolve(out_dir)
        self.seed = int(seed)
        self.address = address
        self.backend = backend
        self.reserve_timeout = reserve_timeout
        self.labels = self._labels()
        checked = check_resources(resources, graph, backend)
        self.shard_plan = shard_plan(graph, checked, shards, sharded, shard_block)
        vae_keys = {"vae"} | {m.name for m in graph.learnable if m.kind == "vae"}  # the VAE's group keeps its count
        checked = without_shard_keys(checked, keep=vae_keys) or {}
        self.pool = WorkerPool(
            graph,
            backend=backend,
            address=address,
            resources=checked,
            placement_strategy=placement_strategy,
            reserve_timeout=reserve_timeout,
            seed=self.seed,
            threads=self.threads,
            timeout=float(timeout),
        )
        self.progress: ProgressWatch | None = None
        self.refs: dict[tuple[Module, str], Any] = {}  # (module, output name) -> its latest message's reference
        self.rounds: dict[Module, int] = {m: 0 for m in graph.learnable}
        self.records: list[UpdateRecord] = []
        self.started = time.time()
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.progress_interval = float(progress_interval)
        self.extra: dict[str, Any] = {}  # e.g. target rounds, CLI arguments
        self.fingerprint = data_fingerprint(graph, self.labels)
        self.group: ShardedGroup | None = None
        if self.shard_plan is not None:
            self.group = ShardedGroup(self.shard_plan, graph, self.out_dir, self.seed, self.labels, checked, backend)
            self.pool.skip = set(self.shard_plan.modules)
            self.pool.extra_options = self.group.bundle_options()
            self.pool.extra_labels = self.group.labels_for()
        # Checkpoints and run.json, in order, off the critical path while Ray's actors compute elsewhere;
        # with the local backend the workers compute in this thread, so it writes them in turn as before.
        self.writer = CheckpointWriter(background=backend == "ray")

    @property
    def executor(self) -> Any:
        """The run's executor, None before :meth:`start`."""
        return self.pool.executor

    @property
    def workers(self) -> dict[Module, Any]:
        """Learnable module -> its worker (an actor handle on Ray)."""
        return self.pool.workers

    @property
    def placement(self) -> dict[str, Any]:
        """Module name -> where its worker runs."""
        return self.pool.placement

    def _labels(self) -> np.ndarray | None:
        for m in self.graph.modules:
            if isinstance(m, GMM) and m.category is not None:
                return m.labels()
        return None

    # -- start-up -----------------------------------------------------------
    def start(self, watch_progress: bool = False) -> None:
        """Start the executor (Ray), reserve every worker's resources at once, then
        start one worker per learnable module.

        Parameters
        ----------
        watch_progress : bool
            Also start the small actor that collects training progress (Ray), so
            that the first update's progress shows too.

        Raises
        ------
        ConfigError
            The cluster cannot give the run what it asks for within
            ``reserve_timeout`` seconds (nothing is left running).
        """
        if self.executor is not None:
            self.progress.start_early(watch_progress)
            return
        executor = self.pool.open()
        try:
            for obs in self.graph.observations:
                name = self.graph.name(obs)
                receiver = self.graph.name(obs.above[0]) if obs.above else name
                msg = ObservationData(sender=name, receiver=receiver, round=0, data=obs.data, lengths=obs.lengths)
                self.refs[(obs, "data")] = executor.put(msg)  # once: every round reuses the reference
            for module in self.graph.learnable:
                if not self._sharded(module):
                    self._start_worker(module, wait=False)
            self.progress = ProgressWatch(
                executor, self.graph, self.timeout, self.progress_interval, self.reserve_timeout
            )
            self.progress.start_early(watch_progress, wait=False)  # the board's process starts beside theirs
            self.pool.settle()  # the workers started side by side
            for module in self.workers:
                self.pool.record_placement(module)
            if self.group is not None:
                if self.backend == "ray":
                    from orchestrator.shard_group import RayShardOps

                    ops: Any = RayShardOps(executor, MIXTURE_BLAS_THREADS, timeout=self.timeout)
                else:
                    ops = LocalShardOps(executor, MIXTURE_BLAS_THREADS)
                self.group.start(ops, self.pool.extra_bundles)
                for module in self.group.modules:
                    self.pool.placement[self.graph.name(module)] = self.group.placement(module)
            self.progress.start_early(watch_progress)
        except BaseException:
            self.pool.abandon()
            self.refs.clear()
            raise
        log.info("started %d workers on %s", len(self.workers), executor.name)

    def _sharded(self, module: Module) -> bool:
        return self.group is not None and module in self.group.modules

    def _start_worker(self, module: Module, wait: bool = True) -> Any:
        above = self.graph.name(module.above[0]) if module.above else None
        below = self.graph.name(module.below[0]) if module.below else None
        return self.pool.start(module, above, below, wait=wait)

    # -- one update ---------------------------------------------------------
    def update(self, module: Module, on_progress: ProgressCallback | None = None) -> UpdateRecord:
        """Run one update of ``module`` and write its checkpoint; see :meth:`submit`.

        Returns
        -------
        UpdateRecord
            Once the update's checkpoint and ``run.json`` are written.
        """
        future = self.submit(module, on_progress)
        self.drain()
        return future.result()

    def submit(
        self,
        module: Module,
        on_progress: ProgressCallback | None = None,
        on_written: Callable[[UpdateRecord], None] | None = None,
    ) -> concurrent.futures.Future[UpdateRecord]:
        """Run one update of ``module`` with the latest messages addressed to it; on the Ray backend its
        checkpoint is written in the background (:class:`orchestrator.checkpoint_writer.CheckpointWriter`).

        The next update can start at once: its inputs are routed in memory.  The
        checkpoints, and ``run.json`` after each, are written one at a time in the
        order the updates ran; :meth:`drain` waits for them.

        If the module's actor dies or the update exceeds ``timeout`` seconds, a
        new actor is started, restored from the module's last checkpoint, and the
        update is retried up to ``max_retries`` times.

        Parameters
        ----------
        module : Module
        on_progress : callable, optional
            Called as ``on_progress(name, info)`` while a module that reports
            progress (the VAE) trains: after every epoch in-process, every
            ``progress_interval`` seconds on Ray, and once when it is done.  ``info``
            has ``round``, ``epoch``, ``epochs``, ``loss`` and ``seconds``.
        on_written : callable, optional
            Called with the update's record on the writer's thread, once its
            checkpoint and ``run.json`` are written (progress display), in order.

        Returns
        -------
        concurrent.futures.Future of UpdateRecord
            Done once the update's checkpoint and ``run.json`` are written.

        Raises
        ------
        StorageError
            An earlier update's checkpoint could not be written (raised here, before
            this update runs, or after it, before its checkpoint is queued).
        """
        if module not in self.rounds:
            raise ConfigError(f"{module!r} is not a learnable module of this session's graph")
        self.writer.check()
        self.start()
        if self._sharded(module):
            # a shard group writes its parts, round directory and run.json itself, after the queued ones
            self.drain()
            record = self._update_sharded(module)
            if on_written is not None:
                on_written(record)
            done: concurrent.futures.Future[UpdateRecord] = concurrent.futures.Future()
            done.set_result(record)
            return done
        t0 = time.perf_counter()
        round_index = self.rounds[module]
        (out_refs, values, state), attempts = with_retries(
            lambda: self._attempt(module, round_index, on_progress),
            lambda: self._restart(module),
            self.executor.is_actor_failure,
            self.max_retries,
            (self.graph.name(module), round_index),
        )
        names = module.output_names()
        for out_name, ref in zip(names, out_refs, strict=True):
            if out_name != "report":
                self.refs[(module, out_name)] = ref
        outputs = dict(zip(names, values, strict=True))
        self.rounds[module] = round_index + 1
        computed = time.perf_counter()
        job = functools.partial(self._record, module, round_index, outputs, state, t0, attempts, on_written, computed)
        try:
            return self.writer.submit(job)
        except BaseException:
            self.rounds[module] = round_index  # written in turn and failed: this round is still to do
            raise

    def drain(self, raise_error: bool = True) -> None:
        """Wait until every submitted update's checkpoint and ``run.json`` are written.

        Raises
        ------
        StorageError
            One of them could not be written (with ``raise_error``).
        """
        self.writer.drain(raise_error)

    def _record(
        self,
        module: Module,
        round_index: int,
        outputs: dict[str, Any],
        state: WorkerState,
        t0: float,
        attempts: int,
        on_written: Callable[[UpdateRecord], None] | None,
        computed: float,
    ) -> UpdateRecord:
        """The writer's job: an update's checkpoint, its record, then ``run.json`` naming it.

        The record's seconds are the update's and its own checkpoint's, without the
        time the job waited behind earlier ones (``computed``: when the update returned).
        """
        waited = time.perf_counter() - computed
        record = self._checkpoint(module, round_index, outputs, state, t0 + waited, attempts)
        self.records.append(record)
        self.write_manifest()
        if on_written is not None:
            on_written(record)
        return record

    def _update_sharded(self, module: Module) -> UpdateRecord:
        """One update of a module run as a shard group: its parts, then its round directory, then run.json."""
        assert self.group is not None
        t0 = time.perf_counter()
        round_index = self.rounds[module]
        inbox = {key: self.refs[edge] for key, edge in module.inputs().items() if edge in self.refs}
        group = self.group
        result, attempts = with_retries(
            lambda: group.update(module, round_index, inbox),
            lambda: group.repair(module),
            self.executor.is_actor_failure,
            self.max_retries,
            (self.graph.name(module), round_index),
        )
        meta = {"round": round_index, "seed": self.seed, "t0": t0, "attempts": attempts}
        record = checkpoint_update(
            self.out_dir, self.graph.name(module), {"report": result["report"]}, result["state"], meta, result["export"]
        )
        record.files = {**result["parts"], **record.files}
        if attempts > 1:  # shards were replaced: where they run now
            for m in group.modules:
                self.pool.placement[self.graph.name(m)] = group.placement(m)
        if "prior_means" in result:
            self.refs[(module, "prior_means")] = result["prior_means"]
        self.records.append(record)
        self.rounds[module] = round_index + 1
        self.write_manifest()
        group.commit(module, round_index)
        return record

    def _attempt(
        self, module: Module, round_index: int, on_progress: ProgressCallback | None
    ) -> tuple[list[Any], list[Any], WorkerState]:
        """One try of an update: its output references, their values and the worker's state after it."""
        inbox = {key: self.refs[edge] for key, edge in module.inputs().items() if edge in self.refs}
        worker = self.workers[module]
        watch = self.progress.attach(module, worker, on_progress)
        out_refs = self.pool.call(module, "update", len(module.output_names()), round=round_index, **inbox)
        values = self.progress.results(module, worker, round_index, out_refs, watch)
        return out_refs, values, self.pool.get_state(module)

    def _checkpoint(
        self, module: Module, round_index: int, outputs: dict[str, Any], state: WorkerState, t0: float, attempts: int
    ) -> UpdateRecord:
        """Write an update's checkpoint and text exports; its record (seconds from ``t0`` to the end)."""
        meta = {"round": round_index, "seed": self.seed, "t0": t0, "attempts": attempts}
        return checkpoint_update(
            self.out_dir,
            self.graph.name(module),
            outputs,
            state,
            meta,
            lambda d: module.export(d, outputs, self.labels),
        )

    def _restart(self, module: Module) -> None:
        """Replace a dead actor by a new one restored from the module's last checkpoint,
        and re-send its inbox from the checkpoint files (the objects may be lost too)."""
        self.drain()  # the checkpoints read back below
        self.pool.kill(module)
        self._start_worker(module)
        last = self._last_record(module)
        if last is not None:
            self.pool.set_state(module, load_state(update_dir(self.out_dir, last)))
        for src, out_name in module.inputs().values():
            if self._sharded(src):
                continue  # a shard group's message was made in the cluster, not by the dead actor
            if src.learnable and (src, out_name) in self.refs:
                self.refs[(src, out_name)] = self.executor.put(self._saved_message(src, out_name))
        self.pool.record_placement(module)

    def _last_record(self, module: Module) -> UpdateRecord | None:
        return last_updates(self.records).get(self.graph.name(module))

    def _saved_message(self, module: Module, out_name: str) -> Message:
        last = self._last_record(module)
        assert last is not None
        return saved_message(update_dir(self.out_dir, last), out_name)

    # -- resume ---------------------------------------------------------------
    def restore(self, records: list[UpdateRecord]) -> None:
        """Continue after ``records``: restore each module's state and last messages."""
        self.records = list(records)
        self.start()
        committed: dict[Module, int] = {}
        for module in self.graph.learnable:
            last = self._last_record(module)
            if last is None:
                continue
            if self._sharded(module):
                committed[module] = last.round
                self.rounds[module] = last.round + 1
                continue
            directory = update_dir(self.out_dir, last)
            self.pool.set_state(module, load_state(directory))
            for out_name in module.message_names():
                if (directory / f"{out_name}.arrow").exists():
                    self.refs[(module, out_name)] = self.executor.put(saved_message(directory, out_name))
            self.rounds[module] = last.round + 1
        if self.group is not None:
            for out_name, ref in self.group.restore(committed).items():
                self.refs[(self.group.gmm, out_name)] = ref

    # -- run.json -------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The run's record: config, seed, per-round accuracy and seconds, placement."""
        manifest = run_manifest(
            self.graph,
            self.records,
            self.placement,
            seed=self.seed,
            threads=self.threads,
            fingerprint=self.fingerprint,
            backend=self.backend,
            address=self.address,
            started=self.started,
            extra=self.extra,
        )
        if self.shard_plan is not None:
            manifest["shards"] = self.shard_plan.as_dict()
        return manifest

    def write_manifest(self) -> None:
        """Write ``run.json`` atomically."""
        write_run_json(self.out_dir, self.manifest())

    def close(self) -> None:
        """Stop the workers and give back their reservation (the Ray runtime itself
        stays up for the caller); checkpoints still being written are finished first."""
        self.writer.close()
        self.pool.shutdown()


def _check_options(threads: Any, backend: Any, seed: Any) -> None:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads should be a positive integer (torch threads of each worker), got {threads!r}")
    if backend not in ("ray", "local"):
        raise ConfigError(f"backend should be 'ray' or 'local', got {backend!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed should be a non-negative integer, got {seed!r}")


__all__ = [
    "DEFAULT_THREADS",
    "Observation",
    "ProgressCallback",
    "Session",
    "UpdateRecord",
    "check_resources",
    "code_version",
    "data_fingerprint",
    "lengths_fingerprint",
]
