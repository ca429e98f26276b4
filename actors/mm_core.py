"""Ray-free numerical core of the Markov model over the GMM's classes.

Two messages to the GMM are offered:

* ``serket``: the original one-step prediction, msg_t = p_{t-1} T.
* ``forward-backward``: the exact HMM prior of each point given the whole rest
  of the sequence, msg_t(k) = P(c_t = k | x_{-t}) ∝ (alpha_{t-1} T)_k beta_t(k),
  with the GMM's per-point likelihoods as emissions and the point's own
  evidence excluded (the GMM multiplies it back in).

The forward-backward recursion is *blocked*: the sequence is cut into about
sqrt(N) blocks; the product of each block's transfer matrices is built with
all blocks in parallel, the blocks are chained, then every block runs its own
recursion in parallel.  This costs about 4 sqrt(N) vectorised numpy steps
instead of 2N scalar ones, and stays exact (all quantities are non-negative, so
rescaling each step loses nothing).

Many sequences follow hmmlearn's convention: ``lengths`` (S,) positive integers
summing to N cut the N points into S consecutive sequences (``None``: one
sequence).  No pair of points across a boundary is counted or used: the first
point of every sequence gets the initial distribution instead of a transition
from the last point of the sequence before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln


def transition_matrix(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Dirichlet-smoothed transition matrix (counts[j, k] + alpha) / (sum_k counts[j, k] + K alpha).

    Parameters
    ----------
    counts : numpy.ndarray, shape (K, K)
        Transition counts from class j (row) to class k (column).
    alpha : float
        Dirichlet smoothing, > 0.

    Returns
    -------
    numpy.ndarray, shape (K, K), rows summing to one.
    """
    k = counts.shape[0]
    return (counts + alpha) / (counts.sum(axis=1, keepdims=True) + k * alpha)


def sequence_starts(lengths: np.ndarray | None, n: int) -> np.ndarray:
    """Which points begin a sequence.

    Parameters
    ----------
    lengths : numpy.ndarray, shape (S,), positive ints summing to ``n``, or None
        None means one sequence.
    n : int
        Number of points N.

    Returns
    -------
    numpy.ndarray, shape (N,), bool; entry 0 is always True.
    """
    start = np.zeros(n, dtype=bool)
    if n:
        start[0] = True
    if lengths is not None:
        start[np.cumsum(lengths)[:-1]] = True
    return start


def _within(lengths: np.ndarray | None, n: int) -> np.ndarray | None:
    """Bool mask (N - 1,) of the consecutive pairs (t, t + 1) inside one sequence; None: all are."""
    return None if lengths is None else ~sequence_starts(lengths, n)[1:]


def initial_distribution(probs: np.ndarray, lengths: np.ndarray | None, alpha: float) -> np.ndarray | None:
    """Dirichlet-smoothed distribution of the first class of a sequence.

    (sum_s p_{start_s} + alpha) / (S + K alpha), from the class posteriors of the
    sequences' first points.  With one sequence (``lengths`` None) a single point
    says nothing about a distribution: None, which every function here reads as
    uniform.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, K)
    lengths : numpy.ndarray, shape (S,), or None
    alpha : float
        Dirichlet smoothing, > 0.

    Returns
    -------
    numpy.ndarray, shape (K,), summing to one, or None.
    """
    if lengths is None:
        return None
    first = probs[sequence_starts(lengths, probs.shape[0])].sum(axis=0)
    return (first + alpha) / (first.sum() + probs.shape[1] * alpha)


def log_dirichlet_multinomial(counts: np.ndarray, alpha: float) -> np.ndarray:
    """log p(counts) of a sequence of draws under a symmetric Dirichlet(alpha) categorical, per row.

    counts (..., K) -> (...,): lgamma(K a) - lgamma(K a + n) + sum_k [lgamma(a + c_k) - lgamma(a)].
    """
    k = counts.shape[-1]
    n = counts.sum(axis=-1)
    return gammaln(k * alpha) - gammaln(k * alpha + n) + (gammaln(alpha + counts) - gammaln(alpha)).sum(axis=-1)


