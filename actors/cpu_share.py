"""How many torch threads the VAE should run now: its CPUs less what other processes keep busy.

torch's OpenMP threads spin while they wait (the default policy): on a quiet machine that is
the fastest way to train the VAE's small matrices (measured: 2 threads spinning 1.55 s per
100 epochs of the tutorial, 2 threads passive 3.5 s, 1 thread 2.4 s), but beside a busy core
the spinning threads fight it for time slices (6.5 s, 4.2x slower).  A :class:`ThreadGovernor`
measures, from ``/proc/stat`` and this process's own CPU time, how many of the process's CPUs
other processes use, and gives torch the rest (at least one thread).

The VAE worker runs a governor only where changing torch's thread count leaves its results as
they are: :func:`actors.vae_core.threads_agree` checks one step and one encode with 1 and with all
threads for the update's shapes (some shapes do change, tests/test_cpu_share.py), and the reported
loss is reduced per row, so a run's files do not depend on the load it met.  Where ``/proc/stat``
cannot be read the governor keeps the thread count.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds of wall time a measurement covers before the governor decides again.
WINDOW_S = 0.1

#: A CPU counts as taken by others when they use more than this share of it (hysteresis below).
TAKEN_AT = 0.6


def allowed_cpus() -> list[int]:
    """The CPU numbers this process may run on (its affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def busy_seconds(cpus: list[int], path: str = "/proc/stat") -> float | None:
    """CPU seconds the CPUs ``cpus`` spent busy (not idle or waiting on I/O) since boot, or None.

    Parameters
    ----------
    cpus : list of int
    path : str
        ``/proc/stat``'s format (a ``cpuN user nice system idle iowait irq softirq steal ...`` line per CPU).
    """
    wanted = {f"cpu{c}" for c in cpus}
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    seen = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name not in wanted:
            continue
        fields = [int(v) for v in rest.split()]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        busy += sum(fields[:8]) - fields[3] - fields[4]
        seen += 1
    return busy / ticks if seen else None


def threads_for(others_busy: float, cpus: int, most: int, current: int) -> int:
    """The thread count for ``others_busy`` CPUs' worth of other work on ``cpus`` CPUs.

    Each CPU that others keep more than :data:`TAKEN_AT` busy is left to them; a thread is taken
    back only when they use less than ``TAKEN_AT - 0.2`` of it (no flapping near the threshold).

    Parameters
    ----------
    others_busy : float
        CPUs' worth of time other processes used over the last window.
    cpus, most, current : int
        The CPUs this process may use, the most threads it may run, the count it runs now.

    Returns
    -------
    int, between 1 and ``most``
    """
    free_now = cpus - others_busy
    keep = int(free_now + TAKEN_AT + 1e-9)  # a CPU others use at most TAKEN_AT of stays ours
    grow = int(free_now + TAKEN_AT - 0.2 + 1e-9)
    target = keep if keep <= current else max(current, grow)
    return max(1, min(most, target))


class ThreadGovernor:
    """Sets torch's thread count from the load the other processes put on this process's CPUs.

    Call :meth:`start` when an update begins (it measures a short window first) and
    :meth:`step` after each epoch; it decides once per :data:`WINDOW_S` of wall time.

    Parameters
    ----------
    set_threads, get_threads : callable
        ``torch.set_num_threads`` and ``torch.get_num_threads`` (passed in, so the policy is testable).
    most : int
        The most threads to run (the CPUs the run gave the VAE).
    """

    def __init__(self, set_threads: Callable[[int], None], get_threads: Callable[[], int], most: int) -> None:
        self._set, self._get = set_threads, get_threads
        self.most = max(1, int(most))
        self.cpus = allowed_cpus()
        self._mark: tuple[float, float, float] | None = None
        self.changes = 0

    def _sample(self) -> tuple[float, float, float] | None:
        busy = busy_seconds(self.cpus)
        if busy is None:
            return None
        return time.monotonic(), busy, time.process_time()

    def start(self) -> None:
        """Measure :data:`WINDOW_S` now and set the thread count before the first epoch."""
        self._mark = self._sample()
        if self._mark is None:
            return
        time.sleep(WINDOW_S)
        self.step()

    def step(self) -> None:
        """Decide again if a window has passed since the last decision."""
        if self._mark is None:
            return
        now = self._sample()
        if now is None:
            return
        wall = now[0] - self._mark[0]
        if wall < WINDOW_S:
            return
        others = max(0.0, (now[1] - self._mark[1]) - (now[2] - self._mark[2])) / wall
        self._mark = now
        current = self._get()
        want = threads_for(others, len(self.cpus), self.most, current)
        if want != current:
            log.debug("others use %.2f of %d CPUs: torch threads %d -> %d", others, len(self.cpus), current, want)
            self._set(want)
            self.changes += 1
