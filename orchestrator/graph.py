"""The module graph: which modules, in what order, under which directory names."""

from __future__ import annotations

import dataclasses

from actors.module import Module, Observation
from messages.errors import DataError, GraphError


@dataclasses.dataclass
class Graph:
    """A connected graph of modules.

    Attributes
    ----------
    modules : list of Module
        Observations first, then learnable modules in creation order (which the
        Serket numbering ``module%03d_<name>`` follows).
    names : dict
        Module -> directory name, e.g. ``module002_gmm``.
    """

    modules: list[Module]
    names: dict[Module, str]

    @property
    def learnable(self) -> list[Module]:
        """Modules that have a worker, bottom-up (the tutorial's update order)."""
        return sorted((m for m in self.modules if m.learnable), key=lambda m: (_depth(m), m.created))

    @property
    def observations(self) -> list[Observation]:
        """The graph's observations."""
        return [m for m in self.modules if isinstance(m, Observation)]

    def name(self, module: Module) -> str:
        """Directory name of ``module``."""
        return self.names[module]


def _depth(module: Module) -> int:
    depth = 0
    while module.below:
        module = module.below[0]
        depth += 1
    return depth


def build_graph(*roots: Module) -> Graph:
    """Collect every module connected to ``roots`` and check the graph can run.

    Raises
    ------
    GraphError
        A learnable module has nothing below it, or the graph has no observation.
    DataError
        Modules disagree on the number of data points.
    """
    seen: dict[int, Module] = {}
    stack = list(roots)
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen[id(m)] = m
        stack.extend(m.below)
        stack.extend(m.above)
    modules = sorted(seen.values(), key=lambda m: (m.learnable, m.created))
    if not any(isinstance(m, Observation) for m in modules):
        raise GraphError(
            "the graph should contain an Observation at the bottom, got none: call vae.connect(Observation(data))"
        )
    for m in modules:
        if m.learnable and not m.below:
            raise GraphError(f"{m!r} should be connected to a module below it, got nothing: call {m.name}.connect(...)")
    sizes = {m.n_points() for m in modules}
    if len(sizes) != 1:
        raise DataError(f"every observation should have the same number of points, got {sorted(sizes)}")
    names: dict[Module, str] = {}
    for i, m in enumerate(modules):
        names[m] = f"module{i:03d}_{m.name}"
    if len(set(names.values())) != len(names):
        raise GraphError("module names should be unique within a graph")
    for m in modules:
        if m.learnable:
            check_inputs(m, modules)
    return Graph(modules=modules, names=names)


def check_inputs(module: Module, modules: list[Module]) -> None:
    """Check that each named edge into ``module`` comes from a module of the graph and names one of its messages.

    Raises
    ------
    GraphError
        An edge's source is not in the graph, or names an output its source does not send.
    """
    for key, (source, output) in module.inputs().items():
        if not any(source is m for m in modules):
            raise GraphError(f"{module!r} input {key!r} should come from a module of the graph, got {source!r}")
        sent = source.message_names()
        if output not in sent:
            raise GraphError(
                f"{module!r} input {key!r} should name one of {source!r}'s outputs {list(sent)}, got {output!r}"
            )
