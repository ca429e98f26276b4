"""The sharded GMM and MM cores (no Ray): byte-identical for S = 1, 2, 4, and equal to the unsharded numerics."""

from __future__ import annotations

import numpy as np
import pytest

from actors import gmm_core, mm_core
from actors.config import GMMConfig, MMConfig
from actors.gmm_shards import GMMShard, ShardedGMM, local_shards, posterior_from_stats
from actors.mm import MMWorker
from actors.mm_shards import ShardedMM, local_mm_shards, sharded_forward_backward
from actors.shard_core import BLOCK, LocalShards, block_uniforms, fixed_sum, from_fixed, shard_ranges, to_fixed
from messages import ClassPosteriors

K, D = 5, 6
N = 4 * BLOCK - 100  # four blocks, the last one partial


def _latents(n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (K, D))
    return centres[np.arange(n) % K] + rng.normal(size=(n, D))


def _run(x: np.ndarray, n_shards: int, lengths: np.ndarray | None, rounds: int = 2) -> dict[str, np.ndarray]:
    """GMM then MM for ``rounds`` rounds on ``n_shards`` shards, the MM's message going back to the GMM shards."""
    n = x.shape[0]
    gmm = ShardedGMM(GMMConfig(n_components=K, n_sweeps=4), np.random.SeedSequence(7))
    mm = ShardedMM(MMConfig(em_iterations=3), lengths is not None)
    ranges = shard_ranges(n, n_shards)
    g = LocalShards(local_shards(x, n_shards, K, gmm.key))
    m = LocalShards(local_mm_shards(ranges, lengths, n))
    for r in range(1, rounds + 1):
        g_rep = gmm.update(g, n, r)
        m.map("load", per_shard=[(s.posteriors(),) for s in g.shards])
        m_rep = mm.update(m, n, r)
        g.map("set_prior", per_shard=[(s.message(),) for s in m.shards])
    out = {key: np.concatenate([s.result()[key] for s in g.shards]) for key in ("labels", "probs", "log_likelihood")}
    out["mm_prior"] = np.concatenate([s.result()["prior"] for s in m.shards])
    for key in ("class_means", "covariances", "weights", "counts", "sizes"):
        out[key] = g_rep[key]
    out["transitions"], out["log_lik"] = m_rep["transitions"], np.array(m_rep["log_likelihood"])
    return out


@pytest.mark.parametrize("lengths", [None, np.array([3000, 5000, 100, N - 8100])], ids=["one", "many"])
def test_gmm_and_mm_are_byte_identical_for_1_2_4_shards(lengths: np.ndarray | None) -> None:
    x = _latents()
    runs = {s: _run(x, s, lengths) for s in (1, 2, 4)}
    for s in (2, 4):
        for key, value in runs[1].items():
            assert value.tobytes() == runs[s][key].tobytes(), f"{key} differs between S=1 and S={s}"
    # and the sampler did its job: the well-separated classes are found (up to numbering)
    from actors.scoring import accuracy

    assert accuracy(runs[1]["labels"], np.arange(N) % K) > 0.99


def test_reduced_statistics_equal_a_direct_numpy_computation() -> None:
    x = _latents()
    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, N)
    ref = rng.normal(size=(K, D))
    shards = local_shards(x, 3, K, np.zeros(2, np.uint64))
    for s, (a, b) in zip(shards, shard_ranges(N, 3), strict=True):
        s.labels = labels[a:b].copy()
    far = np.abs(x).max() + np.abs(ref).max()
    e1, e2 = 61 - int(np.frexp(N * far)[1]), 61 - int(np.frexp(N * far * far)[1])
    parts = [s.class_stats(ref, e1, e2) for s in shards]
    stats = tuple(fixed_sum([p[i] for p in parts]) for i in range(3))
    prior = gmm_core.default_prior(x)
    got = posterior_from_stats(prior, stats, ref, e1, e2)
    want = gmm_core.class_posterior(x, labels, K, prior)
    np.testing.assert_array_equal(got.counts, np.bincount(labels, minlength=K))
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.scale, want.scale, rtol=1e-10)
    # the moments behind the prior: mean and covariance of all points
    gmm = ShardedGMM(GMMConfig(n_components=K), np.random.SeedSequence(0))
    mean, cov, maxabs = gmm._moments(LocalShards(shards), N)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cov, np.cov(x.T), rtol=1e-11)
    assert maxabs == np.abs(x).max()


def test_fixed_point_sum_is_order_free_and_close() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 7)) * 1e3
    e = 61 - int(np.frexp(50 * 1e3 * 10)[1])
    ints = [to_fixed(v, e) for v in values]
    forward, backward = fixed_sum(ints), fixed_sum(ints[::-1])
    assert forward.tobytes() == backward.tobytes()
    np.testing.assert_allclose(from_fixed(forward, e), values.sum(axis=0), rtol=1e-12)


def test_block_draws_depend_only_on_key_round_sweep_and_block() -> None:
    key = np.array([1, 2], np.uint64)
    a = block_uniforms(key, 1, 3, BLOCK, 100)
    np.testing.assert_array_equal(a, block_uniforms(key, 1, 3, BLOCK, 100))
    for other in (block_uniforms(key, 1, 3, 2 * BLOCK, 100), block_uniforms(key, 1, 4, BLOCK, 100)):
        assert not np.array_equal(a, other)
    assert block_uniforms(key, 2, 3, BLOCK, BLOCK)[:100].tobytes() != a.tobytes()


