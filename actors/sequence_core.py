"""Ray-free structural moves of a mixture whose points form a sequence.

A Gibbs sampler changes one label at a time, so it cannot leave a clustering in
which one class is split over two clusters while two other classes share one
cluster: every single-point change makes the fit worse.  When a Markov model
sits above the mixture the points are a sequence, and the sequence tells these
cases apart without labels:

* two clusters that are one class have the same predecessors and successors;
* a cluster that holds two classes has points whose predecessors (or
  successors) fall into two groups.

The moves proposed here re-partition clusters by each point's *context*, the
class posteriors of its predecessor and successor (viewed as the predecessor
alone, the successor alone, or both):

* ``repartition i,j``: the points of clusters i and j are split in two again by
  2-means on their context (with j empty this splits cluster i);
* ``merge i,j + split k``: clusters i and j become one, and cluster k is split
  in two by its context, one half taking the freed number j.

Two more kinds compete with them: the mixture's merge-and-split moves
(:func:`mixture_proposals`) and ``repartition i,j by stretch means``
(:func:`stretch_proposals`): a pair of clusters that pass to each other often is
split again by its latents averaged over each stretch of consecutive points of
the pair (within a run of one class the class stays and the style changes).

Candidates are ranked by how much context scatter they explain; all of them are
screened by one forward-backward pass of their own labels, and the best few
are scored by the log-likelihood of the whole sequence under a hidden Markov
model with Gaussian emissions (raised to ``emission_weight``), fitted by a few EM
iterations from the candidate's labels (the same fit from the current labels is
the baseline).  A
move is taken when it gains at least ``min_gain`` nats, which is an
unsupervised criterion: no label is ever looked at.  Every cluster a move does
not touch keeps its number.

With many sequences (``lengths``, hmmlearn's convention) a point's context and
the chain stop at its sequence's ends: the first point of a sequence has no
predecessor, the last no successor, and the chain starts every sequence from
its initial distribution.

Every function takes its random generator explicitly; nothing uses global RNG.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from actors import gmm_core, mixture_moves, mm_core

log = logging.getLogger(__name__)


def neighbour_context(probs: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class posteriors of each point's predecessor and successor.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, K)
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths (one sequence when omitted).

    Returns
    -------
    pred, succ : numpy.ndarray, shape (N, K)
        Row t holds ``probs[t - 1]`` and ``probs[t + 1]``; a sequence's first
        point's predecessor and its last point's successor are uniform.
    """
    k = probs.shape[1]
    uniform = np.full((1, k), 1.0 / k)
    pred, succ = np.vstack([uniform, probs[:-1]]), np.vstack([probs[1:], uniform])
    if lengths is not None:
        start = mm_core.sequence_starts(lengths, probs.shape[0])
        pred[start] = uniform
        succ[np.roll(start, -1)] = uniform  # the point before each start ends a sequence
    return pred, succ


def within_scatter(f: np.ndarray, groups: np.ndarray, n_groups: int) -> float:
    """Sum of squared distances of the rows of ``f`` (n, D) to their group's mean."""
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    member = np.zeros((n_groups, f.shape[0]))
    member[groups, np.arange(f.shape[0])] = 1.0
    sums = member @ f
    return float((f * f).sum() - ((sums * sums).sum(axis=1) / np.maximum(counts, 1.0)).sum())


def two_means(f: np.ndarray, rng: np.random.Generator, n_iter: int = 15) -> tuple[np.ndarray, float]:
    """Split the rows of ``f`` (n, D) in two by Lloyd's algorithm from a far-apart pair.

    Returns
    -------
    side : numpy.ndarray, shape (n,), bool
        Which of the two groups each row joins.
    scatter : float
        Within-group scatter of the split.
    """
    side = gmm_core.split_in_two(f, rng, n_iter)
    return side, within_scatter(f, side.astype(np.int64), 2)


