"""Sequence-guided split/merge moves of the sharded mixture, scored by chain log-likelihoods summed over shards.

The sharded counterpart of :func:`actors.sequence_core.search` (the GMM under a
Markov model): a greedy search over relabellings of the shards' labels, each
judged by the log-likelihood of a hidden Markov chain with Gaussian emissions
fitted to it by EM (:func:`chain_fit`), the best taken when it gains
``move_min_gain`` nats, and the chain's message P(c_t | all points but the
t-th) given to the sweeps that follow.  No point leaves its shard:

* **The chain treats every block as its own sequence.**  Each fixed-size block
  of ``block`` points (cut again where a sequence of the data begins) runs its
  own forward-backward recursion on its shard (:mod:`actors.shard_chain`); the
  shards return per-class soft statistics, pair counts and first-point sums
  rounded per block onto fixed-point grids (exact int64 sums), and their
  blocks' log-likelihoods summed exactly as integers, so the coordinator's
  totals, and every EM step it takes from them, are the same bits for any S.
  The score of a relabelling is therefore the log-likelihood of the chain over
  the blocks treated as separate sequences (tests/test_shard_sequence.py checks
  it against :func:`actors.sequence_core.chain_fit` on them).
* **The proposals are those of** :func:`actors.sequence_proposals.propose_moves`
  (repartitions of two clusters and merge-and-splits, by each point's context:
  the posteriors of its neighbours in its block) **and**
  :func:`actors.sequence_proposals.mixture_proposals` (merge-and-split by the
  latents, :mod:`actors.shard_moves`), ranked the same way.  Their 2-means runs
  on the shards as Lloyd steps on reduced per-(group, side) statistics, started
  from each group's mean one standard deviation either side along its
  principal axis (no random draw), for the K clusters and the K (K - 1) / 2
  pairs at once.  A proposal reaches the shards as a few numbers (its kind, the
  clusters and two centres); each shard relabels its own points.
* As in the unsharded search, every proposal is first screened by the chain
  log-likelihood of its labels (no EM step), the ``moves_scored`` best are fitted
  with ``chain_em_iterations`` EM steps, and the taken move's labels are those
  the fitted chain assigns.

Left out on shards (the unsharded search has them): the stretch-mean and the
slow-direction proposals (``stretch_candidates``, ``slow_candidates``), the longer
fit of the best candidate when none gains (``chain_extend_iterations``), the chain
prior that follows the sampler (``chain_refresh``) and ``init_restarts`` > 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from actors import gmm_core, mm_core, shard_moves
from actors.config import GMMConfig
from actors.shard_chain import VIEWS, from_exact, pair_table
from actors.shard_core import Shards, fixed_sum, from_fixed, grid_exponent
from actors.shard_stats import posterior_from_stats

log = logging.getLogger(__name__)

#: Most Lloyd steps of a context 2-means (as actors.sequence_proposals.two_means).
SPLIT_ITERATIONS = 15
#: Smallest group of points split (as actors.sequence_proposals.propose_moves).
MIN_SIZE = 4

Grids = tuple[int, int, int]


def _reduce(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return tuple(fixed_sum([p[i] for p in parts]) for i in range(len(parts[0])))


def _chain_parameters(pairs: np.ndarray, first: np.ndarray, alpha: float, e0: int) -> tuple[np.ndarray, np.ndarray]:
    """Transitions (K, K) and initial distribution (K,) from reduced pair counts and first-point sums."""
    counts, start = from_fixed(pairs, e0), from_fixed(first, e0)
    trans = mm_core.transition_matrix(counts, alpha)
    return trans, (start + alpha) / (start.sum() + start.shape[0] * alpha)


def chain_fit(
    shards: Shards,
    key: Any,
    prior: gmm_core.NIWPrior,
    alpha: float,
    n_iter: int,
    emission_weight: float,
    grids: Grids,
    keep: bool = True,
) -> tuple[float, np.ndarray]:
    """:func:`actors.sequence_core.chain_fit` of labelling ``key`` on the shards, every block its own sequence.

    Parameters
    ----------
    shards : Shards of :class:`actors.gmm_shards.GMMShard`
    key : "base" or int
        The shards' current labels, or a candidate made by ``make_candidate``.
    prior : gmm_core.NIWPrior
    alpha, n_iter, emission_weight
        Of :func:`actors.sequence_core.chain_fit`.
    grids : (e0, e1, e2)
        Fixed-point grids of counts, sums (about ``prior.mean``) and second moments.
    keep : bool
        Whether the shards keep the fit's posterior and message (False: only the log-likelihood,
        by the forward recursion alone when ``n_iter`` is 0).

    Returns
    -------
    log_likelihood : float
        Summed over every block's sequences (tempered by ``emission_weight``).
    transitions : numpy.ndarray, shape (K, K)
        Those the last E-step ran with.
    """
    e0, e1, e2 = grids
    centre = prior.mean
    stats = _reduce(shards.map("chain_start", key, centre, e0, e1, e2))
    trans, initial = _chain_parameters(stats[0], stats[1], alpha, e0)
    for it in range(n_iter + 1):
        k_ref = np.broadcast_to(centre, (stats[2].shape[0], centre.shape[0]))
        means, prec_chol = gmm_core.point_estimate(posterior_from_stats(prior, stats[2:], k_ref, e1, e2, e0))
        last = it == n_iter
        parts = shards.map(
            "chain_step", key, centre, means, prec_chol, trans, initial, emission_weight, last, keep, e0, e1, e2
        )
        log_likelihood = from_exact(sum(p[0] for p in parts))
        if last:
            return log_likelihood, trans
        stats = _reduce([p[1:] for p in parts])
        trans, initial = _chain_parameters(stats[0], stats[1], alpha, e0)
    raise AssertionError("unreachable")


def _start_centres(counts: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Per group, mean -/+ one standard deviation along its principal axis: (G, 2, D)."""
    safe = np.maximum(counts, 1.0)
    mean = s1 / safe[:, None]
    cov = s2 / safe[:, None, None] - np.einsum("gd,ge->gde", mean, mean)
    vals, vecs = np.linalg.eigh(0.5 * (cov + np.transpose(cov, (0, 2, 1))))
    axis = vecs[:, :, -1] * np.sqrt(np.maximum(vals[:, -1], 0.0))[:, None]
    return np.stack([mean - axis, mean + axis], axis=1)


