"""The Serket-style path: ``module.update()`` in a script that never names the orchestrator.

:meth:`actors.module.Module.update` hands itself to :func:`update` here, with
the one late import from ``actors/`` up into ``orchestrator/`` (Serket's API
demands that a module update itself).  Learning runs in the graph's default
session, created on the first ``update()``; ``mode="recog"`` recognises the
whole graph once with the model learned in the current directory.

The default session is kept on the graph's modules (``_session``), a cycle
(module -> session -> graph -> module) that the garbage collector frees, and with
it the session's placement group, once the script drops its modules.  A
module-global WeakKeyDictionary (tried first) never frees it: its value, the
session, holds its keys through the graph, and the run's resources stayed reserved
for the rest of the process (tests/test_ray_pipeline.py then could not reserve).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from actors.module import Module
from orchestrator.graph import build_graph
from orchestrator.session import Session

_RECOGNISED: weakref.WeakSet[Module] = weakref.WeakSet()


def update(module: Module) -> None:
    """One Serket-style update of ``module``: learn in its default session, or recognise (``mode="recog"``)."""
    if module.mode == "recog":
        recognise_graph(module)
        return
    default_session(module).update(module)


def default_session(module: Module) -> Session:
    """The session of a Serket-style script: created on the first ``update()`` of any module of the graph.

    Outputs go to the current directory; the seed comes from ``SERKET_RAY_SEED``
    (default 0) and the cluster from ``RAY_ADDRESS`` (default: a local Ray).
    """
    session = getattr(module, "_session", None)
    if session is None:
        graph = build_graph(module)
        session = Session(
            graph,
            out_dir=Path.cwd(),
            seed=int(os.environ.get("SERKET_RAY_SEED", "0")),
            address=os.environ.get("RAY_ADDRESS") or None,
        )
        for m in graph.modules:
            m._session = session  # type: ignore[attr-defined]
    return session


def recognise_graph(module: Module) -> Any:
    """Serket-style ``mode="recog"``: recognise once for the whole graph of ``module``,
    with the model learned in the current directory, writing there.

    Returns
    -------
    orchestrator.recog.RecogResult or None
        None when the graph was recognised already.
    """
    from actors.gmm import GMM
    from actors.vae import VAE
    from orchestrator.recog import recognise

    if module in _RECOGNISED:
        return None
    graph = build_graph(module)
    gmm = next((m for m in graph.modules if isinstance(m, GMM)), None)
    vae = next((m for m in graph.modules if isinstance(m, VAE)), None)
    labels = gmm.labels() if gmm is not None else None
    obs = graph.observations[0]
    result = recognise(
        Path.cwd(),
        obs.data,
        Path.cwd(),
        labels=labels,
        encoder=vae.encoder if vae else None,
        decoder=vae.decoder if vae else None,
        lengths=obs.lengths,
    )
    _RECOGNISED.update(graph.modules)
    return result