@dataclasses.dataclass(frozen=True)
class Move:
    """One proposed relabelling.

    Attributes
    ----------
    name : str
        What the move does, e.g. ``"merge 3,7 + split 2 by pred"``.
    labels : numpy.ndarray, shape (N,)
        The labels after the move.
    score : float
        Context scatter the move explains (used only to rank proposals).
    """

    name: str
    labels: np.ndarray
    score: float


def propose_moves(
    labels: np.ndarray,
    probs: np.ndarray,
    rng: np.random.Generator,
    n_best: int = 3,
    min_size: int = 4,
    lengths: np.ndarray | None = None,
) -> list[Move]:
    """The ``n_best`` repartitions and ``n_best`` merge-and-splits that explain most context.

    Parameters
    ----------
    labels : numpy.ndarray, shape (N,), int in [0, K)
    probs : numpy.ndarray, shape (N, K)
        Class posteriors of every point (their neighbours' rows are the context).
    rng : numpy.random.Generator
    n_best : int
        Candidates of each kind returned.
    min_size : int
        Smallest group of points that is split.
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths: no context across a boundary.

    Returns
    -------
    list of Move, repartitions first, each kind best first.
    """
    k = probs.shape[1]
    pred, succ = neighbour_context(probs, lengths)
    members = [np.flatnonzero(labels == j) for j in range(k)]
    reparts: list[tuple[float, str, int, int, np.ndarray, np.ndarray]] = []
    merges: list[tuple[float, str, int, int, int, np.ndarray]] = []
    for view, f in (("pred", pred), ("succ", succ), ("both", np.hstack([pred, succ]))):
        own = [within_scatter(f[m], np.zeros(len(m), dtype=np.int64), 1) for m in members]
        splits: dict[int, tuple[np.ndarray, float]] = {}
        for j in range(k):
            if len(members[j]) >= min_size:
                side, scatter = two_means(f[members[j]], rng)
                splits[j] = (side, own[j] - scatter)
        for i in range(k):
            for j in range(i + 1, k):
                union = np.concatenate([members[i], members[j]])
                if len(union) < min_size:
                    continue
                side, scatter = two_means(f[union], rng)
                reparts.append((own[i] + own[j] - scatter, view, i, j, union, side))
                cost = within_scatter(f[union], np.zeros(len(union), dtype=np.int64), 1) - own[i] - own[j]
                for s, (s_side, gain) in splits.items():
                    if s not in (i, j) and len(members[j]):
                        merges.append((gain - cost, view, i, j, s, s_side))
    moves = []
    for score, view, i, j, union, side in sorted(reparts, key=lambda c: -c[0])[:n_best]:
        new = labels.copy()
        # Keep the numbers: the half agreeing most with cluster i stays i.
        agree = np.count_nonzero(~side & (labels[union] == i)) + np.count_nonzero(side & (labels[union] == j))
        new[union] = np.where(side, j, i) if 2 * agree >= len(union) else np.where(side, i, j)
        moves.append(Move(f"repartition {i},{j} by {view}", new, float(score)))
    for score, view, i, j, s, side in sorted(merges, key=lambda c: -c[0])[:n_best]:
        new = labels.copy()
        new[members[j]] = i
        new[members[s][side]] = j
        moves.append(Move(f"merge {i},{j} + split {s} by {view}", new, float(score)))
    return moves


@dataclasses.dataclass(frozen=True)
class ChainFit:
    """A hidden Markov model with Gaussian emissions fitted by EM from given memberships.

    Attributes
    ----------
    log_likelihood : float
        log p(x_1..x_N) of the sequence under the fitted model.
    posterior : numpy.ndarray, shape (N, K)
        P(c_t | all points).
    prior : numpy.ndarray, shape (N, K)
        P(c_t | all points but the t-th): the chain's message to the mixture.
    transitions : numpy.ndarray, shape (K, K)
    """

    log_likelihood: float
    posterior: np.ndarray
    prior: np.ndarray
    transitions: np.ndarray


