"""Progress of a training worker while its update runs: in-process callbacks, or polling a board actor on Ray."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from actors.module import Module
from orchestrator.graph import Graph
from orchestrator.progress import ProgressBoard

#: ``on_progress(module name, info)``; see :meth:`orchestrator.session.Session.update`.
ProgressCallback = Callable[[str, dict[str, Any]], None]


class ProgressWatch:
    """Hands a training worker its progress sink and waits for its results, reporting progress meanwhile.

    Parameters
    ----------
    executor : LocalExecutor or RayExecutor
        The run's executor (started).
    graph : Graph
    timeout : float
        Seconds an update may take.
    interval : float
        Seconds between two polls of the board (Ray only).
    start_timeout : float
        Seconds to wait for the board actor to start.
    """

    def __init__(self, executor: Any, graph: Graph, timeout: float, interval: float, start_timeout: float) -> None:
        self.executor = executor
        self.graph = graph
        self.timeout = timeout
        self.interval = interval
        self.start_timeout = start_timeout
        self.local = executor.name == "local"
        self._board: Any = None  # a ProgressBoard actor, started when progress is first watched on Ray

    def board(self) -> Any:
        """The progress board actor, started on first use."""
        if self._board is None:
            self._board = self.executor.start("progress", ProgressBoard, (), {"num_cpus": 0})
        return self._board

    def start_early(self, watch_progress: bool, wait: bool = True) -> None:
        """Start the progress board now (not at the first update) when progress is wanted on Ray.

        With ``wait`` False the board's actor is only created (its process starts beside the
        workers'); a later call with ``wait`` True waits until it answers.
        """
        if watch_progress and not self.local and any(m.reports_progress for m in self.graph.learnable):
            board = self.board()
            if wait:
                self.executor.get(self.executor.call(board, "latest", 1, name=""), timeout=self.start_timeout)

    def attach(self, module: Module, worker: Any, on_progress: ProgressCallback | None) -> ProgressCallback | None:
        """Point a training worker's progress at ``on_progress``; returns the callback :meth:`results` polls for."""
        if not module.reports_progress:
            return None
        name = self.graph.name(module)
        if self.local:  # called in-process after each epoch
            worker.on_epoch = None if on_progress is None else functools.partial(on_progress, name)
            return None
        # pushed to the board actor; runs before the update (an actor's calls are ordered)
        self.executor.call(worker, "watch", 1, sink=None if on_progress is None else self.board())
        return on_progress

    def results(
        self, module: Module, worker: Any, round_index: int, refs: list[Any], on_progress: ProgressCallback | None
    ) -> list[Any]:
        """The update's results within ``timeout`` seconds, polling its progress meanwhile."""
        if on_progress is None:
            return self.executor.get(refs, timeout=self.timeout)
        name = self.graph.name(module)
        t0 = time.perf_counter()
        left = self.timeout
        while left > 0 and not self.executor.wait(refs, timeout=min(self.interval, left)):
            info = self.executor.get(
                self.executor.call(self.board(), "latest", 1, name=name), timeout=max(left, 0.001)
            )[0]
            if info is not None and info.get("round") == round_index:  # not a report left from the last round
                on_progress(name, info)
            left = self.timeout - (time.perf_counter() - t0)
        values = self.executor.get(refs, timeout=max(left, 0.001))
        on_progress(name, self.executor.get(self.executor.call(worker, "progress", 1), timeout=self.timeout)[0])
        return values
