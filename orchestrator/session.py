"""A session: one graph's actors, its message routing, checkpoints and run.json.

Both ways in use a session: the Serket-style ``module.update()`` (the default
session, created on the first call) and :class:`orchestrator.Orchestrator`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actors.gmm import GMM
from actors.module import Module, Observation
from actors.seeding import module_seeds
from messages import Message, ObservationData
from messages.errors import ConfigError
from orchestrator import checkpoint
from orchestrator.executor import LocalExecutor, RayExecutor, auto_resources
from orchestrator.graph import Graph
from orchestrator.progress import ProgressBoard
from orchestrator.run_dir import UpdateRecord, last_updates, load_state, saved_message, update_dir

log = logging.getLogger(__name__)

#: torch threads per worker unless a run says otherwise (see ``Session``'s ``threads``).
DEFAULT_THREADS = 2

#: ``on_progress(module name, info)``; see :meth:`Session.update`.
ProgressCallback = Callable[[str, dict[str, Any]], None]


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
    """

    def __init__(
        self,
        graph: Graph,
        out_dir: str | os.PathLike[str],
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
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ConfigError(f"threads should be a positive integer (torch threads of each worker), got {threads!r}")
        self.threads = int(threads)
        if backend not in ("ray", "local"):
            raise ConfigError(f"backend should be 'ray' or 'local', got {backend!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed should be a non-negative integer, got {seed!r}")
        self.graph = graph
        self.out_dir = Path(out_dir)
        self.seed = int(seed)
        self.address = address
        self.backend = backend
        self.resources = check_resources(resources, graph)
        self.placement_strategy = placement_strategy
        self.reserve_timeout = reserve_timeout
        self.labels = self._labels()
        self.executor: Any = None
        self.workers: dict[Module, Any] = {}
        self.refs: dict[tuple[Module, str], Any] = {}  # (module, output name) -> its latest message's reference
        self.rounds: dict[Module, int] = {m: 0 for m in graph.learnable}
        self.records: list[UpdateRecord] = []
        self.placement: dict[str, Any] = {}
        self.actor_resources: dict[Module, dict[str, Any]] = {}
        self.bundles: dict[Module, int | None] = {}
        self.started = time.time()
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.progress_interval = float(progress_interval)
        self._board: Any = None  # a ProgressBoard actor, started when progress is first watched on Ray
        self.extra: dict[str, Any] = {}  # e.g. target rounds, CLI arguments
        self.fingerprint = data_fingerprint(graph, self.labels)

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
            self._watch(watch_progress)
            return
        executor = RayExecutor(self.address) if self.backend == "ray" else LocalExecutor()
        learnable = list(self.graph.learnable)
        self.actor_resources = {m: self._resources_for(m) for m in learnable}  # fixed for the run: restarts reuse them
        bundles = executor.reserve(
            [self.actor_resources[m] for m in learnable],
            labels=[self.graph.name(m) for m in learnable],
            strategy=self.placement_strategy,
            timeout=self.reserve_timeout,
        )
        self.bundles = dict(zip(learnable, bundles, strict=True))
        self.executor = executor
        try:
            for obs in self.graph.observations:
                name = self.graph.name(obs)
                receiver = self.graph.name(obs.above[0]) if obs.above else name
                msg = ObservationData(sender=name, receiver=receiver, round=0, data=obs.data, lengths=obs.lengths)
                self.refs[(obs, "data")] = self.executor.put(msg)  # once: every round reuses the reference
            for module in learnable:
                self.workers[module] = self._start_worker(module)
            for module, worker in self.workers.items():
                self._record_placement(module, worker)
            self._watch(watch_progress)
        except BaseException:
            executor.shutdown()
            self.executor = None
            self.workers.clear()
            self.refs.clear()
            raise
        log.info("started %d workers on %s", len(self.workers), self.executor.name)

    def _record_placement(self, module: Module, worker: Any) -> None:
        self.placement[self.graph.name(module)] = {
            **self.executor.node_of(worker),
            **self.executor.bundle_info(self.bundles.get(module)),
        }

    def _resources_for(self, module: Module) -> dict[str, Any]:
        if self.backend != "ray":
            return {"num_cpus": os.cpu_count() or 1}
        res = self.resources.get(module.name, self.resources.get(module.kind, "auto"))
        return auto_resources(module.kind) if res == "auto" else dict(res)

    # -- one update ---------------------------------------------------------
    def update(self, module: Module, on_progress: ProgressCallback | None = None) -> UpdateRecord:
        """Run one update of ``module`` with the latest messages addressed to it.

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
        """
        if module not in self.rounds:
            raise ConfigError(f"{module!r} is not a learnable module of this session's graph")
        self.start()
        t0 = time.perf_counter()
        round_index = self.rounds[module]
        name = self.graph.name(module)
        names = module.output_names()
        attempt = 0
        while True:
            attempt += 1
            try:
                inbox = {key: self.refs[edge] for key, edge in module.inputs().items() if edge in self.refs}
                watch = on_progress if module.reports_progress else None
                if module.reports_progress and self.backend == "local":  # called in-process after each epoch
                    self.workers[module].on_epoch = None if watch is None else functools.partial(watch, name)
                elif module.reports_progress:  # pushed to a board actor; runs before update (calls are ordered)
                    self.executor.call(
                        self.workers[module], "watch", 1, sink=None if watch is None else self._progress_board()
                    )
                out_refs = self.executor.call(self.workers[module], "update", len(names), round=round_index, **inbox)
                values = self._await(module, round_index, out_refs, None if self.backend == "local" else watch)
                state = self.executor.get(
                    self.executor.call(self.workers[module], "get_state", 1), timeout=self.timeout
                )[0]
                break
            except Exception as exc:
                if not self.executor.is_actor_failure(exc):
                    raise
                if attempt > self.max_retries:
                    raise RuntimeError(
                        f"{name} failed in round {round_index} after {attempt} attempts: {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning(
                    "%s round %d: actor failed (%s); restarting from its last checkpoint",
                    name,
                    round_index,
                    type(exc).__name__,
                )
                self._restart(module)
        for out_name, ref in zip(names, out_refs, strict=True):
            if out_name != "report":
                self.refs[(module, out_name)] = ref
        outputs = dict(zip(names, values, strict=True))
        messages = {k: v for k, v in outputs.items() if isinstance(v, Message)}
        meta = {"module": name, "round": round_index, "seed": self.seed, "schema_version": checkpoint.FORMAT_VERSION}
        scalars, files = checkpoint.write_update(
            self.out_dir / name,
            round_index,
            messages,
            outputs["report"],
            state,
            meta,
            lambda d: module.export(d, outputs, self.labels),
        )
        seconds = time.perf_counter() - t0
        record = UpdateRecord(
            name,
            round_index,
            seconds,
            float(outputs["report"].get("seconds", seconds)),
            scalars,
            {f"{name}/{round_index:03d}/{k}": v for k, v in files.items()},
            attempt,
        )
        self.records.append(record)
        self.rounds[module] = round_index + 1
        self.write_manifest()
        return record

    def _watch(self, watch_progress: bool) -> None:
        """Start the progress board now (not at the first update) when progress is wanted on Ray."""
        if watch_progress and self.backend == "ray" and any(m.reports_progress for m in self.graph.learnable):
            self.executor.get(
                self.executor.call(self._progress_board(), "latest", 1, name=""), timeout=self.reserve_timeout
            )

    def _progress_board(self) -> Any:
        if self._board is None:
            self._board = self.executor.start("progress", ProgressBoard, (), {"num_cpus": 0})
        return self._board

    def _await(
        self, module: Module, round_index: int, refs: list[Any], on_progress: ProgressCallback | None
    ) -> list[Any]:
        """The update's results within ``timeout`` seconds, polling its progress meanwhile."""
        if on_progress is None:
            return self.executor.get(refs, timeout=self.timeout)
        name = self.graph.name(module)
        t0 = time.perf_counter()
        left = self.timeout
        while left > 0 and not self.executor.wait(refs, timeout=min(self.progress_interval, left)):
            info = self.executor.get(
                self.executor.call(self._progress_board(), "latest", 1, name=name), timeout=max(left, 0.001)
            )[0]
            if info is not None and info.get("round") == round_index:  # not a report left from the last round
                on_progress(name, info)
            left = self.timeout - (time.perf_counter() - t0)
        values = self.executor.get(refs, timeout=max(left, 0.001))
        on_progress(
            name, self.executor.get(self.executor.call(self.workers[module], "progress", 1), timeout=self.timeout)[0]
        )
        return values

    def _start_worker(self, module: Module) -> Any:
        index = self.graph.modules.index(module)
        seeds = module_seeds(self.seed, len(self.graph.modules))
        res = self.actor_resources.get(module) or self._resources_for(module)
        name = self.graph.name(module)
        above = self.graph.name(module.above[0]) if module.above else None
        below = self.graph.name(module.below[0]) if module.below else None
        cls, args = module.worker_spec(name, above, below, seeds[index], self.threads)
        worker = self.executor.start(name, cls, args, res, bundle=self.bundles.get(module))
        self.executor.set_threads(worker, self.threads)  # numpy's BLAS too: its sums also depend on the thread count
        return worker

    def _restart(self, module: Module) -> None:
        """Replace a dead actor by a new one restored from the module's last checkpoint,
        and re-send its inbox from the checkpoint files (the objects may be lost too)."""
        self.executor.kill(self.workers[module])
        self.workers[module] = worker = self._start_worker(module)
        last = self._last_record(module)
        if last is not None:
            state = load_state(update_dir(self.out_dir, last))
            self.executor.get(self.executor.call(worker, "set_state", 1, state=state), timeout=self.timeout)
        for src, out_name in module.inputs().values():
            if src.learnable and (src, out_name) in self.refs:
                self.refs[(src, out_name)] = self.executor.put(self._saved_message(src, out_name))
        self._record_placement(module, worker)

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
        for module in self.graph.learnable:
            last = self._last_record(module)
            if last is None:
                continue
            directory = update_dir(self.out_dir, last)
            state = load_state(directory)
            self.executor.get(
                self.executor.call(self.workers[module], "set_state", 1, state=state), timeout=self.timeout
            )
            for out_name in module.message_names():
                if (directory / f"{out_name}.arrow").exists():
                    self.refs[(module, out_name)] = self.executor.put(saved_message(directory, out_name))
            self.rounds[module] = last.round + 1

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
            "code_version": code_version(),
            "seed": self.seed,
            "threads": self.threads,
            "data": self.fingerprint,
            "backend": self.backend,
            "address": self.address,
            "n_points": self.graph.modules[0].n_points(),
            "modules": modules,
            "rounds": [rounds[r] for r in sorted(rounds)],
            "updates": [dataclasses.asdict(r) for r in self.records],
            "wall_seconds": round(time.time() - self.started, 3),
            "python": platform.python_version(),
            **self.extra,
        }

    def write_manifest(self) -> None:
        """Write ``run.json`` atomically."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_json(self.out_dir / "run.json", self.manifest())

    def close(self) -> None:
        """Stop the workers and give back their reservation (the Ray runtime itself
        stays up for the caller)."""
        if self.executor is not None:
            self.executor.shutdown()


def check_resources(resources: dict[str, Any] | None, graph: Graph) -> dict[str, Any]:
    """Check a ``resources`` option: module name or kind -> actor options or "auto".

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
    for key, value in resources.items():
        if key not in known:
            raise ConfigError(f"resources key {key!r} names no module of the graph; use one of {sorted(known)}")
        if value != "auto" and not isinstance(value, dict):
            raise ConfigError(
                f"resources[{key!r}] should be \"auto\" or actor options like {{'num_cpus': 1}}, got {value!r}"
            )
    return dict(resources)