def sequence_evidence(
    labels: np.ndarray, n_classes: int, lengths: np.ndarray | None = None, alpha: float = 1.0
) -> float:
    """Log Bayes factor, in nats, of a first-order Markov chain over ``labels`` against independent draws.

    Both models integrate their probabilities out under symmetric Dirichlet(``alpha``)
    priors (the Dirichlet-multinomial marginal likelihood): the chain draws every
    sequence's first label from an initial distribution and each later label from the
    row of its predecessor; the alternative draws every label from one distribution.
    The chain's K (K - 1) extra parameters cost it roughly (K - 1) / 2 log(n_j / 2 pi)
    nats for every row j of n_j pairs, less what chance pairs fit, so the factor is
    negative on labels with no sequence structure (shuffled tutorial labels, N = 3000,
    K = 10: about -95 nats) and grows in proportion to N times the mutual information
    of consecutive labels where there is some.  No pair across a sequence boundary is
    counted.

    Parameters
    ----------
    labels : numpy.ndarray, shape (N,), ints in [0, n_classes)
    n_classes : int
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths (hmmlearn's convention); None: one sequence.
    alpha : float
        Dirichlet concentration of every distribution, > 0.

    Returns
    -------
    float
        log p(labels | chain) - log p(labels | independent draws).
    """
    return evidence_from_counts(*label_counts(labels, n_classes, lengths), alpha)  # no labels: 0.0