@pytest.mark.parametrize("n_shards", [1, 2, 3])
def test_sharded_forward_backward_equals_mm_core_on_many_sequences(n_shards: int) -> None:
    rng = np.random.default_rng(2)
    n = 3 * BLOCK + 50
    lengths = np.array([1, 4000, 2, 5000, n - 9003])  # sequences cross shard and block boundaries
    log_em = 2.0 * rng.normal(size=(n, K))
    trans = rng.dirichlet(np.ones(K), size=K)
    initial = rng.dirichlet(np.ones(K))
    want = mm_core.forward_backward(log_em, trans, initial, lengths=lengths)
    ranges = shard_ranges(n, n_shards)
    shards = LocalShards(local_mm_shards(ranges, lengths, n))
    shards.map("load", per_shard=[((np.exp(log_em[a:b]), log_em[a:b]),) for a, b in ranges])
    got = sharded_forward_backward(shards, trans, initial, n)
    np.testing.assert_allclose(got.pair_counts, want.pair_counts, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(got.log_likelihood, want.log_likelihood, rtol=1e-13)
    prior = np.concatenate([s.prior for s in shards.shards])
    posterior = np.concatenate([s.posterior for s in shards.shards])
    np.testing.assert_allclose(prior, want.prior, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(posterior, want.posterior, rtol=1e-11, atol=1e-14)
    first = want.posterior[mm_core.sequence_starts(lengths, n)].sum(axis=0)
    np.testing.assert_allclose(got.first, first, rtol=1e-12)


def test_sharded_mm_update_matches_the_mm_worker() -> None:
    rng = np.random.default_rng(4)
    n = 2 * BLOCK + 7
    lengths = np.array([3000, n - 3000])
    log_em = 2.0 * rng.normal(size=(n, K))
    probs = gmm_core.normalise_log(log_em)
    cfg = MMConfig(em_iterations=4)
    worker = MMWorker(cfg, "mm", "gmm", np.random.SeedSequence(0))
    coordinator = ShardedMM(cfg, many_sequences=True)
    ranges = shard_ranges(n, 2)
    shards = LocalShards(local_mm_shards(ranges, lengths, n))
    for r in (1, 2):  # the second update starts warm, from the first one's transitions
        msg = ClassPosteriors(sender="gmm", receiver="mm", round=r, probs=probs, log_likelihood=log_em, lengths=lengths)
        prior, report = worker.update(r, msg)
        shards.map("load", per_shard=[((probs[a:b], log_em[a:b]),) for a, b in ranges])
        got = coordinator.update(shards, n, r)
        np.testing.assert_allclose(got["transitions"], report["transitions"], rtol=1e-10)
        np.testing.assert_allclose(got["initial"], report["initial"], rtol=1e-10)
        np.testing.assert_allclose(got["log_likelihood"], report["log_likelihood"], rtol=1e-12)
        message = np.concatenate([s.message() for s in shards.shards])
        np.testing.assert_allclose(message, prior.probs, rtol=1e-9, atol=1e-14)
        log_em = log_em + 0.3 * rng.normal(size=log_em.shape)
        probs = gmm_core.normalise_log(log_em)


def test_shard_layout_errors_name_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="shards should be between 1 and the number of 4096-point blocks 2, got 3"):
        shard_ranges(2 * BLOCK, 3)
    with pytest.raises(ValueError, match="a shard should start at a multiple of 4096, got 10"):
        GMMShard(np.zeros((5, 2)), 10, 2, np.zeros(2, np.uint64))
    with pytest.raises(ValueError, match="sharded MarkovModel runs counts='pairwise' or 'expected'"):
        ShardedMM(MMConfig(counts="sampled"), False)


class _Counting(LocalShards):
    """LocalShards that counts the pickled bytes of every answer (what a driver would receive)."""

    received = 0

    def _count(self, results: list) -> list:
        import pickle

        self.received += sum(len(pickle.dumps(r, protocol=5)) for r in results)
        return results

    def map(self, method: str, *args: object, per_shard: list | None = None) -> list:
        return self._count(super().map(method, *args, per_shard=per_shard))

    def call(self, index: int, method: str, *args: object) -> object:
        return self._count([super().call(index, method, *args)])[0]


def test_what_reaches_the_coordinator_does_not_grow_with_n() -> None:
    received = []
    for n in (2 * BLOCK, 6 * BLOCK):
        x = _latents(n)
        gmm = ShardedGMM(GMMConfig(n_components=K, n_sweeps=3), np.random.SeedSequence(1))
        mm = ShardedMM(MMConfig(em_iterations=2, em_tolerance=0.0), False)  # a fixed number of passes
        g = _Counting(local_shards(x, 2, K, gmm.key))
        m = _Counting(local_mm_shards(shard_ranges(n, 2), None, n))
        gmm.update(g, n, 1)
        before = g.received
        gmm.update(g, n, 2)
        m.map("load", per_shard=[(s.posteriors(),) for s in g.shards])
        mm.update(m, n, 2)
        received.append((g.received - before, m.received))
    assert received[0] == received[1]
    assert received[0][0] < 3 * 2 * 6 * K * D * D * 8  # a few (K, d, d) int64 arrays per shard and call