def data_fingerprint(graph: Graph, labels: np.ndarray | None) -> dict[str, Any]:
    """SHA-256 of every observation's array (and the labels), to refuse resuming on other data.

    An observation made of many sequences also records their number and the
    SHA-256 of its lengths (``lengths``); one sequence records nothing more.
    """
    out: dict[str, Any] = {}
    for obs in graph.observations:
        arr = np.ascontiguousarray(obs.data)
        digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
        out[graph.name(obs)] = {"shape": list(arr.shape), "sha256": digest.hexdigest()}
        lengths = getattr(obs, "lengths", None)
        if lengths is not None:
            out[graph.name(obs)]["lengths"] = lengths_fingerprint(lengths)
    if labels is not None:
        out["labels_sha256"] = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()
    return out


def lengths_fingerprint(lengths: np.ndarray) -> dict[str, Any]:
    """Number of sequences, shortest and longest, and the SHA-256 of the lengths (S,)."""
    arr = np.ascontiguousarray(lengths, dtype=np.int64)
    return {
        "n_sequences": int(arr.size),
        "min": int(arr.min()),
        "max": int(arr.max()),
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
    }


def code_version() -> str:
    """The installed package version."""
    try:
        from importlib.metadata import version

        return version("serket-ray")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"


__all__ = ["Observation", "Session", "UpdateRecord"]