def label_counts(
    labels: np.ndarray, n_classes: int, lengths: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences' first labels (K,) and within-sequence label pairs (K, K) of ``labels`` (N,), int64."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(n_classes)
    starts = sequence_starts(lengths, labels.shape[0])
    first = np.bincount(labels[starts], minlength=k)
    within = ~starts[1:]
    pairs = np.bincount(labels[:-1][within] * k + labels[1:][within], minlength=k * k).reshape(k, k)
    return first, pairs


def evidence_from_counts(first: np.ndarray, pairs: np.ndarray, alpha: float = 1.0) -> float:
    """:func:`sequence_evidence` from label counts: sequences' first labels (K,) and within-sequence pairs (K, K).

    Every label is a sequence's first or the second of exactly one pair, so the
    counts of all labels are ``first + pairs.sum(axis=0)``.
    """
    first, pairs = np.asarray(first, dtype=float), np.asarray(pairs, dtype=float)
    chain = float(log_dirichlet_multinomial(first, alpha) + log_dirichlet_multinomial(pairs, alpha).sum())
    independent = float(log_dirichlet_multinomial(first + pairs.sum(axis=0), alpha))
    return chain - independent


def expected_counts(probs: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Exact expected transition counts sum_t p_t p_{t+1}^T of independent posteriors.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, K)
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths; pairs across a boundary are not counted.

    Returns
    -------
    numpy.ndarray, shape (K, K)
    """
    within = _within(lengths, probs.shape[0])
    if within is None:
        return probs[:-1].T @ probs[1:]
    return probs[:-1][within].T @ probs[1:][within]


def sampled_counts(
    probs: np.ndarray, n_samples: int, rng: np.random.Generator, lengths: np.ndarray | None = None
) -> np.ndarray:
    """Transition counts from ``n_samples`` joint draws of every point's class.

    Each draw picks a class per point by inverting the *cumulative* posterior
    (the original compared single probabilities and was biased) and counts
    consecutive pairs.  Counts are divided by ``n_samples`` so that they are on
    the scale of :func:`expected_counts` (which they estimate without bias).
    With ``lengths`` (S,) pairs across a sequence boundary are not counted.

    Returns
    -------
    numpy.ndarray, shape (K, K)
    """
    n, k = probs.shape
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random((n_samples, n, 1))
    draws = (u > cdf[None, :, :]).sum(axis=2)  # (S, N) inverse-CDF sampling
    pair = draws[:, :-1] * k + draws[:, 1:]
    within = _within(lengths, n)
    if within is not None:
        pair = pair[:, within]
    counts = np.bincount(pair.ravel(), minlength=k * k).reshape(k, k)
    return counts / float(n_samples)


def one_step_message(
    probs: np.ndarray,
    trans: np.ndarray,
    lengths: np.ndarray | None = None,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """Serket's message: msg_t = p_{t-1} T; the first point of a sequence gets ``initial``.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, K)
    trans : numpy.ndarray, shape (K, K)
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths (one sequence when omitted).
    initial : numpy.ndarray, shape (K,), optional
        Distribution of a sequence's first class; uniform when omitted.

    Returns
    -------
    numpy.ndarray, shape (N, K), rows summing to one.
    """
    msg = np.empty_like(probs)
    msg[0] = 1.0 / probs.shape[1]
    msg[1:] = probs[:-1] @ trans
    if lengths is not None or initial is not None:
        msg[sequence_starts(lengths, probs.shape[0])] = 1.0 / probs.shape[1] if initial is None else initial
    msg /= msg.sum(axis=1, keepdims=True)
    return msg


@dataclasses.dataclass(frozen=True)
class ForwardBackward:
    """Result of one forward-backward pass.

    Attributes
    ----------
    prior : numpy.ndarray, shape (N, K)
        P(c_t | all emissions but the t-th), rows summing to one.
    posterior : numpy.ndarray, shape (N, K)
        P(c_t | all emissions), rows summing to one.
    pair_counts : numpy.ndarray, shape (K, K)
        Expected transition counts sum_t P(c_t = j, c_{t+1} = k | all emissions).
    log_likelihood : float
        log p(all emissions) under the chain.
    """

    prior: np.ndarray
    posterior: np.ndarray
    pair_counts: np.ndarray
    log_likelihood: float


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / v.sum(axis=-1, keepdims=True)


def _block_products(
    eb: np.ndarray, trans: np.ndarray, pi0: np.ndarray, starts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1 of :func:`forward_backward_many`: each block's rescaled transfer product, for C chains at once.

    S_b = G_first ... G_last, G_t = A_t diag(e_t), where A_0 = 1 pi0^T and A_t = T
    otherwise.  Rescaled each step (log scale kept); S T for all blocks of a chain
    at once is one (n_blocks K, K) x (K, K) product, the same product for every
    chain (so C chains give the bits of C separate passes).

    Parameters
    ----------
    eb : numpy.ndarray, shape (C, B, L, K)
        Emissions (shifted, exponentiated, padded) of C chains in B blocks of length L.
    trans : numpy.ndarray, shape (C, K, K)
    pi0 : numpy.ndarray, shape (C, K)
    starts : numpy.ndarray of bool, shape (B, L), or None
        Points that begin a sequence other than the first (the same for every chain).

    Returns
    -------
    s : numpy.ndarray, shape (C, B, K, K)
    log_scale : numpy.ndarray, shape (C, B)
        log of the factor each block's product was divided by.
    """
    n_chains, n_blocks, length, k = eb.shape
    s = trans[:, None, :, :] * eb[:, :, 0, None, :]
    s[:, 0] = pi0[:, None, :] * eb[:, 0, 0][:, None, :]
    cols = None if starts is None else starts.any(axis=0)
    if cols is not None and cols[0]:
        hit = starts[:, 0]
        s[:, hit] = (pi0[:, None, :] * eb[:, hit, 0])[:, :, None, :]
    m = s.max(axis=(2, 3))
    s /= m[:, :, None, None]
    log_scale = np.log(m)
    for i in range(1, length):
        s = (s.reshape(n_chains, n_blocks * k, k) @ trans).reshape(n_chains, n_blocks, k, k)
        if cols is not None and cols[i]:
            hit = starts[:, i]  # S 1 pi0^T: each row's mass (T keeps it) moved onto pi0
            s[:, hit] = s[:, hit].sum(axis=3, keepdims=True) * pi0[:, None, None, :]
        s *= eb[:, :, i, None, :]
        m = s.max(axis=(2, 3))
        s /= m[:, :, None, None]
        log_scale += np.log(m)
    return s, log_scale


class _Blocked(NamedTuple):
    """Pass 1 of :func:`forward_backward_many` and what the later passes need of its inputs (C chains)."""

    n: int
    pi0: np.ndarray
    shift: np.ndarray
    e: np.ndarray
    eb: np.ndarray
    starts: np.ndarray | None
    s: np.ndarray
    log_scale: np.ndarray


def _blocked(
    log_emission: np.ndarray,
    trans: np.ndarray,
    initial: Sequence[np.ndarray | None],
    block: int | None,
    lengths: np.ndarray | None,
) -> _Blocked:
    """Shifted, exponentiated emissions (C, N, K) cut into blocks, and each block's transfer product (pass 1)."""
    n_chains, n, k = log_emission.shape
    pi0 = np.stack([np.full(k, 1.0 / k) if p is None else np.asarray(p, dtype=float) for p in initial])
    shift = log_emission.max(axis=2)
    with np.errstate(under="ignore"):
        e = np.exp(log_emission - shift[:, :, None])
    length = block or max(8, int(np.ceil(np.sqrt(n))))
    n_blocks = -(-n // length)
    # Padding with uniform emissions after the end is exact: T 1 = 1.
    e_pad = np.ones((n_chains, n_blocks * length, k))
    e_pad[:, :n] = e
    eb = e_pad.reshape(n_chains, n_blocks, length, k)
    # starts[b, i]: point b * length + i begins a sequence other than the first.  Its
    # transfer matrix is 1 pi0^T instead of T: the predecessor is forgotten.
    starts = None
    if lengths is not None:
        flags = np.zeros(n_blocks * length, dtype=bool)
        flags[:n] = sequence_starts(lengths, n)
        flags[0] = False  # the first point is handled as before
        starts = flags.reshape(n_blocks, length)
    s, log_scale = _block_products(eb, trans, pi0, starts)
    return _Blocked(n, pi0, shift, e, eb, starts, s, log_scale)


def _chain_forward(blocked: _Blocked) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2, forwards: each block's incoming filtered vector (C, B, K) and log p(all emissions) (C,)."""
    s, log_scale = blocked.s, blocked.log_scale
    n_chains, n_blocks, k = s.shape[0], s.shape[1], s.shape[2]
    incoming = np.empty((n_chains, n_blocks, k))
    a = np.full((n_chains, k), 1.0 / k)
    log_z = np.zeros(n_chains)
    for b in range(n_blocks):
        incoming[:, b] = a
        v = (a[:, None, :] @ s[:, b])[:, 0]
        total = v.sum(axis=1)
        log_z += np.log(total) + log_scale[:, b]
        a = v / total[:, None]
    return incoming, log_z + blocked.shift.sum(axis=1)


def forward_log_likelihood(
    log_emission: np.ndarray,
    trans: np.ndarray,
    initial: np.ndarray | None = None,
    block: int | None = None,
    lengths: np.ndarray | None = None,
) -> float:
    """log p(all emissions) under the chain: :func:`forward_backward`'s ``log_likelihood``, bit for bit.

    Only the forward half of the recursion runs (about a third of a full pass).
    Parameters as for :func:`forward_backward`.
    """
    return float(forward_log_likelihood_many(log_emission[None], trans[None], [initial], block, lengths)[0])


def forward_log_likelihood_many(
    log_emission: np.ndarray,
    trans: np.ndarray,
    initial: Sequence[np.ndarray | None],
    block: int | None = None,
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`forward_log_likelihood` of C chains over the same sequences at once, each with its own bits.

    Parameters
    ----------
    log_emission : numpy.ndarray, shape (C, N, K)
    trans : numpy.ndarray, shape (C, K, K)
    initial : sequence of C numpy.ndarray of shape (K,) or None
    block, lengths
        As for :func:`forward_backward`.

    Returns
    -------
    numpy.ndarray, shape (C,)
    """
    return _chain_forward(_blocked(log_emission, trans, initial, block, lengths))[1]


def forward_backward(
    log_emission: np.ndarray,
    trans: np.ndarray,
    initial: np.ndarray | None = None,
    block: int | None = None,
    lengths: np.ndarray | None = None,
) -> ForwardBackward:
    """Exact HMM smoothing with scaled, blocked recursions.

    Parameters
    ----------
    log_emission : numpy.ndarray, shape (N, K)
        log p(x_t | c_t = k), up to a per-row constant.
    trans : numpy.ndarray, shape (K, K)
        Row-stochastic transition matrix, strictly positive.
    initial : numpy.ndarray, shape (K,), optional
        Distribution of the first class of every sequence; uniform when omitted.
    block : int, optional
        Block length; about sqrt(N) when omitted.
    lengths : numpy.ndarray, shape (S,), optional
        Lengths of the sequences the N points form, in order (one sequence when
        omitted).  The result equals S separate passes, concatenated (pair
        counts and log-likelihoods summed).

    Returns
    -------
    ForwardBackward
    """
    return forward_backward_many(log_emission[None], trans[None], [initial], block, lengths)[0]


def forward_backward_many(
    log_emission: np.ndarray,
    trans: np.ndarray,
    initial: Sequence[np.ndarray | None],
    block: int | None = None,
    lengths: np.ndarray | None = None,
) -> list[ForwardBackward]:
    """:func:`forward_backward` of C chains over the same sequences at once.

    Each step is one numpy call for all C chains, and each chain's arithmetic is
    that of its own pass (the same products and sums, in the same order), so the
    results equal C calls of :func:`forward_backward` bit for bit, for a fraction
    of their Python overhead (a search scores several candidate chains together).

    Parameters
    ----------
    log_emission : numpy.ndarray, shape (C, N, K)
    trans : numpy.ndarray, shape (C, K, K)
    initial : sequence of C numpy.ndarray of shape (K,) or None
    block, lengths
        As for :func:`forward_backward`.

    Returns
    -------
    list of C ForwardBackward
    """
    blocked = _blocked(log_emission, trans, initial, block, lengths)
    n, pi0, e, eb, starts, s = blocked.n, blocked.pi0, blocked.e, blocked.eb, blocked.starts, blocked.s
    n_chains, n_blocks, length, k = eb.shape
    cols = None if starts is None else starts.any(axis=0)

    # Pass 2: chain the blocks forwards (incoming filtered vectors) and backwards.
    incoming, log_likelihood = _chain_forward(blocked)
    outgoing = np.empty((n_chains, n_blocks, k))
    w = np.ones((n_chains, k))
    for b in range(n_blocks - 1, -1, -1):
        outgoing[:, b] = w
        w = _normalise((s[:, b] @ w[:, :, None])[:, :, 0])

    # Pass 3: run every block's own forward and backward recursion in parallel.
    pred = np.empty((n_chains, n_blocks, length, k))
    alpha = incoming
    for i in range(length):
        p = alpha @ trans
        if i == 0:
            p[:, 0] = pi0
        if cols is not None and cols[i]:
            p[:, starts[:, i]] = pi0[:, None, :]
        pred[:, :, i] = _normalise(p)
        alpha = _normalise(pred[:, :, i] * eb[:, :, i])
    beta = np.empty((n_chains, n_blocks, length, k))
    cur = outgoing
    trans_t = np.transpose(trans, (0, 2, 1))
    for i in range(length - 1, -1, -1):
        beta[:, :, i] = cur
        cur = _normalise((eb[:, :, i] * cur) @ trans_t)
        if cols is not None and cols[i]:
            cur[:, starts[:, i]] = 1.0 / k  # the last point of a sequence has no successor

    within = _within(lengths, n)
    out = []
    for c in range(n_chains):
        pred_c = pred[c].reshape(-1, k)[:n]
        beta_c = beta[c].reshape(-1, k)[:n]
        prior = _normalise(pred_c * beta_c)
        posterior = _normalise(prior * e[c])
        # Pairwise marginals: xi_t(j, k) = filt_t(j) T_jk r_{t+1}(k) / z_t with r = e * beta and
        # z_t = filt_t . (T r_{t+1}); summed over t this is one (K, N) x (N, K) product.
        filt = _normalise(pred_c * e[c])
        left, right = filt[:-1], e[c, 1:] * beta_c[1:]
        if within is not None:  # no pair across a boundary
            left, right = left[within], right[within]
        z = np.einsum("tj,tj->t", left, right @ trans[c].T)
        pair_counts = trans[c] * ((left / z[:, None]).T @ right)
        out.append(ForwardBackward(prior, posterior, pair_counts, float(log_likelihood[c])))
    return out


def forward_backward_reference(
    log_emission: np.ndarray,
    trans: np.ndarray,
    initial: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
) -> ForwardBackward:
    """Plain sequential log-space forward-backward, one sequence at a time; slow, used as a test reference."""
    if lengths is not None:
        parts = [_reference_one(x, trans, initial) for x in np.split(log_emission, np.cumsum(lengths)[:-1])]
        return ForwardBackward(
            np.vstack([p.prior for p in parts]),
            np.vstack([p.posterior for p in parts]),
            sum(p.pair_counts for p in parts),
            float(sum(p.log_likelihood for p in parts)),
        )
    return _reference_one(log_emission, trans, initial)


def _reference_one(log_emission: np.ndarray, trans: np.ndarray, initial: np.ndarray | None = None) -> ForwardBackward:
    from scipy.special import logsumexp

    n, k = log_emission.shape
    pi0 = np.full(k, 1.0 / k) if initial is None else initial
    lt = np.log(trans)
    la = np.empty((n, k))
    la[0] = np.log(pi0) + log_emission[0]
    for t in range(1, n):
        la[t] = logsumexp(la[t - 1][:, None] + lt, axis=0) + log_emission[t]
    lb = np.zeros((n, k))
    for t in range(n - 2, -1, -1):
        lb[t] = logsumexp(lt + (log_emission[t + 1] + lb[t + 1])[None, :], axis=1)
    log_pred = np.empty((n, k))
    log_pred[0] = np.log(pi0)
    log_pred[1:] = logsumexp(la[:-1, :, None] + lt[None], axis=1)
    prior = np.exp(log_pred + lb - logsumexp(log_pred + lb, axis=1, keepdims=True))
    lp = la + lb
    posterior = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
    pairs = np.zeros((k, k))
    if n > 1:
        lxi = la[:-1, :, None] + lt[None] + (log_emission[1:] + lb[1:])[:, None, :]
        lxi -= logsumexp(lxi, axis=(1, 2), keepdims=True)
        pairs = np.exp(lxi).sum(axis=0)
    return ForwardBackward(prior, posterior, pairs, float(logsumexp(la[-1])))
