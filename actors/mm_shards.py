"""The Markov model on S shards: exact forward-backward whose result does not depend on S.

The points keep their global order and each shard owns a contiguous run of
whole blocks (:func:`actors.shard_core.shard_ranges`), whole sequences or a
piece of a long one.  :func:`actors.mm_core.forward_backward` already works on
blocks of :data:`FB_BLOCK` points in three passes, and the sharded pass splits
exactly along them:

1. every shard builds the transfer product of each of its blocks, all blocks
   at once, and composes the products of every :data:`GROUP` consecutive
   blocks (a super-block of 4096 points, which no shard boundary splits) in a
   fixed order (:meth:`MMShard.transfer`);
2. the super-blocks are chained in global order: the filtered vector (the
   alpha message, K numbers, and the running log-likelihood) is handed from
   shard to shard forwards (:meth:`MMShard.chain_forward`), the beta message
   backwards (:meth:`MMShard.chain_backward`); each hop is K floats and the
   serial work is one vector-matrix step per super-block;
3. every shard expands its super-blocks' vectors to its blocks, runs every
   block's own forward and backward recursions and sums its pairwise
   marginals per block (:meth:`MMShard.smooth`); the pair of a block's first
   point with the point before uses the incoming filtered vector, so no pair
   across a block or shard boundary is lost.

Every step's arithmetic depends only on the global block layout, never on
which shard holds a block, so the result has the same bits whatever S is.
So a sequence cut by a shard boundary is treated exactly: it is one pass over
the whole sequence.  Sequence starts (hmmlearn's ``lengths``) reset the chain
to the initial distribution as in mm_core.  Pair counts and the sums of the
sequences' first posteriors are rounded per block onto a fixed-point grid and
added as int64 (:mod:`actors.shard_core`), so the coordinator
(:class:`ShardedMM`) gets S (K, K) arrays and re-estimates the transitions by
Baum-Welch exactly as :class:`actors.mm.MMWorker` does.  The message (each
point's prior) stays on its shard for the GMM shard below.

Only ``counts="pairwise"`` or ``"expected"`` with ``message="forward-backward"``
run on shards; ``counts="sampled"`` and ``message="serket"`` are refused.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from actors import mm_core
from actors.config import MMConfig
from actors.shard_core import Shards, fixed_sum, from_fixed, grid_exponent, to_fixed

log = logging.getLogger(__name__)

#: Points per forward-backward block (divides actors.shard_core.BLOCK, so shard boundaries fall on block boundaries).
FB_BLOCK = 256
#: Blocks per matrix product: every (blocks, K) x (K, K) product is made in groups of this many blocks, so each
#: BLAS call has the same shape whatever S is (BLAS may round a row differently in a differently shaped call).
GROUP = 16


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / v.sum(axis=-1, keepdims=True)


def _grouped(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``a @ m`` for ``a`` (nb, ..., K) with nb a multiple of :data:`GROUP`, one same-shaped BLAS call per group."""
    shape = a.shape
    return np.matmul(a.reshape(shape[0] // GROUP, -1, shape[-1]), m).reshape(shape)


class MMShard:
    """One shard's emissions, posteriors and forward-backward state.

    Parameters
    ----------
    start : int
        Global index of this shard's first point (a multiple of ``block``).
    starts : numpy.ndarray, shape (n,), bool
        Which of this shard's points begin a sequence (the global first point always does).
    block : int
    """

    def __init__(self, start: int, starts: np.ndarray, block: int = FB_BLOCK) -> None:
        if start % block:
            raise ValueError(f"an MM shard should start at a multiple of {block}, got {start}")
        self.start, self.block = int(start), int(block)
        self.starts_flat = np.asarray(starts, dtype=bool)
        n = self.starts_flat.shape[0]
        self.n, self.nb = n, -(-n // (block * GROUP)) * GROUP  # padded after the global end only (last shard)
        pad = np.zeros(self.nb * block, dtype=bool)
        pad[:n] = self.starts_flat
        self.starts = pad.reshape(self.nb, block)
        valid = np.zeros(self.nb * block, dtype=bool)
        valid[:n] = True
        self.valid = valid.reshape(self.nb, block)

    def load(self, posteriors: tuple[np.ndarray, np.ndarray | None]) -> None:
        """The GMM shard's (probs, log-likelihood), each (n, K); log(probs) stands in for missing emissions."""
        probs, log_em = posteriors
        if log_em is None:
            log_em = np.log(np.maximum(probs, 1e-300))
        self.probs = np.asarray(probs, dtype=np.float64)
        n, k = log_em.shape
        self.k = k
        shift = log_em.max(axis=1)
        with np.errstate(under="ignore"):
            e = np.exp(log_em - shift[:, None])
        pad = np.ones((self.nb * self.block, k))
        pad[:n] = e
        self.eb = pad.reshape(self.nb, self.block, k)
        sh = np.zeros(self.nb * self.block)
        sh[:n] = shift
        self.shift_sums = sh.reshape(self.nb, self.block).sum(axis=1)

    def last_row(self) -> np.ndarray:
        """probs of this shard's last point (K,): the left side of the next shard's first pair."""
        return self.probs[-1].copy()

    def expected_counts(self, exponent: int, halo: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-point sum_t p_{t-1} p_t^T over this shard's t (not at a start) and of p at the starts.

        ``halo`` is the previous shard's last probs (None on the first shard).
        """
        left = np.empty_like(self.probs)
        left[1:] = self.probs[:-1]
        left[0] = 0.0 if halo is None else halo
        keep = ~self.starts_flat
        pairs, first = [], []
        for b in range(self.nb):
            s = slice(b * self.block, min((b + 1) * self.block, self.n))
            lw = np.where(keep[s, None], left[s], 0.0)
            pairs.append(to_fixed(lw.T @ self.probs[s], exponent))
            first.append(to_fixed(self.probs[s][self.starts_flat[s]].sum(axis=0), exponent))
        return fixed_sum(pairs), fixed_sum(first)

    def transfer(self, trans: np.ndarray, pi0: np.ndarray) -> None:
        """Pass 1: each block's rescaled transfer product and its log scale, all blocks at once."""
        eb, starts = self.eb, self.starts
        s = trans[None, :, :] * eb[:, 0, None, :]
        hit = starts[:, 0]
        if hit.any():
            s[hit] = (pi0[None, :] * eb[hit, 0])[:, None, :]
        m = s.max(axis=(1, 2))
        s /= m[:, None, None]
        log_scale = np.log(m)
        for i in range(1, self.block):
            s = _grouped(s, trans)
            hit = starts[:, i]
            if hit.any():
                s[hit] = s[hit].sum(axis=2, keepdims=True) * pi0[None, None, :]
            s *= eb[:, i, None, :]
            m = s.max(axis=(1, 2))
            s /= m[:, None, None]
            log_scale += np.log(m)
        self.s = s
        # Each group of GROUP blocks (a super-block, never split by a shard) composed in a fixed order, so that
        # the serial chain across shards has one step per super-block instead of one per block.
        sg = s.reshape(-1, GROUP, self.k, self.k)
        prod = sg[:, 0].copy()
        log_prod = log_scale.reshape(-1, GROUP).sum(axis=1) + self.shift_sums.reshape(-1, GROUP).sum(axis=1)
        for j in range(1, GROUP):
            prod = np.matmul(prod, sg[:, j])  # one same-shaped (K, K) product per super-block
            m = prod.max(axis=(1, 2))
            prod /= m[:, None, None]
            log_prod += np.log(m)
        self.prod, self.log_prod = prod, log_prod

    def chain_forward(self, a: np.ndarray, log_z: float) -> tuple[np.ndarray, float]:
        """Pass 2, forwards: take the filtered vector (K,) and log-likelihood so far, return them after this shard."""
        self.incoming_g = np.empty((self.prod.shape[0], self.k))
        for g in range(self.prod.shape[0]):
            self.incoming_g[g] = a
            v = a @ self.prod[g]
            total = v.sum()
            log_z = log_z + float(np.log(total)) + float(self.log_prod[g])
            a = v / total
        return a, log_z

    def chain_backward(self, w: np.ndarray) -> np.ndarray:
        """Pass 2, backwards: take the beta message (K,) after this shard, return it before this shard."""
        self.outgoing_g = np.empty((self.prod.shape[0], self.k))
        for g in range(self.prod.shape[0] - 1, -1, -1):
            self.outgoing_g[g] = w
            w = _normalise(self.prod[g] @ w)
        return w

    def _expand(self) -> tuple[np.ndarray, np.ndarray]:
        """Every block's incoming filtered vector and outgoing beta, (nb, K) each, from its super-block's."""
        sg = self.s.reshape(-1, GROUP, self.k, self.k)
        incoming = np.empty((sg.shape[0], GROUP, self.k))
        outgoing = np.empty_like(incoming)
        a = self.incoming_g
        for j in range(GROUP):
            incoming[:, j] = a
            a = _normalise(np.matmul(a[:, None, :], sg[:, j])[:, 0])
        w = self.outgoing_g
        for j in range(GROUP - 1, -1, -1):
            outgoing[:, j] = w
            w = _normalise(np.matmul(sg[:, j], w[:, :, None])[:, :, 0])
        return incoming.reshape(-1, self.k), outgoing.reshape(-1, self.k)

    def smooth(self, trans: np.ndarray, pi0: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
        """Pass 3: every block's recursions; keeps prior and posterior (n, K).

        Returns
        -------
        pair_counts : numpy.ndarray, shape (K, K), int64 fixed point
        first : numpy.ndarray, shape (K,), int64 fixed point: sum of the posterior at sequence starts
        """
        nb, k, L, eb, starts = self.nb, self.k, self.block, self.eb, self.starts
        self.incoming, self.outgoing = self._expand()
        pred = np.empty((nb, L, k))
        alpha = self.incoming
        for i in range(L):
            p = _grouped(alpha, trans)
            p[starts[:, i]] = pi0
            pred[:, i] = _normalise(p)
            alpha = _normalise(pred[:, i] * eb[:, i])
        beta = np.empty((nb, L, k))
        cur = self.outgoing
        for i in range(L - 1, -1, -1):
            beta[:, i] = cur
            cur = _normalise(_grouped(eb[:, i] * cur, trans.T))
            cur[starts[:, i]] = 1.0 / k
        prior = _normalise(pred * beta)
        posterior = _normalise(prior * eb)
        filt = _normalise(pred * eb)
        left = np.concatenate((self.incoming[:, None, :], filt[:, :-1]), axis=1)
        right = eb * beta
        z = np.einsum("blj,blj->bl", left, right @ trans.T)
        use = self.valid & ~starts
        w = np.where(use[:, :, None], left / z[:, :, None], 0.0)
        pairs = trans[None] * np.matmul(np.transpose(w, (0, 2, 1)), right)
        first = np.where(starts[:, :, None], posterior, 0.0).sum(axis=1)
        self.prior = prior.reshape(-1, k)[: self.n]
        self.posterior = posterior.reshape(-1, k)[: self.n]
        return fixed_sum([to_fixed(p, exponent) for p in pairs]), fixed_sum([to_fixed(f, exponent) for f in first])

    def message(self) -> np.ndarray:
        """The prior of each of this shard's points given the rest of its sequence, (n, K): to the GMM shard."""
        return self.prior

    def result(self) -> dict[str, np.ndarray]:
        """prior and posterior (tests; never gathered in a run)."""
        return {"prior": self.prior.copy(), "posterior": self.posterior.copy()}


class ShardedFB:
    """One exact forward-backward pass over the shards, reduced: what :class:`mm_core.ForwardBackward` reports."""

    def __init__(self, pair_counts: np.ndarray, first: np.ndarray, log_likelihood: float) -> None:
        self.pair_counts, self.first, self.log_likelihood = pair_counts, first, log_likelihood


def sharded_forward_backward(shards: Shards, trans: np.ndarray, initial: np.ndarray | None, n: int) -> ShardedFB:
    """Pass 1 on all shards, the two chains shard by shard, pass 3 on all shards; reduced counts.

    Parameters
    ----------
    shards : Shards of :class:`MMShard`, loaded
    trans : numpy.ndarray, shape (K, K)
    initial : numpy.ndarray, shape (K,), or None (uniform)
    n : int
        Total points N (bounds the counts for the fixed-point grid).
    """
    k = trans.shape[0]
    pi0 = np.full(k, 1.0 / k) if initial is None else np.asarray(initial, dtype=float)
    shards.map("transfer", trans, pi0)
    a, log_z = np.full(k, 1.0 / k), 0.0
    for i in range(shards.n_shards):
        a, log_z = shards.call(i, "chain_forward", a, log_z)
    w = np.ones(k)
    for i in range(shards.n_shards - 1, -1, -1):
        w = shards.call(i, "chain_backward", w)
    e = grid_exponent(n)
    parts = shards.map("smooth", trans, pi0, e)
    pairs = from_fixed(fixed_sum([p[0] for p in parts]), e)
    first = from_fixed(fixed_sum([p[1] for p in parts]), e)
    return ShardedFB(pairs, first, float(log_z))


class ShardedMM:
    """Coordinator of a sharded Markov model: Baum-Welch on reduced counts, as :class:`actors.mm.MMWorker`.

    Parameters
    ----------
    config : MMConfig
    many_sequences : bool
        Whether the points form more than one sequence (then the initial distribution is learned).
    """

    def __init__(self, config: MMConfig, many_sequences: bool) -> None:
        if config.counts == "sampled" or config.message != "forward-backward":
            raise ValueError(
                "a sharded MarkovModel runs counts='pairwise' or 'expected' with message='forward-backward', "
                f"got counts={config.counts!r}, message={config.message!r}"
            )
        self.config, self.many = config, bool(many_sequences)
        self.transitions: np.ndarray | None = None
        self.initial: np.ndarray | None = None

    def _initial(self, first: np.ndarray) -> np.ndarray | None:
        if not self.many:
            return None
        return (first + self.config.alpha) / (first.sum() + first.shape[0] * self.config.alpha)

    def update(self, shards: Shards, n: int, round: int) -> dict[str, Any]:
        """Learn the transitions from the loaded shards and leave each shard's message on it.

        Returns
        -------
        dict
            ``transitions`` (K, K), ``counts`` (K, K), ``log_likelihood``, ``iterations``, ``seconds`` and
            ``initial`` (K,) with many sequences.
        """
        begin = time.perf_counter()
        cfg = self.config
        if n < 2:
            raise ValueError(f"a Markov model needs a sequence of at least 2 points, got {n}")
        halos = shards.map("last_row")
        e = grid_exponent(n)
        per = [(e, None)] + [(e, halos[i - 1]) for i in range(1, shards.n_shards)]
        parts = shards.map("expected_counts", per_shard=per)
        counts = from_fixed(fixed_sum([p[0] for p in parts]), e)
        trans = mm_core.transition_matrix(counts, cfg.alpha)
        initial = self._initial(from_fixed(fixed_sum([p[1] for p in parts]), e))
        fb = sharded_forward_backward(shards, trans, initial, n)
        iterations = 0
        if cfg.counts == "pairwise":
            if self.transitions is not None and self.transitions.shape == trans.shape:
                warm_initial = self.initial if initial is not None and self.initial is not None else initial
                warm = sharded_forward_backward(shards, self.transitions, warm_initial, n)
                if warm.log_likelihood >= fb.log_likelihood:
                    trans, initial, fb = self.transitions, warm_initial, warm
                else:  # the shards hold the warm pass's message: redo the better one
                    fb = sharded_forward_backward(shards, trans, initial, n)
            while iterations < cfg.em_iterations:
                new = mm_core.transition_matrix(fb.pair_counts, cfg.alpha)
                moved = float(np.abs(new - trans).max())
                if initial is not None:
                    new_initial = self._initial(fb.first)
                    moved = max(moved, float(np.abs(new_initial - initial).max()))
                    initial = new_initial
                trans, iterations = new, iterations + 1
                fb = sharded_forward_backward(shards, trans, initial, n)
                if moved <= cfg.em_tolerance:
                    break
            counts = fb.pair_counts
        self.transitions, self.initial = trans, initial
        seconds = time.perf_counter() - begin
        log.info("sharded mm round %d: %d shards, %d iterations, %.3f s", round, shards.n_shards, iterations, seconds)
        report = {
            "transitions": trans,
            "counts": counts,
            "log_likelihood": fb.log_likelihood,
            "iterations": iterations,
            "seconds": seconds,
        }
        if initial is not None:
            report["initial"] = initial
        return report


def local_mm_shards(ranges: list[tuple[int, int]], lengths: np.ndarray | None, n: int) -> list[MMShard]:
    """:class:`MMShard` objects for the shard ranges of N points cut into sequences of ``lengths``."""
    starts = mm_core.sequence_starts(lengths, n)
    return [MMShard(a, starts[a:b]) for a, b in ranges]