def emission_log_likelihood(x: np.ndarray, weights: np.ndarray, prior: gmm_core.NIWPrior) -> np.ndarray:
    """log N(x_n | class k) under the posterior-mean Gaussians fitted with soft ``weights`` (N, K)."""
    means, prec_chol = gmm_core.point_estimate(gmm_core.weighted_class_posterior(x, weights, prior))
    return gmm_core.gaussian_log_likelihood(x, means, prec_chol)


def chain_fit(
    x: np.ndarray,
    weights: np.ndarray,
    prior: gmm_core.NIWPrior,
    alpha: float,
    n_iter: int,
    lengths: np.ndarray | None = None,
    emission_weight: float = 1.0,
) -> ChainFit:
    """Fit emissions and transitions by ``n_iter`` EM iterations from ``weights``.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    weights : numpy.ndarray, shape (N, K)
        Starting memberships (one-hot labels, or posteriors).
    prior : gmm_core.NIWPrior
    alpha : float
        Dirichlet smoothing of the transition rows.
    n_iter : int
        EM iterations (0 scores the starting memberships as they are).
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths: each sequence is its own chain, started from an
        initial distribution fitted alongside (uniform with one sequence).
    emission_weight : float
        Power of the Gaussian emissions in the chain (1: the plain HMM).  Below 1
        the sequence weighs more against the latents: the chain then prefers
        partitions its transitions explain over ones the Gaussians fit a little
        better.  The log-likelihood returned is that of the tempered chain.
    """
    w = weights
    trans = mm_core.transition_matrix(mm_core.expected_counts(w, lengths), alpha)
    initial = mm_core.initial_distribution(w, lengths, alpha)
    for it in range(n_iter + 1):
        log_em = emission_log_likelihood(x, w, prior)
        if emission_weight != 1.0:
            log_em = emission_weight * log_em
        fb = mm_core.forward_backward(log_em, trans, initial, lengths=lengths)
        if it == n_iter:
            break
        w = fb.posterior
        trans = mm_core.transition_matrix(fb.pair_counts, alpha)
        initial = mm_core.initial_distribution(w, lengths, alpha)
    return ChainFit(fb.log_likelihood, fb.posterior, fb.prior, trans)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of :func:`search`.

    Attributes
    ----------
    labels : numpy.ndarray, shape (N,)
    fit : ChainFit
        The chain fitted from the final labels.
    moves : list of str
        The moves taken, in order, with their gain in nats.
    """

    labels: np.ndarray
    fit: ChainFit
    moves: list[str]


def search(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    rng: np.random.Generator,
    *,
    alpha: float = 0.1,
    max_moves: int = 8,
    n_best: int = 3,
    min_gain: float = 10.0,
    em_iterations: int = 3,
    lengths: np.ndarray | None = None,
    mixture_candidates: int = 0,
    n_scored: int = 0,
    screen_iterations: int = 0,
    emission_weight: float = 1.0,
    stretch_candidates: int = 0,
) -> SearchResult:
    """Greedy search over :func:`propose_moves`, scored by :func:`chain_fit`.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,)
        Current labels.
    n_classes : int
    prior : gmm_core.NIWPrior
    rng : numpy.random.Generator
    alpha, em_iterations
        Of :func:`chain_fit`.
    max_moves : int
        Most moves taken.
    n_best : int
        Candidates of each kind scored per move.
    min_gain : float
        Least gain in sequence log-likelihood (nats) for a move to be taken.
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths (one sequence when omitted).
    mixture_candidates : int
        Merge-and-split moves of the mixture (merge two clusters, split a third
        by 2-means on the latents; :func:`actors.mixture_moves.candidates`, ranked by
        their separable marginal-likelihood gain) scored alongside, by the same
        sequence log-likelihood.  On points without sequence structure the
        fitted chain's rows are the mixture weights, so these moves are then
        judged as the mixture alone would judge them.
    n_scored : int
        When positive and smaller than the number of proposals, every proposal is
        first screened by a cheaper :func:`chain_fit` of ``screen_iterations`` EM
        iterations and only the ``n_scored`` best are fitted with
        ``em_iterations`` and compared (0: every proposal is fitted in full).
        Ranking proposals by the context scatter they explain is a poor guide
        (the right repartition of two clusters that share two classes can rank
        twelfth), so many are proposed and the likelihood itself picks.
    screen_iterations : int
        EM iterations of the screening fit (0: the candidate's own labels, one
        forward-backward pass).
    emission_weight : float
        Of :func:`chain_fit`: the power of the emissions in the chain that scores moves.
    stretch_candidates : int
        Repartitions of the pairs of clusters that pass to each other most
        (:func:`stretch_proposals`) scored alongside.

    Returns
    -------
    SearchResult
    """
    eye = np.eye(n_classes)
    base = chain_fit(x, eye[labels], prior, alpha, em_iterations, lengths, emission_weight)
    taken: list[str] = []
    for _ in range(max_moves):
        best: tuple[float, Move, ChainFit] | None = None
        proposals = propose_moves(labels, base.posterior, rng, n_best, lengths=lengths)
        if mixture_candidates > 0 and n_classes >= 3:
            proposals += mixture_proposals(x, labels, n_classes, prior, rng, mixture_candidates, lengths)
        if stretch_candidates > 0:
            proposals += stretch_proposals(x, labels, base.transitions, rng, stretch_candidates, lengths)
        if 0 < n_scored < len(proposals) and screen_iterations < em_iterations:
            screened = [
                chain_fit(x, eye[m.labels], prior, alpha, screen_iterations, lengths, emission_weight).log_likelihood
                for m in proposals
            ]
            keep = np.argsort(-np.asarray(screened), kind="stable")[:n_scored]
            proposals = [proposals[i] for i in keep]
        for move in proposals:
            fit = chain_fit(x, eye[move.labels], prior, alpha, em_iterations, lengths, emission_weight)
            gain = fit.log_likelihood - base.log_likelihood
            if gain >= min_gain and (best is None or gain > best[0]):
                best = (gain, move, fit)
        if best is None:
            break
        taken.append(f"{best[1].name} (+{best[0]:.1f} nats)")
        log.debug("took %s", taken[-1])
        # Adopt the labels of the chain fitted from the move, then rescore them.
        labels = np.argmax(best[2].posterior, axis=1)
        base = chain_fit(x, eye[labels], prior, alpha, em_iterations, lengths, emission_weight)
    return SearchResult(labels, base, taken)


def stretch_means(x: np.ndarray, member: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Each member point's latent averaged over its stretch: the run of consecutive members it lies in.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    member : numpy.ndarray, shape (N,), bool
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths: no stretch crosses a boundary.

    Returns
    -------
    numpy.ndarray, shape (M, d), one row per member point, in order.
    """
    start = member & ~np.concatenate(([False], member[:-1]))
    if lengths is not None:
        start |= member & mm_core.sequence_starts(lengths, member.shape[0])
    run = np.cumsum(start)[member] - 1
    sums = np.zeros((int(run.max()) + 1 if run.size else 0, x.shape[1]))
    np.add.at(sums, run, x[member])
    return (sums / np.bincount(run)[:, None])[run]


