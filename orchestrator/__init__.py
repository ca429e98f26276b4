"""serket-ray orchestrator: builds the module graph, runs actors, routes messages,
checkpoints every update.

The public names are imported on first use (PEP 562): an actor process that only
needs a small submodule (a function of :mod:`orchestrator.executor` it is asked to
run, say) does not import the whole orchestrator, scipy and the GMM with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
