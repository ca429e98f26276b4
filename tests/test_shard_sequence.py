"""Sequence-guided moves on the sharded mixture: the same bytes for any S, chain scores equal to the unsharded
chain over the blocks as separate sequences, and nothing per point reaching the coordinator."""

from __future__ import annotations

import pickle

import numpy as np

from actors import gmm_core, sequence_core, shard_sequence
from actors.config import GMMConfig
from actors.gmm_shards import ShardedGMM, local_shards
from actors.mm_core import sequence_starts
from actors.scoring import accuracy
from actors.shard_chain import block_lengths
from actors.shard_core import LocalShards, grid_exponent

K, D, BLOCK = 6, 3, 256


def _cycle(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Latents of a cycle 0, 1, ..., K - 1, 0, ... whose classes 0 and 1 nearly coincide (the mixture alone errs)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    centres = np.random.default_rng(0).normal(size=(K, D)) * 1.2
    centres[1] = centres[0] + 0.3
    return centres[labels] + rng.normal(size=(n, D)) * 0.6, labels


def _run(x: np.ndarray, n_shards: int, sequence: bool, lengths: np.ndarray | None = None):
    gmm = ShardedGMM(GMMConfig(n_components=K, n_sweeps=10), np.random.SeedSequence(3), moves=True, sequence=sequence)
    shards = LocalShards(local_shards(x, n_shards, K, gmm.key, BLOCK, lengths))
    report = gmm.update(shards, x.shape[0], 0)
    assigned = np.concatenate([s.assigned for s in shards.shards])
    labels = np.concatenate([s.labels for s in shards.shards])
    return assigned, labels, report["class_means"], gmm.last_moves


def test_sequence_moves_are_byte_identical_for_1_2_4_shards_and_find_the_cycle() -> None:
    x, truth = _cycle(1200)
    lengths = np.array([300, 500, 400])  # a sequence starts inside a block: its chain restarts there
    assigned, labels, means, moves = _run(x, 1, True, lengths)
    assert moves and accuracy(assigned, truth) > 0.99
    for n_shards in (2, 4):
        a, lab, m, again = _run(x, n_shards, True, lengths)
        assert a.tobytes() == assigned.tobytes() and lab.tobytes() == labels.tobytes()
        assert m.tobytes() == means.tobytes() and again == moves
    plain, _, _, _ = _run(x, 1, False, lengths)  # the mixture's own merge-and-split moves only
    assert accuracy(plain, truth) < 0.9


def test_shuffled_points_skip_the_sequence_on_shards_and_equal_the_mixture_alone() -> None:
    """The sharded sequence test: the cycle's labels show a chain (positive evidence, moves taken), the same points
    shuffled do not, and their update is then the mixture's own, byte for byte, on 1 and 2 shards."""
    x, _ = _cycle(1200)
    shuffled = x[np.random.default_rng(5).permutation(1200)]
    alone = _run(shuffled, 1, False)
    for n_shards in (1, 2):
        gmm = ShardedGMM(GMMConfig(n_components=K, n_sweeps=10), np.random.SeedSequence(3), moves=True, sequence=True)
        shards = LocalShards(local_shards(shuffled, n_shards, K, gmm.key, BLOCK))
        report = gmm.update(shards, 1200, 0)
        assert gmm.last_evidence is not None and gmm.last_evidence < 0.0
        labels = np.concatenate([s.labels for s in shards.shards])
        assert labels.tobytes() == alone[1].tobytes() and report["class_means"].tobytes() == alone[2].tobytes()
    ordered = ShardedGMM(GMMConfig(n_components=K, n_sweeps=10), np.random.SeedSequence(3), moves=True, sequence=True)
    ordered.update(LocalShards(local_shards(x, 2, K, ordered.key, BLOCK)), 1200, 0)
    assert ordered.last_evidence is not None and ordered.last_evidence > 100.0 and ordered.last_moves


def _reference_lengths(n: int, lengths: np.ndarray) -> np.ndarray:
    """Every block a sequence of its own, cut again where a sequence of ``lengths`` begins."""
    starts = sequence_starts(lengths, n)
    return np.concatenate([block_lengths(starts[a : a + BLOCK]) for a in range(0, n, BLOCK)])


def test_a_chain_score_equals_the_unsharded_chain_over_the_blocks_as_separate_sequences() -> None:
    """The sharded fit against sequence_core.chain_fit on all points at once, with the blocks as its lengths."""
    x, truth = _cycle(1000, seed=1)
    lengths = np.array([130, 870])
    labels = np.where(truth == 1, 0, truth)  # classes 0 and 1 merged: a poor labelling, scored anyway
    cfg = GMMConfig(n_components=K)
    prior = gmm_core.mixture_prior(x, cfg.prior_kappa, cfg.prior_scale, cfg.covariance_strength, cfg.prior_covariance)
    cuts = _reference_lengths(x.shape[0], lengths)
    far = float(np.abs(x).max()) + float(np.abs(prior.mean).max())
    grids = (grid_exponent(1000), grid_exponent(1000 * far), grid_exponent(1000 * far * far))
    for n_iter in (0, 3):
        shards = LocalShards(local_shards(x, 3, K, np.zeros(2, np.uint64), BLOCK, lengths))
        for s in shards.shards:
            s.labels = labels[s.start : s.start + s.x.shape[0]].copy()
        score, trans = shard_sequence.chain_fit(shards, "base", prior, 0.1, n_iter, 0.7, grids)
        ref = sequence_core.chain_fit(x, np.eye(K)[labels], prior, 0.1, n_iter, cuts, 0.7)
        np.testing.assert_allclose(score, ref.log_likelihood, rtol=1e-10)
        np.testing.assert_allclose(trans, ref.transitions, rtol=1e-9) if n_iter == 0 else None
        post = np.concatenate([s.fits["base"][0] for s in shards.shards])
        np.testing.assert_allclose(post, ref.posterior, atol=1e-8)
    # the one long sequence scores otherwise: the blocks are a real cut, not an unused option
    whole = sequence_core.chain_fit(x, np.eye(K)[labels], prior, 0.1, 3, lengths, 0.7).log_likelihood
    assert abs(whole - score) > 1.0


class _Counting(LocalShards):
    """LocalShards that records the pickled size of every result, per method."""

    def __init__(self, shards) -> None:
        super().__init__(shards)
        self.largest: dict[str, int] = {}

    def map(self, method: str, *args: object, per_shard: list | None = None) -> list:
        results = super().map(method, *args, per_shard=per_shard)
        size = max(len(pickle.dumps(r, protocol=5)) for r in results)
        self.largest[method] = max(self.largest.get(method, 0), size)
        return results


def test_what_the_sequence_moves_return_to_the_coordinator_does_not_grow_with_n() -> None:
    largest = []
    for n in (4 * BLOCK, 16 * BLOCK):
        x, _ = _cycle(n)
        gmm = ShardedGMM(GMMConfig(n_components=K, n_sweeps=2), np.random.SeedSequence(3), moves=True, sequence=True)
        g = _Counting(local_shards(x, 2, K, gmm.key, BLOCK))
        gmm.update(g, n, 0)  # its k-means++ start takes a sample of at most INIT_SAMPLE rows, once
        g.largest = {}
        gmm.update(g, n, 1)
        assert {"chain_start", "chain_step", "context_split", "make_candidates"} <= set(g.largest)
        largest.append(g.largest)
    for method, size in largest[1].items():
        assert size <= largest[0][method] + 8, method  # an exact log-likelihood integer may take a byte more
    assert max(largest[1].values()) < 2 * (K + K * (K - 1) // 2) * (2 * K) ** 2 * 8  # the context's (G, D, D)


def test_group_split_stats_equal_a_brute_force_split_of_every_group() -> None:
    """Each class and each pair of classes, its members split by the nearer of its two centres, counted one by one."""
    from actors.shard_chain import group_split_stats, pair_table
    from actors.shard_core import from_fixed

    rng = np.random.default_rng(5)
    k, n, dim = 5, 300, 4
    labels = rng.integers(0, k, n)
    labels[:3] = 0  # class 4 may be empty below: drop it
    labels[labels == 4] = 3
    f = rng.normal(size=(n, dim))
    table = pair_table(k)
    m = k + k * (k - 1) // 2
    centres = rng.normal(size=(m, 2, dim))
    e0, e1 = 10, 30
    stats = group_split_stats(f, labels, k, centres, e0, e1)
    got = [from_fixed(a, e) for a, e in zip(stats, (e0, e1, e1, e0), strict=True)]
    counts, sums, squares, high = np.zeros((m, 2)), np.zeros((m, 2, dim)), np.zeros((m, 2)), np.zeros((m, 2))
    for g in range(m):
        if g < k:
            members, upper = labels == g, -1
        else:
            a, b = (int(v[0]) for v in np.nonzero(table == g))
            members, upper = (labels == a) | (labels == b), max(a, b)
        for row in np.flatnonzero(members):
            side = int(np.sum((f[row] - centres[g, 1]) ** 2) < np.sum((f[row] - centres[g, 0]) ** 2))
            counts[g, side] += 1
            sums[g, side] += f[row]
            squares[g, side] += f[row] @ f[row]
            high[g, side] += labels[row] == upper
    assert counts.sum() == n * k  # every point in its class and in the K - 1 pairs it belongs to
    np.testing.assert_array_equal(got[0], counts)
    np.testing.assert_array_equal(got[3][k:], high[k:])  # defined for the pairs (the coordinator reads no other)
    np.testing.assert_allclose(got[1], sums, atol=1e-8)
    np.testing.assert_allclose(got[2], squares, atol=1e-8)