def stretch_proposals(
    x: np.ndarray,
    labels: np.ndarray,
    transitions: np.ndarray,
    rng: np.random.Generator,
    n_best: int,
    lengths: np.ndarray | None = None,
    min_size: int = 4,
) -> list[Move]:
    """Repartitions of the ``n_best`` pairs of clusters with most mutual transitions, by stretch means.

    Two similar classes that run for several points each (frames of a video) can be
    split by the mixture along the wrong axis: two clusters that each hold both
    classes, the points of one run spread over the two.  Such a pair passes to
    each other often (transitions i -> j and j -> i).  Within a run the class
    stays while everything else about a point (a digit's style) changes, so
    the points of the pair are split in two by 2-means on their latents
    averaged over each stretch of consecutive points of the pair (one class's
    run, mostly), not on the latents themselves.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,)
    transitions : numpy.ndarray, shape (K, K)
        The chain's current transitions; pairs are ranked by T_ij T_ji.
    rng : numpy.random.Generator
    n_best : int
    lengths : numpy.ndarray, shape (S,), optional
    min_size : int
        Smallest pair of clusters split.

    Returns
    -------
    list of Move
    """
    k = transitions.shape[0]
    mutual = transitions * transitions.T
    i_up, j_up = np.triu_indices(k, 1)
    moves = []
    for c in np.argsort(-mutual[i_up, j_up], kind="stable")[:n_best]:
        i, j = int(i_up[c]), int(j_up[c])
        member = (labels == i) | (labels == j)
        if member.sum() < min_size:
            continue
        side = gmm_core.split_in_two(stretch_means(x, member, lengths), rng, n_iter=20)
        rows = np.flatnonzero(member)
        new = labels.copy()
        agree = np.count_nonzero(~side & (labels[rows] == i)) + np.count_nonzero(side & (labels[rows] == j))
        new[rows] = np.where(side, j, i) if 2 * agree >= len(rows) else np.where(side, i, j)
        moves.append(Move(f"repartition {i},{j} by stretch means", new, float(mutual[i, j])))
    return moves


