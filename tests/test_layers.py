"""The package's imports point one way: messages <- actors <- orchestrator kernel <- session <- front doors <- cli.

Every import of every package file is read with ``ast`` (late imports inside
functions included) and checked: no import circle among package files,
nothing imports the CLI, ``ray`` is imported only where actors are made and
called, and ``actors/`` and ``messages/`` never import ``orchestrator/``,
except for the one Serket seam in ``actors/module.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("messages", "actors", "orchestrator")

#: The only package files that may import ``ray``: the executor makes and calls the actors, the progress board is one.
RAY_ALLOWED = {
    "orchestrator.executor",
    "orchestrator.progress",
    "orchestrator.shard_group",  # issue 12: the sharded GMM + MM
    "orchestrator.vae_group",  # issue 12: the data-parallel VAE
}
#: The one allowed upward import: Serket's API has a module update itself (``Module.update``).
SEAM = ("actors.module", "orchestrator.serket")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Top-level modules (``ray``, ``numpy``) and package modules that ``path`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(subs)  # ``from pkg import sub`` points at the submodule ...
            if len(subs) < len(node.names):
                found.add(base)  # ... ``from pkg import name`` at the package's ``__init__``
    out = set()
    for mod in found:
        while mod not in known and "." in mod:
            mod = mod.rpartition(".")[0]
        out.add(mod)
    return out


def _graph() -> dict[str, set[str]]:
    files = _files()
    known = set(files)
    return {name: _imports(name, path, known) for name, path in files.items()}


def _package_edges() -> dict[str, set[str]]:
    graph = _graph()
    return {name: {m for m in deps if m in graph and m != name} for name, deps in graph.items()}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``edges``, as the list of files on it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_sees_the_package() -> None:
    edges = _package_edges()
    assert {"actors.module", "orchestrator.session", "orchestrator.cli", "messages.base"} <= set(edges)
    assert "orchestrator.serket" in edges["actors.module"]
    assert "orchestrator.recipe" in edges["orchestrator.cli_commands"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle(edges) is not None  # the seam itself closes a circle: module -> serket -> session -> module


def test_no_import_circle_among_package_files() -> None:
    edges = _package_edges()
    edges[SEAM[0]].discard(
        SEAM[1]
    )  # the seam is a late import that points up; without it the rest must be a tree of layers
    assert _cycle(edges) is None


#: The command line: ``cli`` and the two modules only it imports, its parser and its sub-commands.
CLI = {"orchestrator.cli", "orchestrator.cli_parser", "orchestrator.cli_commands"}


def test_nothing_imports_the_cli() -> None:
    edges = _package_edges()
    assert CLI <= set(edges)
    importers = sorted((name, dep) for name, deps in edges.items() if name not in CLI for dep in deps & CLI)
    assert importers == []
    assert edges["orchestrator.cli"] >= {"orchestrator.cli_parser", "orchestrator.cli_commands"}


def test_ray_is_imported_only_where_actors_are_made() -> None:
    importers = {name for name, deps in _graph().items() if "ray" in deps}
    assert importers <= RAY_ALLOWED, sorted(importers - RAY_ALLOWED)
    assert "orchestrator.executor" in importers


def test_actors_and_messages_do_not_import_the_orchestrator() -> None:
    upward = sorted(
        (name, dep)
        for name, deps in _package_edges().items()
        if name.split(".")[0] in ("actors", "messages")
        for dep in deps
        if dep.split(".")[0] == "orchestrator" and (name, dep) != SEAM
    )
    assert upward == []
    below = sorted(
        (name, dep)
        for name, deps in _package_edges().items()
        if name.split(".")[0] == "messages"
        for dep in deps
        if dep.split(".")[0] == "actors"
    )
    assert below == []
