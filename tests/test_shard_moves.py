"""Merge-and-split moves on the sharded mixture: exact scores from reduced statistics, the same bytes for any S."""

from __future__ import annotations

import numpy as np

from actors import gmm_core, mixture_moves
from actors.config import GMMConfig
from actors.gmm_shards import ShardedGMM, local_shards
from actors.scoring import accuracy
from actors.shard_core import LocalShards

K, D, N, BLOCK = 10, 6, 3000, 256


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = np.arange(N) % K
    return rng.normal(0.0, 3.0, (K, D))[labels] + rng.normal(size=(N, D)), labels


def _run(x: np.ndarray, n_shards: int, moves: bool) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    gmm = ShardedGMM(GMMConfig(n_components=K, n_sweeps=6), np.random.SeedSequence(2), moves=moves)
    shards = LocalShards(local_shards(x, n_shards, K, gmm.key, block=BLOCK))
    taken = []
    for r in range(2):
        report = gmm.update(shards, N, r)
        taken.append(gmm.last_moves)
    labels = np.concatenate([s.result()["labels"] for s in shards.shards])
    return labels, report["class_means"], taken


def test_sharded_moves_are_byte_identical_for_1_2_4_shards_and_repair_the_start() -> None:
    x, truth = _data()
    labels1, means1, taken = _run(x, 1, True)
    assert taken[0], "the k-means++ start of this seed merges two classes and splits one: a move should be taken"
    for n_shards in (2, 4):
        labels, means, again = _run(x, n_shards, True)
        assert labels.tobytes() == labels1.tobytes() and means.tobytes() == means1.tobytes() and again == taken
    plain, _, _ = _run(x, 1, False)
    assert accuracy(labels1, truth) > accuracy(plain, truth) + 0.05


def test_a_move_gain_equals_the_unsharded_marginal_likelihood_difference() -> None:
    """The gain the sharded search reports is log p(X, z) after minus before, computed on all points at once."""
    x, _ = _data()
    cfg = GMMConfig(n_components=K, n_sweeps=6)
    gmm = ShardedGMM(cfg, np.random.SeedSequence(2), moves=True)
    shards = LocalShards(local_shards(x, 2, K, gmm.key, block=BLOCK))
    seen: list[np.ndarray] = []
    original = shards.map

    def spy(method, *args, per_shard=None):  # the labels on both sides of the first move
        if method == "apply_move" and not seen:
            seen.append(np.concatenate([s.labels.copy() for s in shards.shards]))
            out = original(method, *args, per_shard=per_shard)
            seen.append(np.concatenate([s.labels.copy() for s in shards.shards]))
            return out
        return original(method, *args, per_shard=per_shard)

    shards.map = spy  # type: ignore[method-assign]
    gmm.update(shards, N, 0)
    assert len(seen) == 2 and gmm.last_moves
    reported = float(gmm.last_moves[0].split("(+")[1].split()[0])
    prior = gmm_core.mixture_prior(x, cfg.prior_kappa, cfg.prior_scale, cfg.covariance_strength, cfg.prior_covariance)
    before, after = (mixture_moves.log_marginal(x, lab, K, prior, cfg.weight_concentration) for lab in seen)
    assert reported >= cfg.mixture_min_gain
    assert abs((after - before) - reported) < 0.1  # the report rounds to 0.1 nats
    assert (seen[0] != seen[1]).sum() > 0.05 * N  # a real move: hundreds of points change class
