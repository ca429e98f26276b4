"""Ray-free moves for runs of one class: splits along the slowest direction, scored with two-Gaussian classes.

On a sequence that stays in a class for a while (frames of a video) a mixture
can split two similar classes by *style* (two clusters that each hold both),
or merge two classes while splitting a third by style.  A chain with one
Gaussian per class prefers such partitions on a VAE's latents: a class written
in two styles is bimodal, and the Gaussians fit its two halves better than the
transitions lose.  Two things repair it:

* a split that follows the class: along the direction consecutive points of a
  cluster (or a pair of clusters) share most (:func:`slow_split`), the class
  stays from point to point while the style changes (:func:`slow_proposals`);
* a score in which style no longer pays: a chain whose classes each emit from
  a mixture of two Gaussians (:func:`mixture_chain_score`), so that both
  partitions fit the latents about equally and the sequence decides.

:func:`best_move` is what :func:`actors.sequence_core.search` calls when no
other move gains.  Nothing here uses a random generator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy.special import logsumexp

from actors import gmm_core, mm_core
from actors.sequence_proposals import Move

log = logging.getLogger(__name__)


def slow_split(
    x: np.ndarray,
    member: np.ndarray,
    lengths: np.ndarray | None = None,
    min_pairs: int = 10,
) -> tuple[np.ndarray, float] | None:
    """Split the member points in two along their *slowest* direction: the one consecutive members share most.

    Within a run of one class the class stays while a point's style changes
    from point to point, so along the direction that separates two classes a
    member and the next member agree (lag-one correlation near 1) while along
    a style direction they do not (near 0).  That direction w maximises
    ``|w' C1 w| / w' C0 w``, with C0 the covariance of the member points and
    C1 the symmetrised covariance of consecutive member pairs (x_t, x_t+1),
    both members, never across a sequence boundary: a generalised
    eigenproblem (slow feature analysis / lag-one canonical correlation).
    A chain that alternates the two classes gives a strongly negative
    correlation instead, hence the absolute value.  The members are split by
    exact 2-means on their projection (:func:`two_means_1d`; no random
    generator, so the search's stream is untouched unless a move is taken).

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    member : numpy.ndarray, shape (N,), bool
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths: no pair crosses a boundary.
    min_pairs : int
        Fewest consecutive member pairs for a split (fewer: ``None``).

    Returns
    -------
    (side, correlation) or None
        ``side`` (M,) bool, one per member point in order; ``correlation`` the
        lag-one correlation of the projection.
    """
    rows = np.flatnonzero(member)
    pair = member[:-1] & member[1:]
    if lengths is not None:
        pair &= ~mm_core.sequence_starts(lengths, member.shape[0])[1:]
    first = np.flatnonzero(pair)
    if len(first) < min_pairs or len(rows) < 2 * min_pairs:
        return None
    centred = x - x[rows].mean(axis=0)
    d = x.shape[1]
    c0 = centred[rows].T @ centred[rows] / len(rows)
    c0 += 1e-6 * max(float(np.trace(c0)) / d, 1e-12) * np.eye(d)
    c1 = centred[first].T @ centred[first + 1] / len(first)
    inv_chol = np.linalg.inv(np.linalg.cholesky(c0))
    values, vectors = np.linalg.eigh(inv_chol @ (0.5 * (c1 + c1.T)) @ inv_chol.T)
    best = int(np.argmax(np.abs(values)))
    projection = centred[rows] @ (inv_chol.T @ vectors[:, best])
    return two_means_1d(projection), float(values[best])


def two_means_1d(p: np.ndarray) -> np.ndarray:
    """The exact 2-means split of values (n,) (n >= 2): the threshold of least within-group scatter.

    Returns
    -------
    numpy.ndarray, shape (n,), bool
        True for the values above the threshold.
    """
    order = np.argsort(p, kind="stable")
    sums = np.cumsum(p[order])[:-1]
    left = np.arange(1, p.shape[0])
    # within scatter = sum p^2 - (S_left^2 / n_left + S_right^2 / n_right): maximise the bracket
    explained = sums**2 / left + (sums[-1] + p[order[-1]] - sums) ** 2 / (p.shape[0] - left)
    cut = int(np.argmax(explained)) + 1
    side = np.zeros(p.shape[0], dtype=bool)
    side[order[cut:]] = True
    return side


def slow_proposals(
    x: np.ndarray,
    labels: np.ndarray,
    transitions: np.ndarray,
    n_best: int,
    lengths: np.ndarray | None = None,
) -> list[Move]:
    """Repartitions and merge-and-splits whose splits follow the slowest direction (:func:`slow_split`).

    Two failures of a mixture on a sequence with runs of one class are
    repaired by them:

    * two similar classes split by style into two clusters that each hold
      both: such a pair passes to each other often (T_ij T_ji high), and
      ``repartition i,j by slow direction`` splits the pair's points along
      the direction consecutive points share (for the ``n_best`` pairs with
      most mutual transitions);
    * one cluster holds two classes while another class is split by style in
      two: ``merge i,j + split s by slow direction`` merges the pair that
      passes to each other most and splits the cluster whose points' slowest
      direction is most shared by consecutive points (for the ``n_best``
      such clusters s).

    Returns
    -------
    list of Move, each with the lag-one correlation (absolute) as its score.
    """
    k = transitions.shape[0]
    mutual = transitions * transitions.T
    i_up, j_up = np.triu_indices(k, 1)
    pairs = [(int(i_up[c]), int(j_up[c])) for c in np.argsort(-mutual[i_up, j_up], kind="stable")]
    moves = []
    for i, j in pairs[:n_best]:
        member = (labels == i) | (labels == j)
        found = slow_split(x, member, lengths)
        if found is None:
            continue
        side, corr = found
        rows = np.flatnonzero(member)
        new = labels.copy()
        agree = np.count_nonzero(~side & (labels[rows] == i)) + np.count_nonzero(side & (labels[rows] == j))
        new[rows] = np.where(side, j, i) if 2 * agree >= len(rows) else np.where(side, i, j)
        moves.append(Move(f"repartition {i},{j} by slow direction", new, abs(corr)))
    splits = []
    for s in range(k):
        found = slow_split(x, labels == s, lengths)
        if found is not None:
            splits.append((abs(found[1]), s, found[0]))
    for corr, s, side in sorted(splits, key=lambda c: -c[0])[:n_best]:
        i, j = next((p for p in pairs if s not in p), pairs[0])
        new = labels.copy()
        new[labels == j] = i
        rows_s = np.flatnonzero(labels == s)
        new[rows_s[side]] = j
        moves.append(Move(f"merge {i},{j} + split {s} by slow direction", new, corr))
    return moves


def mixture_emission_log_likelihood(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    n_iter: int = 5,
    cache: dict[bytes, np.ndarray] | None = None,
) -> np.ndarray:
    """log p(x_n | class k) when each class emits from a mixture of two Gaussians fitted to its points.

    A class that is one digit written in two styles is bimodal; a single
    Gaussian per class then favours splitting it by style.  With two
    components per class both partitions fit the latents about equally and
    the sequence decides between them.  Each class's points are split at the
    median of their first principal component (deterministic), then refined
    by ``n_iter`` classification-EM steps between the two components, each
    a posterior-mean Gaussian under ``prior``.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,), int in [0, K)
    n_classes : int
    prior : gmm_core.NIWPrior
    n_iter : int
    cache : dict, optional
        Columns already computed, keyed by a class's member indices (a search
        scores many candidates that leave most classes as they are).

    Returns
    -------
    numpy.ndarray, shape (N, K)
    """
    out = np.empty((x.shape[0], n_classes))
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        key = rows.tobytes()
        if cache is not None and key in cache:
            out[:, c] = cache[key]
            continue
        xr = x[rows]
        if len(rows) < 8:  # too few points for two components: one Gaussian
            post = gmm_core.class_posterior(xr, np.zeros(len(rows), dtype=np.int64), 1, prior)
            means, prec_chol = gmm_core.point_estimate(post)
            column = gmm_core.gaussian_log_likelihood(x, means, prec_chol)[:, 0]
        else:
            centred = xr - xr.mean(axis=0)
            axis = np.linalg.eigh(centred.T @ centred)[1][:, -1]
            proj = centred @ axis
            side = (proj > np.median(proj)).astype(np.int64)
            for _ in range(n_iter):
                post = gmm_core.class_posterior(xr, side, 2, prior)
                means, prec_chol = gmm_core.point_estimate(post)
                log_w = np.log((post.counts + 1.0) / (len(rows) + 2.0))
                new = np.argmax(gmm_core.gaussian_log_likelihood(xr, means, prec_chol) + log_w, axis=1)
                if np.array_equal(new, side) or np.bincount(new, minlength=2).min() < 2:
                    break
                side = new
            post = gmm_core.class_posterior(xr, side, 2, prior)
            means, prec_chol = gmm_core.point_estimate(post)
            log_w = np.log((post.counts + 1.0) / (len(rows) + 2.0))
            column = logsumexp(gmm_core.gaussian_log_likelihood(x, means, prec_chol) + log_w, axis=1)
        out[:, c] = column
        if cache is not None:
            cache[key] = column
    return out


def mixture_chain_score(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    alpha: float,
    lengths: np.ndarray | None = None,
    cache: dict[bytes, np.ndarray] | None = None,
) -> tuple[float, float]:
    """Log-likelihoods of the latents under two models of the partition ``labels``, both with two-Gaussian classes.

    The chain: transitions and initial distribution counted from ``labels``,
    emissions of :func:`mixture_emission_log_likelihood`.  The independent
    model: the same emissions, every point drawn from the class frequencies.
    Their difference is what the sequence explains about the partition.

    Returns
    -------
    chain, independent : float
    """
    eye = np.eye(n_classes)
    log_em = mixture_emission_log_likelihood(x, labels, n_classes, prior, cache=cache)
    trans = mm_core.transition_matrix(mm_core.expected_counts(eye[labels], lengths), alpha)
    initial = mm_core.initial_distribution(eye[labels], lengths, alpha)
    chain = mm_core.forward_log_likelihood(log_em, trans, initial, lengths=lengths)  # forward_backward's, bit for bit
    freq = (np.bincount(labels, minlength=n_classes) + alpha) / (len(labels) + n_classes * alpha)
    independent = float(logsumexp(log_em + np.log(freq)[None, :], axis=1).sum())
    return float(chain), independent


def best_move(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    transitions: np.ndarray,
    alpha: float,
    lengths: np.ndarray | None,
    n_best: int,
    min_gain: float,
    cache: dict[bytes, np.ndarray] | None = None,
    refine: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    settled: np.ndarray | None = None,
) -> tuple[float, Move] | None:
    """The best of :func:`slow_proposals` by :func:`mixture_chain_score`, or None when none gains.

    A move is kept when the chain with two-Gaussian classes gains ``min_gain``
    nats and so does what the sequence explains (the chain's log-likelihood
    less that of the same classes drawn independently): on points without
    sequence structure no move is then taken.  With ``refine`` (a list of
    labels -> their refined labels, each e.g. the argmax of a chain fitted from
    them; given all proposals at once, so that it can fit them side by side)
    the current labels and every proposal's are refined before they are
    scored, so that a split is judged once its stray points have settled;
    ``settled``, when given, is ``refine([labels])[0]`` already computed.

    Returns
    -------
    (gain, move) or None
    """
    if settled is None:
        settled = labels if refine is None else refine([labels])[0]
    base_chain, base_iid = mixture_chain_score(x, settled, n_classes, prior, alpha, lengths, cache)
    best: tuple[float, Move] | None = None
    moves = slow_proposals(x, labels, transitions, n_best, lengths)
    if refine is not None and moves:
        refined = refine([m.labels for m in moves])
        moves = [Move(m.name, r, m.score) for m, r in zip(moves, refined, strict=True)]
    for move in moves:
        chain, iid = mixture_chain_score(x, move.labels, n_classes, prior, alpha, lengths, cache)
        gain, explained = chain - base_chain, (chain - iid) - (base_chain - base_iid)
        log.debug("%s: %+.1f nats, sequence %+.1f", move.name, gain, explained)
        if gain >= min_gain and explained >= min_gain and (best is None or gain > best[0]):
            best = (gain, move)
    return best