def mixture_proposals(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    rng: np.random.Generator,
    n_best: int,
    lengths: np.ndarray | None = None,
) -> list[Move]:
    """The ``n_best`` merge-and-split moves of :func:`actors.mixture_moves.candidates` as :class:`Move` s.

    ``lengths`` is accepted for symmetry with the other proposals; the
    splits are by 2-means on the latents and do not depend on the order.
    (Splitting on run means, each point's latent averaged over its run of one
    cluster, was measured: +0.003 and +0.012 on runs of one digit, but -0.10
    on independent draws over PCA latents, so it is not used.)
    """
    moves = []
    for score, i, j, s, side in mixture_moves.candidates(x, labels, n_classes, prior, rng, n_best, min_size=4):
        new = labels.copy()
        new[labels == j] = i
        rows_s = np.flatnonzero(labels == s)
        new[rows_s[side]] = j
        moves.append(Move(f"merge {i},{j} + split {s} by latents", new, float(score)))
    return moves


class ChainPrior:
    """The Markov chain's message to the mixture, recomputed from the sampler's labels.

    Called with the current labels, it fits the Gaussians to them, runs
    forward-backward with the current transitions, re-estimates the
    transitions from the pairwise marginals (one EM step) and returns the log of
    P(c_t | all points but the t-th), the per-point prior the sampler adds.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    prior : gmm_core.NIWPrior
    transitions : numpy.ndarray, shape (K, K)
        Starting transitions.
    alpha : float
        Dirichlet smoothing of the transition rows.
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths; with them the initial distribution is re-estimated
        each call too.
    """

    def __init__(
        self,
        x: np.ndarray,
        prior: gmm_core.NIWPrior,
        transitions: np.ndarray,
        alpha: float,
        lengths: np.ndarray | None = None,
    ) -> None:
        self.x, self.prior, self.alpha = x, prior, alpha
        self.transitions = transitions
        self.lengths = lengths
        self.initial: np.ndarray | None = None

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        k = self.transitions.shape[0]
        post = gmm_core.class_posterior(self.x, labels, k, self.prior)
        means, prec_chol = gmm_core.point_estimate(post)
        if self.lengths is not None and self.initial is None:
            self.initial = mm_core.initial_distribution(np.eye(k)[labels], self.lengths, self.alpha)
        fb = mm_core.forward_backward(
            gmm_core.gaussian_log_likelihood(self.x, means, prec_chol),
            self.transitions,
            self.initial,
            lengths=self.lengths,
        )
        self.transitions = mm_core.transition_matrix(fb.pair_counts, self.alpha)
        self.initial = mm_core.initial_distribution(fb.posterior, self.lengths, self.alpha)
        with np.errstate(divide="ignore"):
            return np.log(np.maximum(fb.prior, 1e-300))
