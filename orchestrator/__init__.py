"""serket-ray orchestrator: builds the module graph, runs actors, routes messages,
checkpoints every update.

The public names are imported on first use (PEP 562): an actor process that only
needs a small submodule (a function of :mod:`orchestrator.executor` it is asked to
run, say) does not import the whole orchestrator, scipy and the GMM with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.lazy import lazy_names

if TYPE_CHECKING:
    from orchestrator.api import Orchestrator, RunResult
    from orchestrator.graph import Graph, build_graph
    from orchestrator.session import Session

__all__ = ["Graph", "Orchestrator", "RunResult", "Session", "build_graph"]

_HOME = {
    "Orchestrator": "orchestrator.api",
    "RunResult": "orchestrator.api",
    "Graph": "orchestrator.graph",
    "build_graph": "orchestrator.graph",
    "Session": "orchestrator.session",
}


__getattr__ = lazy_names("orchestrator", _HOME, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