def context_proposals(shards: Shards, k: int, n: int, n_best: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The ``n_best`` repartitions and ``n_best`` merge-and-splits that explain most context, as move specs.

    :func:`actors.sequence_proposals.propose_moves` on the shards: per view
    (predecessor, successor, both) the context scatter of every cluster and
    every pair of clusters, and their 2-means splits, from reduced statistics
    of the base fit's posteriors.  Returns (name, spec) pairs, repartitions first,
    each kind best first; a spec is what :meth:`GMMShard.make_candidate` takes.
    """
    e0, e1 = grid_exponent(n), grid_exponent(2.0 * n)
    table = pair_table(k)
    reparts: list[tuple[float, str, tuple[Any, ...]]] = []
    merges: list[tuple[float, str, tuple[Any, ...]]] = []
    for view in VIEWS:
        cnt, s1, s2 = _reduce(shards.map("context_moments", view, e0, e1, e1))
        counts, sums, second = from_fixed(cnt, e0), from_fixed(s1, e1), from_fixed(s2, e1)
        own = np.trace(second, axis1=1, axis2=2) - (sums * sums).sum(axis=1) / np.maximum(counts, 1.0)
        centres = _start_centres(counts, sums, second)
        split = None
        for step in range(SPLIT_ITERATIONS + 1):
            split = _reduce(shards.map("context_split", view, centres, e0, e1))
            if step == SPLIT_ITERATIONS:
                break
            n2 = from_fixed(split[0], e0)
            new = np.where(n2[:, :, None] > 0, from_fixed(split[1], e1) / np.maximum(n2, 1.0)[:, :, None], centres)
            if np.array_equal(new, centres):
                break
            centres = new
        assert split is not None
        n2, m2, sq, high = (from_fixed(split[0], e0), from_fixed(split[1], e1), from_fixed(split[2], e1),
                            from_fixed(split[3], e0))  # fmt: skip
        scatter = (sq - (m2 * m2).sum(axis=2) / np.maximum(n2, 1.0)).sum(axis=1)
        splits = {j: own[j] - scatter[j] for j in range(k) if counts[j] >= MIN_SIZE}
        for i in range(k):
            for j in range(i + 1, k):
                g = int(table[i, j])
                if counts[g] < MIN_SIZE:
                    continue
                agree = (n2[g, 0] - high[g, 0]) + high[g, 1]
                flip = not 2 * agree >= counts[g]
                reparts.append((own[i] + own[j] - scatter[g], f"repartition {i},{j} by {view}",
                                ("repartition", view, i, j, centres[g], flip)))  # fmt: skip
                cost = own[g] - own[i] - own[j]
                for s, gain in splits.items():
                    if s not in (i, j) and counts[j] > 0:
                        merges.append((gain - cost, f"merge {i},{j} + split {s} by {view}",
                                       ("merge", view, i, j, s, centres[s])))  # fmt: skip
    best = sorted(reparts, key=lambda c: -c[0])[:n_best] + sorted(merges, key=lambda c: -c[0])[:n_best]
    return [(name, spec) for _, name, spec in best]


def latent_proposals(
    shards: Shards,
    prior: gmm_core.NIWPrior,
    k: int,
    concentration: float,
    exponents: Callable[[np.ndarray], tuple[int, int]],
    n_best: int,
) -> list[tuple[str, tuple[Any, ...]]]:
    """The ``n_best`` merge-and-split moves by the latents (:func:`actors.shard_moves.candidates`) as move specs."""
    found, centres = shard_moves.candidates(shards, prior, k, concentration, exponents)
    return [(f"merge {i},{j} + split {s} by latents", ("latent", i, j, s, centres[s])) for _, i, j, s in found[:n_best]]


def search(
    shards: Shards,
    prior: gmm_core.NIWPrior,
    config: GMMConfig,
    n: int,
    exponents: Callable[[np.ndarray], tuple[int, int]],
) -> list[str]:
    """Greedy sequence-guided moves on the shards' labels; the moves taken, with their gains.

    Leaves on every shard the chain fitted to the final labels (``fits["base"]``),
    whose message :meth:`GMMShard.use_chain_prior` gives to the sweeps.

    Parameters
    ----------
    shards : Shards of :class:`actors.gmm_shards.GMMShard`, with labels
    prior : gmm_core.NIWPrior
    config : GMMConfig
        ``sequence_moves``, ``move_candidates``, ``move_min_gain``, ``chain_alpha``,
        ``chain_em_iterations``, ``chain_emission_weight``, ``joint_mixture_candidates``,
        ``moves_scored`` and ``weight_concentration`` are used.
    n : int
        Total number of points N.
    exponents : callable
        ``exponents(reference (m, d)) -> (e1, e2)``, as :func:`actors.shard_moves.search` takes.
    """
    cfg, k = config, config.n_components
    e1, e2 = exponents(prior.mean[None])
    grids = (grid_exponent(n), e1, e2)

    def fit(key: Any, n_iter: int, keep: bool = True) -> float:
        return chain_fit(shards, key, prior, cfg.chain_alpha, n_iter, cfg.chain_emission_weight, grids, keep)[0]

    base = fit("base", cfg.chain_em_iterations)
    taken: list[str] = []
    for _ in range(cfg.sequence_moves):
        proposals = context_proposals(shards, k, n, cfg.move_candidates)
        if cfg.joint_mixture_candidates > 0 and k >= 3:
            proposals += latent_proposals(
                shards, prior, k, cfg.weight_concentration, exponents, cfg.joint_mixture_candidates
            )
        shards.map("make_candidates", [spec for _, spec in proposals])
        keep = list(range(len(proposals)))
        if 0 < cfg.moves_scored < len(proposals) and cfg.chain_em_iterations > 0:
            screened = [fit(cid, 0, keep=False) for cid in keep]
            keep = [int(c) for c in np.argsort(-np.asarray(screened), kind="stable")[: cfg.moves_scored]]
        best: tuple[float, int] | None = None
        for cid in keep:
            gain = fit(cid, cfg.chain_em_iterations) - base
            if gain >= cfg.move_min_gain and (best is None or gain > best[0]):
                best = (gain, cid)
        if best is None:
            shards.map("drop_candidates")
            break
        taken.append(f"{proposals[best[1]][0]} (+{best[0]:.1f} nats)")
        log.debug("sharded sequence move: %s", taken[-1])
        shards.map("adopt", best[1])  # the labels the candidate's fitted chain assigns
        base = fit("base", cfg.chain_em_iterations)
    return taken


__all__ = ["chain_fit", "context_proposals", "latent_proposals", "search"]
