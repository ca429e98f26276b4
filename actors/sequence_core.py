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
When none of these gains, splits along the *slowest* direction
(:func:`slow_proposals`: the direction consecutive points of a cluster, or a
pair, share most) are scored by a chain whose classes each emit from two
Gaussians (:func:`mixture_chain_score`), so that a class written in two
styles is no longer better fitted split by style; such a move is taken only
when what the sequence explains gains too.

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
from collections.abc import Sequence

import numpy as np

from actors import gmm_core, mm_core, slow_moves
from actors.label_emissions import LabelEmissions
from actors.sequence_proposals import (
    Move,
    mixture_proposals,
    neighbour_context,
    propose_moves,
    stretch_means,
    stretch_proposals,
    two_means,
    within_scatter,
)
from actors.slow_moves import mixture_chain_score, mixture_emission_log_likelihood, slow_proposals, slow_split

log = logging.getLogger(__name__)

__all__ = [
    "ChainFit",
    "ChainPrior",
    "Move",
    "SearchResult",
    "chain_fit",
    "chain_log_likelihood",
    "emission_log_likelihood",
    "mixture_proposals",
    "neighbour_context",
    "propose_moves",
    "mixture_chain_score",
    "mixture_emission_log_likelihood",
    "search",
    "slow_proposals",
    "slow_split",
    "stretch_means",
    "stretch_proposals",
    "two_means",
    "within_scatter",
]


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
    log_emission: np.ndarray | None = None,
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
    log_emission : numpy.ndarray, shape (N, K), optional
        ``emission_log_likelihood(x, weights, prior)`` when the caller has it
        (untempered); the first iteration then reuses it.
    """
    return chain_fits(x, [weights], prior, alpha, n_iter, lengths, emission_weight, [log_emission])[0]


def chain_fits(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    prior: gmm_core.NIWPrior,
    alpha: float,
    n_iter: int,
    lengths: np.ndarray | None = None,
    emission_weight: float = 1.0,
    log_emissions: Sequence[np.ndarray | None] | None = None,
) -> list[ChainFit]:
    """:func:`chain_fit` from several starting memberships, bit for bit, their EM iterations side by side.

    Every EM iteration runs one :func:`actors.mm_core.forward_backward_many` for
    all fits (a search scores several candidates; ``n_iter`` is fixed, so they
    iterate in step).

    Parameters
    ----------
    x, prior, alpha, n_iter, lengths, emission_weight
        Of :func:`chain_fit`.
    weights : sequence of C numpy.ndarray, shape (N, K)
    log_emissions : sequence of C numpy.ndarray (N, K) or None, optional
        Each fit's ``log_emission`` of :func:`chain_fit`.

    Returns
    -------
    list of C ChainFit
    """
    ws = list(weights)
    if not ws:
        return []
    trans = [mm_core.transition_matrix(mm_core.expected_counts(w, lengths), alpha) for w in ws]
    given = list(log_emissions) if log_emissions is not None else [None] * len(ws)
    for it in range(n_iter + 1):
        fbs = _e_steps(x, ws, prior, trans, alpha, lengths, emission_weight, given if it == 0 else None)
        if it == n_iter:
            break
        ws = [fb.posterior for fb in fbs]
        trans = [mm_core.transition_matrix(fb.pair_counts, alpha) for fb in fbs]
    return [ChainFit(fb.log_likelihood, fb.posterior, fb.prior, t) for fb, t in zip(fbs, trans, strict=True)]


def _e_steps(
    x: np.ndarray,
    ws: Sequence[np.ndarray],
    prior: gmm_core.NIWPrior,
    trans: Sequence[np.ndarray],
    alpha: float,
    lengths: np.ndarray | None,
    emission_weight: float,
    log_emissions: Sequence[np.ndarray | None] | None = None,
) -> list[mm_core.ForwardBackward]:
    """One E-step of :func:`chain_fits`: each fit's emissions and initial distribution fitted to its ``w`` (N, K),
    then one forward-backward for all.

    ``log_emissions``: each fit's ``emission_log_likelihood(x, w, prior)`` when the caller has it (untempered).
    """
    given = list(log_emissions) if log_emissions is not None else [None] * len(ws)
    log_ems = []
    for w, log_em in zip(ws, given, strict=True):
        if log_em is None:
            log_em = emission_log_likelihood(x, w, prior)
        log_ems.append(emission_weight * log_em if emission_weight != 1.0 else log_em)
    initials = [mm_core.initial_distribution(w, lengths, alpha) for w in ws]
    return mm_core.forward_backward_many(np.stack(log_ems), np.stack(trans), initials, lengths=lengths)


def _e_step(
    x: np.ndarray,
    w: np.ndarray,
    prior: gmm_core.NIWPrior,
    trans: np.ndarray,
    alpha: float,
    lengths: np.ndarray | None,
    emission_weight: float,
) -> mm_core.ForwardBackward:
    """One E-step of :func:`chain_fit` (:func:`_e_steps` of one fit)."""
    return _e_steps(x, [w], prior, [trans], alpha, lengths, emission_weight)[0]


def chain_log_likelihood(
    weights: np.ndarray,
    log_emission: np.ndarray,
    alpha: float,
    lengths: np.ndarray | None = None,
    emission_weight: float = 1.0,
) -> float:
    """``chain_fit(x, weights, prior, alpha, 0, lengths, emission_weight).log_likelihood``, bit for bit.

    Only the forward half of the recursion runs (:func:`actors.mm_core.forward_log_likelihood`).

    Parameters
    ----------
    weights : numpy.ndarray, shape (N, K)
    log_emission : numpy.ndarray, shape (N, K)
        ``emission_log_likelihood(x, weights, prior)``, untempered.
    alpha, lengths, emission_weight
        Of :func:`chain_fit`.
    """
    return float(chain_log_likelihoods([weights], [log_emission], alpha, lengths, emission_weight)[0])


def chain_log_likelihoods(
    weights: Sequence[np.ndarray],
    log_emissions: Sequence[np.ndarray],
    alpha: float,
    lengths: np.ndarray | None = None,
    emission_weight: float = 1.0,
) -> np.ndarray:
    """:func:`chain_log_likelihood` of C memberships (N, K) with their emissions (N, K), bit for bit, in one pass.

    Returns
    -------
    numpy.ndarray, shape (C,)
    """
    trans = [mm_core.transition_matrix(mm_core.expected_counts(w, lengths), alpha) for w in weights]
    initials = [mm_core.initial_distribution(w, lengths, alpha) for w in weights]
    log_em = np.stack([emission_weight * e if emission_weight != 1.0 else e for e in log_emissions])
    return mm_core.forward_log_likelihood_many(log_em, np.stack(trans), initials, lengths=lengths)


def extend_fit(
    x: np.ndarray,
    fit: ChainFit,
    prior: gmm_core.NIWPrior,
    alpha: float,
    most: int,
    lengths: np.ndarray | None = None,
    emission_weight: float = 1.0,
    tolerance: float = 1.0,
) -> ChainFit:
    """Continue a :func:`chain_fit` from its posterior and transitions: up to ``most`` EM iterations more.

    Stops once an iteration raises the log-likelihood by less than ``tolerance`` nats
    (or lowers it: the fit that scored higher is returned).

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    fit : ChainFit
        Where to continue from (its posterior (N, K) and transitions (K, K)).
    prior, alpha, lengths, emission_weight
        Of :func:`chain_fit`.
    most : int
    tolerance : float
    """
    trans = fit.transitions  # the first step re-fits the emissions only (a ChainFit keeps no pair counts)
    for _ in range(most):
        fb = _e_step(x, fit.posterior, prior, trans, alpha, lengths, emission_weight)
        if not fb.log_likelihood > fit.log_likelihood:
            return fit
        done = fb.log_likelihood - fit.log_likelihood < tolerance
        fit = ChainFit(fb.log_likelihood, fb.posterior, fb.prior, trans)
        if done:
            break
        trans = mm_core.transition_matrix(fb.pair_counts, alpha)
    return fit


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
    slow_candidates: int = 0,
    extend_iterations: int = 0,
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
    slow_candidates : int
        When no move above gains, up to twice as many splits along the slowest
        direction (:func:`slow_proposals`) are scored by a chain whose
        classes each emit from two Gaussians (:func:`mixture_chain_score`):
        one is taken when that chain gains ``min_gain`` nats and so does what
        the sequence explains (the chain's log-likelihood less that of the
        same classes drawn independently), so that on points without sequence
        structure none is.  The plain chain prefers splitting two similar
        classes by style over splitting them by class; with two Gaussians per
        class the style is absorbed within a class and the sequence decides.

    Returns
    -------
    SearchResult
    """
    eye = np.eye(n_classes)
    # Emissions of labels near the current ones, only the touched clusters recomputed (bit for bit).
    emissions = LabelEmissions(x, labels, n_classes, prior)
    base = chain_fit(x, eye[labels], prior, alpha, em_iterations, lengths, emission_weight, emissions.base)
    taken: list[str] = []
    cache: dict[bytes, np.ndarray] = {}
    for _ in range(max_moves):
        best: tuple[float, Move, ChainFit] | None = None
        proposals = propose_moves(labels, base.posterior, rng, n_best, lengths=lengths)
        if mixture_candidates > 0 and n_classes >= 3:
            proposals += mixture_proposals(x, labels, n_classes, prior, rng, mixture_candidates, lengths)
        if stretch_candidates > 0:
            proposals += stretch_proposals(x, labels, base.transitions, rng, stretch_candidates, lengths)
        if 0 < n_scored < len(proposals) and screen_iterations < em_iterations:
            starts = [eye[m.labels] for m in proposals]
            start_emissions = [emissions(m.labels) for m in proposals]
            if screen_iterations == 0:
                screened = chain_log_likelihoods(starts, start_emissions, alpha, lengths, emission_weight)
            else:
                fits = chain_fits(x, starts, prior, alpha, screen_iterations, lengths, emission_weight, start_emissions)
                screened = np.array([f.log_likelihood for f in fits])
            keep = np.argsort(-screened, kind="stable")[:n_scored]
            proposals = [proposals[i] for i in keep]
        fits = chain_fits(
            x,
            [eye[m.labels] for m in proposals],
            prior,
            alpha,
            em_iterations,
            lengths,
            emission_weight,
            [emissions(m.labels) for m in proposals],
        )
        fitted = [
            (fit.log_likelihood - base.log_likelihood, move, fit) for move, fit in zip(proposals, fits, strict=True)
        ]
        top = max(fitted, key=lambda c: c[0]) if fitted else None  # the first of equals
        if top is not None and top[0] >= min_gain:
            best = top
        elif top is not None and extend_iterations > 0:
            _, move, fit = top
            longer = extend_fit(x, fit, prior, alpha, extend_iterations, lengths, emission_weight)
            gain = longer.log_likelihood - base.log_likelihood
            if gain >= min_gain:
                best = (gain, Move(f"{move.name}, {extend_iterations} more EM", move.labels, move.score), longer)
        if best is None and slow_candidates > 0:
            best = _best_slow_move(
                x,
                labels,
                n_classes,
                prior,
                base,
                alpha,
                em_iterations,
                lengths,
                emission_weight,
                slow_candidates,
                min_gain,
                cache,
            )
        if best is None:
            break
        taken.append(f"{best[1].name} (+{best[0]:.1f} nats)")
        log.debug("took %s", taken[-1])
        # Adopt the labels of the chain fitted from the move, then rescore them.
        labels = np.argmax(best[2].posterior, axis=1)
        emissions = LabelEmissions(x, labels, n_classes, prior)
        base = chain_fit(x, eye[labels], prior, alpha, em_iterations, lengths, emission_weight, emissions.base)
    return SearchResult(labels, base, taken)


def _best_slow_move(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    base: ChainFit,
    alpha: float,
    em_iterations: int,
    lengths: np.ndarray | None,
    emission_weight: float,
    n_best: int,
    min_gain: float,
    cache: dict[bytes, np.ndarray],
) -> tuple[float, Move, ChainFit] | None:
    """The :func:`slow_moves.best_move` of :func:`search` (see ``slow_candidates``), with the chain fitted from it."""
    eye = np.eye(n_classes)

    def refine(proposed: list[np.ndarray]) -> list[np.ndarray]:
        fits = chain_fits(x, [eye[p] for p in proposed], prior, alpha, em_iterations, lengths, emission_weight)
        return [np.argmax(fit.posterior, axis=1) for fit in fits]

    # the base labels' refinement is the argmax of their fit, which search has made already (the same bits)
    settled = np.argmax(base.posterior, axis=1)
    found = slow_moves.best_move(
        x, labels, n_classes, prior, base.transitions, alpha, lengths, n_best, min_gain, cache, refine, settled
    )
    if found is None:
        return None
    fit = chain_fit(x, eye[found[1].labels], prior, alpha, em_iterations, lengths, emission_weight)
    return found[0], found[1], fit


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
