"""serket-ray orchestrator: builds the module graph, runs actors, routes messages,
checkpoints every update."""

from orchestrator.api import Orchestrator, RunResult
from orchestrator.graph import Graph, build_graph
from orchestrator.session import Session

__all__ = ["Graph", "Orchestrator", "RunResult", "Session", "build_graph"]
