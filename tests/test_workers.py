"""``orchestrator.workers``: the resources option and a local pool's workers (in this process, about a second)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from actors.gmm import GMM
from actors.module import Observation
from messages.errors import ConfigError
from orchestrator.graph import build_graph
from orchestrator.workers import WorkerPool, check_resources


def _graph():
    obs, gmm = Observation(np.random.default_rng(0).random((20, 3))), GMM(2, itr=2)
    gmm.connect(obs)
    return build_graph(obs), gmm


def test_resources_name_learnable_modules_or_kinds() -> None:
    graph, gmm = _graph()
    assert check_resources(None, graph) == {}
    assert check_resources({"gmm": "auto"}, graph) == {"gmm": "auto"}
    with pytest.raises(ConfigError, match=r"resources key 'vae' names no module of the graph; use one of \['gmm'"):
        check_resources({"vae": {"num_cpus": 1}}, graph)
    with pytest.raises(ConfigError, match='should be "auto" or actor options'):
        check_resources({"gmm": 2}, graph)


def test_a_local_pool_starts_places_and_restores_a_worker() -> None:
    graph, gmm = _graph()
    pool = WorkerPool(
        graph,
        backend="local",
        address=None,
        resources={},
        placement_strategy="PACK",
        reserve_timeout=5.0,
        seed=0,
        threads=1,
        timeout=30.0,
    )
    assert pool.open().name == "local" and pool.bundles == {gmm: None}
    assert pool.actor_resources == {gmm: {"num_cpus": os.cpu_count() or 1}}
    worker = pool.start(gmm, None, None)
    assert pool.workers == {gmm: worker}
    pool.record_placement(gmm)
    assert pool.placement == {graph.name(gmm): {"node_id": None, "node_ip": "127.0.0.1", "resources": {}}}
    state = pool.get_state(gmm)
    again = pool.start(gmm, None, None)  # a replacement, as after a crash
    assert again is not worker and pool.workers[gmm] is again
    pool.set_state(gmm, state)
    back = pool.get_state(gmm)
    assert back.arrays.keys() == state.arrays.keys()
    for key in state.arrays:
        np.testing.assert_array_equal(back.arrays[key], state.arrays[key])
    pool.shutdown()
