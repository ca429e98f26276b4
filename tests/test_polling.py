"""``orchestrator.polling``: where a training worker's progress goes, in this process (milliseconds)."""

from __future__ import annotations

import numpy as np

from actors.gmm import GMM
from actors.module import Observation
from actors.vae import VAE
from orchestrator.graph import build_graph
from orchestrator.local_executor import LocalExecutor
from orchestrator.polling import ProgressWatch


class _Worker:
    on_epoch = None


def test_in_process_progress_goes_straight_to_the_callback() -> None:
    obs, vae, gmm = Observation(np.zeros((4, 2))), VAE(2, epochs=1), GMM(2)
    vae.connect(obs)
    gmm.connect(vae)
    graph = build_graph(obs)
    watch = ProgressWatch(LocalExecutor(), graph, timeout=5.0, interval=0.1, start_timeout=1.0)
    seen: list[tuple[str, dict]] = []
    worker = _Worker()
    assert watch.attach(vae, worker, lambda name, info: seen.append((name, info))) is None  # nothing to poll
    worker.on_epoch({"epoch": 1})
    assert seen == [(graph.name(vae), {"epoch": 1})]
    assert watch.attach(vae, worker, None) is None and worker.on_epoch is None
    other = _Worker()
    assert watch.attach(gmm, other, lambda *a: None) is None and other.on_epoch is None  # the GMM reports none
    assert watch.results(vae, worker, 0, ["a", "b"], None) == ["a", "b"]
    watch.start_early(True)  # no board in this process
    assert watch._board is None
