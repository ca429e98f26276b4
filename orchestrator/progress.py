"""What the command line shows while a run works.

One line per finished update (round, module, seconds, elapsed, accuracy) always,
unless quiet; on a terminal, also a live bar of the VAE's epochs, redrawn in
place and cleared before the next line, e.g.::

    vae      round 2/5 [##########..........] 100/200 epochs  loss 105.31    4.2 s
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO


class ProgressBoard:
    """Holds the latest progress each training worker pushed; a tiny Ray actor (no CPU).

    Workers call ``report`` (fire and forget) from their training loop, the
    orchestrator polls ``latest``: the worker's own thread is never interrupted.
    """

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}

    def report(self, name: str, info: dict[str, Any]) -> None:
        """Keep ``info`` as ``name``'s latest progress."""
        self._latest[name] = info

    def latest(self, name: str) -> dict[str, Any] | None:
        """``name``'s latest progress, or None."""
        return self._latest.get(name)


class ProgressDisplay:
    """Progress lines and, on a terminal, an epoch bar.

    Parameters
    ----------
    rounds : int
        Rounds of the run (for "round r/R").
    quiet : bool
        Show nothing.
    stream : file, optional
        Where to write (standard output by default).
    bar : bool, optional
        Draw the epoch bar; by default only when ``stream`` is a terminal.
    """

    def __init__(self, rounds: int, quiet: bool = False, stream: TextIO | None = None, bar: bool | None = None) -> None:
        self.rounds = rounds
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.bar = (bool(isatty()) if callable(isatty) else False) if bar is None else bar
        self.started = time.perf_counter()
        self._drawn = False

    def on_update(self, rec: Any) -> None:
        """One finished update (an :class:`orchestrator.session.UpdateRecord`)."""
        if self.quiet:
            return
        self._clear()
        extra = f"  accuracy {rec.scalars['accuracy']:.4f}" if "accuracy" in rec.scalars else ""
        self.stream.write(
            f"round {rec.round + 1}/{self.rounds}  {rec.module:<16} {rec.seconds:7.2f} s  "
            f"(elapsed {time.perf_counter() - self.started:7.1f} s){extra}\n"
        )
        self.stream.flush()

    @property
    def draws(self) -> bool:
        """Whether :meth:`on_progress` draws anything (a bar, not quiet)."""
        return self.bar and not self.quiet

    @property
    def progress_callback(self) -> Any:
        """:meth:`on_progress` when it :attr:`draws`, else None: then no worker is asked to report
        progress, and on Ray no progress board (one more process) is started for nothing."""
        return self.on_progress if self.draws else None

    def on_progress(self, name: str, info: dict[str, Any]) -> None:
        """A training module's progress (see :meth:`orchestrator.session.Session.update`)."""
        if not self.draws:
            return
        self.stream.write(
            "\r" + bar_line(name, info, self.rounds, shutil.get_terminal_size((100, 20)).columns) + "\x1b[K"
        )
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False


def bar_line(name: str, info: dict[str, Any], rounds: int, columns: int = 100) -> str:
    """One line: module, round, a bar of epochs done, the last loss and seconds so far.

    Parameters
    ----------
    info : dict
        ``round`` (0-based), ``epoch`` done, ``epochs``, ``loss`` (or None), ``seconds``.
    columns : int
        Terminal width; the bar shrinks to fit.
    """
    epoch, epochs = int(info.get("epoch", 0)), max(int(info.get("epochs", 1)), 1)
    rnd = info.get("round")
    head = f"{name:<8} round {'?' if rnd is None else rnd + 1}/{rounds} "
    loss = info.get("loss")
    tail = (
        f" {epoch}/{epochs} epochs"
        + ("" if loss is None else f"  loss {loss:.2f}")
        + f"  {float(info.get('seconds', 0.0)):6.1f} s"
    )
    width = max(10, min(40, columns - len(head) - len(tail) - 3))
    filled = min(width, epoch * width // epochs)
    return f"{head}[{'#' * filled}{'.' * (width - filled)}]{tail}"
