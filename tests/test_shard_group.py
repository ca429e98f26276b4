"""The sharded GMM + MM as Ray actor groups: the same bytes as the in-process shards, the driver sees little."""

from __future__ import annotations

import numpy as np

from actors.config import GMMConfig, MMConfig
from actors.gmm_shards import ShardedGMM, local_shards
from actors.mm_shards import ShardedMM, local_mm_shards
from actors.shard_core import BLOCK, LocalShards, shard_ranges
from orchestrator.shard_group import ShardedPipeline

K, D, N = 4, 5, 3 * BLOCK - 10


def _latents() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 3.0, (K, D))[np.arange(N) % K] + rng.normal(size=(N, D))


def test_ray_shard_groups_equal_the_in_process_run(ray_session) -> None:
    x = _latents()
    gcfg, mcfg = GMMConfig(n_components=K, n_sweeps=3), MMConfig(em_iterations=2)
    # reference: one in-process shard
    gmm, mm = ShardedGMM(gcfg, np.random.SeedSequence(3)), ShardedMM(mcfg, False)
    g = LocalShards(local_shards(x, 1, K, gmm.key))
    m = LocalShards(local_mm_shards(shard_ranges(N, 1), None, N))
    for r in (1, 2):
        gmm.update(g, N, r)
        m.map("load", per_shard=[(s.posteriors(),) for s in g.shards])
        want = mm.update(m, N, r)
        g.map("set_prior", per_shard=[(s.message(),) for s in m.shards])
    want_labels = g.shards[0].result()["labels"]

    refs = [ray_session.put(x[a:b]) for a, b in shard_ranges(N, 3)]  # put once per shard
    pipe = ShardedPipeline(refs, N, gcfg, mcfg, np.random.SeedSequence(3), bundle={"CPU": 0.5})
    try:
        rounds = [pipe.round(r) for r in (1, 2)]
        assert pipe.labels().tobytes() == want_labels.tobytes()
        assert rounds[-1]["mm"]["transitions"].tobytes() == want["transitions"].tobytes()
        # what reached the driver is reduced statistics: far less than one round's posteriors (N x K floats)
        assert max(r["driver_received"] for r in rounds) < N * K * 8
        assert all(v > 0 for v in pipe.peak_rss()["gmm"])
    finally:
        pipe.close()


def test_shards_key_in_resources_is_one_or_a_clear_error() -> None:
    import pytest

    from messages.errors import ConfigError
    from orchestrator.executor import actor_options

    assert actor_options({"num_cpus": 1, "shards": 1}) == actor_options({"num_cpus": 1}) == {"num_cpus": 1}
    with pytest.raises(ConfigError, match="'shards': 4 is not an actor option"):
        actor_options({"shards": 4})
    with pytest.raises(ConfigError, match="'shards' should be a positive integer, got 0"):
        actor_options({"shards": 0})
