"""The Bayesian Gaussian mixture on S shards: uncollapsed blocked Gibbs whose result does not depend on S.

Given the parameters (weights, every class's mean and precision), each point's
label is independent of the others, so a shard (:class:`GMMShard`) samples its
own points' labels and returns the sufficient statistics of its blocks: counts,
sums and second moments about a broadcast reference per class, each block
rounded to a fixed-point grid and the blocks summed exactly as int64
(:mod:`actors.shard_core`).  The coordinator (:class:`ShardedGMM`) adds the S
totals, draws the weights and the (mean, precision) of every class from their
conjugate posteriors with its own generator, and broadcasts them.  A point's
label is drawn by inverting its class CDF at one uniform from a Philox counter
keyed by (round, sweep, block), so labels, statistics and parameters are the
same bytes for S = 1, 2, 4, ... (tests/test_shards.py).

Moves run on the sharded state when the coordinator is made with
``moves=True`` (a run's sharded GMM is): with ``sequence=True`` (a Markov
model above) the sequence-guided split/merge moves, scored by chain
log-likelihoods summed over the shards' blocks, whose chain's message then
primes the sweeps (:mod:`actors.shard_sequence`, as :class:`actors.gmm.GMMWorker`
does with :func:`actors.sequence_core.search`), otherwise the merge-and-split
moves of the mixture (:mod:`actors.shard_moves`); without ``moves`` the
sampler runs the plain sweeps only.  Left out on shards: the chain prior that
follows the sampler (``chain_refresh``) and ``init_restarts`` > 1.  The
k-means++ start runs on a strided sample of at most :data:`INIT_SAMPLE`
points (chosen by global index), the only rows that ever leave a shard, once
in the first update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from actors import gmm_core, mm_core, shard_chain
from actors.config import GMMConfig
from actors.seeding import numpy_generator
from actors.shard_core import (
    BLOCK,
    Shards,
    block_uniforms,
    fixed_sum,
    from_fixed,
    grid_exponent,
    philox_key,
    to_fixed,
)
from actors.shard_stats import posterior_from_stats

log = logging.getLogger(__name__)

#: Most points the k-means++ start sees (a sample strided by global index).
INIT_SAMPLE = 8192
#: Sweep number of the Philox counter used for random initial labels (never a real sweep).
_INIT_SWEEP = 2**32


class GMMShard:
    """The points of one shard, their labels and the sampler's per-point state.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d)
        This shard's latents, global points [start, start + n).
    start : int
        Global index of the first point, a multiple of ``block``.
    n_classes : int
    key : numpy.ndarray, shape (2,), uint64
        The module's Philox key (the same on every shard).
    block : int
    starts : numpy.ndarray, shape (n,), bool, optional
        Which of the shard's points begin a sequence of the data (for the
        sequence-guided moves; every block begins one anyway).  None: only the
        global first point.
    """

    def __init__(
        self,
        x: np.ndarray,
        start: int,
        n_classes: int,
        key: np.ndarray,
        block: int = BLOCK,
        starts: np.ndarray | None = None,
    ) -> None:
        if start % block:
            raise ValueError(f"a shard should start at a multiple of {block}, got {start}")
        self.k, self.key, self.block, self.start = int(n_classes), np.asarray(key, np.uint64), int(block), int(start)
        self.seq_starts = None if starts is None else np.asarray(starts, dtype=bool)
        self.set_data(x)

    def set_data(self, x: np.ndarray) -> None:
        """New latents (n, d) for the same points (a later round's)."""
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.labels: np.ndarray | None = getattr(self, "labels", None)
        self.log_bias: np.ndarray | None = None
        self.probs: np.ndarray | None = None
        self.log_likelihood: np.ndarray | None = None
        self.drop_candidates(keep_base=False)

    def _blocks(self) -> list[tuple[int, slice]]:
        n = self.x.shape[0]
        return [(self.start + i, slice(i, min(i + self.block, n))) for i in range(0, n, self.block)]

    def extent(self) -> float:
        """max |x| over this shard's points (0 when it has none)."""
        return float(np.abs(self.x).max()) if self.x.size else 0.0

    def moment_sums(self, exponent: int) -> np.ndarray:
        """Fixed-point sum of the points, int64 (d,)."""
        parts = [to_fixed(self.x[s].sum(axis=0), exponent) for _, s in self._blocks()]
        return fixed_sum(parts) if parts else np.zeros(self.x.shape[1], np.int64)

    def centred_moments(self, centre: np.ndarray, exponent: int) -> np.ndarray:
        """Fixed-point sum of (x - centre)(x - centre)^T, int64 (d, d)."""
        parts = []
        for _, s in self._blocks():
            c = self.x[s] - centre
            parts.append(to_fixed(c.T @ c, exponent))
        d = self.x.shape[1]
        return fixed_sum(parts) if parts else np.zeros((d, d), np.int64)

    def scale(self, centre: np.ndarray, spread: np.ndarray) -> None:
        """Standardise the points in place: (x - centre) / spread."""
        self.x = (self.x - centre) / spread

    def sample_rows(self, stride: int) -> np.ndarray:
        """The points whose global index is a multiple of ``stride``, (m, d)."""
        first = (-self.start) % stride
        return self.x[first::stride].copy()

    def has_labels(self) -> bool:
        return self.labels is not None and self.labels.shape[0] == self.x.shape[0]

    def init_labels(self, centres: np.ndarray | None, round: int) -> None:
        """Nearest of ``centres`` (K, d) for every point, or uniform random labels (Philox) when None."""
        labels = np.empty(self.x.shape[0], dtype=np.int64)
        for first, s in self._blocks():
            xb = self.x[s]
            if centres is None:
                u = block_uniforms(self.key, round, _INIT_SWEEP, first, xb.shape[0])
                labels[s] = np.minimum((u * self.k).astype(np.int64), self.k - 1)
            else:
                dist = (xb * xb).sum(1)[:, None] - 2.0 * xb @ centres.T + (centres * centres).sum(1)[None, :]
                labels[s] = np.argmin(dist, axis=1)
        self.labels = labels

    def set_prior(self, probs: np.ndarray | None) -> None:
        """The MM's message for this shard's points, (n, K) probabilities, or None."""
        if probs is None:
            self.log_bias = None
            return
        with np.errstate(divide="ignore"):
            self.log_bias = np.log(np.maximum(probs, 1e-300))

    def class_stats(self, reference: np.ndarray, e1: int, e2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-class statistics of the current labels about ``reference`` (K, d).

        Returns
        -------
        counts : numpy.ndarray, shape (K,), int64
        sums : numpy.ndarray, shape (K, d), int64: fixed-point sum of x - reference[k] (grid 2**-e1)
        second : numpy.ndarray, shape (K, d, d), int64: fixed-point sum of the outer products (grid 2**-e2)
        """
        assert self.labels is not None
        labels = self.labels
        return self._group_stats(lambda s: labels[s], self.k, reference, e1, e2)

    def _group_stats(
        self, groups: Callable[[slice], np.ndarray], m: int, reference: np.ndarray, e1: int, e2: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts, fixed-point sums and second moments about ``reference`` (m, d) of ``m`` groups of the points.

        ``groups(block)`` gives each point of a block its group; each block's float sums are
        rounded to the grids (2**-e1, 2**-e2) before they are added, so the result does not
        depend on how the blocks are spread over shards.
        """
        d = self.x.shape[1]
        counts = np.zeros(m, np.int64)
        sums = np.zeros((m, d), np.int64)
        second = np.zeros((m, d, d), np.int64)
        for _, s in self._blocks():
            group = groups(s)
            cnt = np.bincount(group, minlength=m)
            order = np.argsort(group, kind="stable")
            bounds = np.concatenate(([0], np.cumsum(cnt)))
            xb = self.x[s][order]
            bs, b2 = np.zeros((m, d)), np.zeros((m, d, d))
            for j in np.flatnonzero(cnt):  # one BLAS call on each group's rows of the block
                rows = xb[bounds[j] : bounds[j + 1]] - reference[j]
                bs[j] = rows.sum(axis=0)
                b2[j] = rows.T @ rows
            counts += cnt
            sums += to_fixed(bs, e1)
            second += to_fixed(b2, e2)
        return counts, sums, second

    def split_stats(self, centres: np.ndarray, e1: int, e2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Statistics per (class, side) of every class's 2-means split at ``centres`` (K, 2, d) (sharded moves).

        Group ``2 k + side`` holds the points of class k nearer its centre ``side``.

        Returns
        -------
        counts : numpy.ndarray, shape (2K,), int64
        sums : numpy.ndarray, shape (2K, d), int64: fixed-point sum of x - its group's centre (grid 2**-e1)
        second : numpy.ndarray, shape (2K, d, d), int64: fixed-point outer products about it (grid 2**-e2)
        """
        from actors.shard_moves import split_side

        assert self.labels is not None
        labels, x = self.labels, self.x
        m = 2 * self.k
        reference = centres.reshape(m, x.shape[1])
        return self._group_stats(lambda s: 2 * labels[s] + split_side(x[s], labels[s], centres), m, reference, e1, e2)

    def apply_move(self, i: int, j: int, s: int, centres: np.ndarray) -> None:
        """Merge class j into i and split class s at ``centres`` (2, d): its points nearer the second take j."""
        assert self.labels is not None
        self.labels = _merge_split(self.labels, self.x, i, j, s, centres)

    # -- sequence-guided moves (actors.shard_sequence): every block its own chain ---------------------------
    def drop_candidates(self, keep_base: bool = True) -> None:
        """Forget the search's candidate labellings and their chain fits (the base fit too unless ``keep_base``)."""
        base = getattr(self, "fits", {}).get("base") if keep_base else None
        self.cands: dict[Any, np.ndarray] = {}
        self.fits: dict[Any, tuple[np.ndarray, np.ndarray]] = {} if base is None else {"base": base}
        self.contexts: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # view -> (base posterior, its context)

    def _chain_blocks(self) -> list[tuple[slice, np.ndarray]]:
        """Each block's slice and the lengths of its sequences (:func:`actors.shard_chain.block_lengths`)."""
        n = self.x.shape[0]
        starts = np.zeros(n, dtype=bool) if self.seq_starts is None else self.seq_starts
        return [(s, shard_chain.block_lengths(starts[s])) for _, s in self._blocks()]

    def _chain_stats(self, w: np.ndarray, centre: np.ndarray, e0: int, e1: int, e2: int) -> list[np.ndarray]:
        """Pair counts, first-point sums, soft counts, sums and second moments of memberships ``w``, fixed-point."""
        parts = []
        for s, lengths in self._chain_blocks():
            pairs, first = shard_chain.start_counts(w[s], lengths, e0)
            parts.append((pairs, first, *shard_chain.soft_stats(self.x[s], w[s], centre, e0, e1, e2)))
        if not parts:
            k, d = self.k, self.x.shape[1]
            z = np.zeros
            return [z((k, k), np.int64), z(k, np.int64), z(k, np.int64), z((k, d), np.int64), z((k, d, d), np.int64)]
        return [fixed_sum([p[i] for p in parts]) for i in range(5)]

    def label_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """First labels (K,) and within-sequence label pairs (K, K) of every chain block, int64 (exact to reduce)."""
        assert self.labels is not None
        first, pairs = np.zeros(self.k, np.int64), np.zeros((self.k, self.k), np.int64)
        for s, lengths in self._chain_blocks():
            f, p = mm_core.label_counts(self.labels[s], self.k, lengths)
            first, pairs = first + f, pairs + p
        return first, pairs

    def chain_start(self, key: Any, centre: np.ndarray, e0: int, e1: int, e2: int) -> list[np.ndarray]:
        """Start the chain fit of labelling ``key`` ("base": the labels) from its one-hot memberships.

        Returns :meth:`_chain_stats`: (K, K), (K,), (K,), (K, d), (K, d, d) int64.
        """
        labels = self.labels if key == "base" else self.cands[key]
        assert labels is not None
        return self._chain_stats(np.eye(self.k)[labels], centre, e0, e1, e2)

    def chain_step(
        self,
        key: Any,
        centre: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
        trans: np.ndarray,
        initial: np.ndarray,
        emission_weight: float,
        last: bool,
        keep: bool,
        e0: int,
        e1: int,
        e2: int,
    ) -> tuple[Any, ...]:
        """One E-step of labelling ``key``'s chain on every block; the blocks' log-likelihood summed exactly.

        Returns (exact log-likelihood, :meth:`_chain_stats` of the new memberships...) or, when ``last``,
        (exact log-likelihood,) and keeps the posterior and the message when ``keep``.
        """
        n, forward_only = self.x.shape[0], last and not keep
        total = 0
        post, message = (None, None) if forward_only else (np.empty((n, self.k)), np.empty((n, self.k)))
        parts = []
        for s, lengths in self._chain_blocks():
            fb = shard_chain.block_chain(
                self.x[s], lengths, means, prec_chol, trans, initial, emission_weight, forward_only
            )
            if isinstance(fb, float):
                total += shard_chain.exact(fb)
                continue
            assert post is not None and message is not None
            total += shard_chain.exact(fb.log_likelihood)
            post[s], message[s] = fb.posterior, fb.prior
            if not last:  # the M-step's statistics: the pairwise marginals and the new memberships
                first = shard_chain.first_sums(fb.posterior, lengths, e0)
                stats = shard_chain.soft_stats(self.x[s], fb.posterior, centre, e0, e1, e2)
                parts.append((to_fixed(fb.pair_counts, e0), first, *stats))
        if last:
            if post is not None and message is not None:
                self.fits[key] = (post, message)
            return (total,)
        if not parts:
            assert post is not None
            return (total, *self._chain_stats(post, centre, e0, e1, e2))
        return (total, *[fixed_sum([p[i] for p in parts]) for i in range(5)])

    def _context(self, view: str) -> np.ndarray:
        """Context features (n, K or 2K) from the base fit's posteriors, within each block's sequences."""
        post = self.fits["base"][0]
        cached = self.contexts.get(view)
        if cached is not None and cached[0] is post:  # the same base fit: the same features
            return cached[1]
        parts = [shard_chain.context(post[s], lengths, view) for s, lengths in self._chain_blocks()]
        f = np.concatenate(parts) if parts else np.zeros((0, (2 if view == "both" else 1) * self.k))
        self.contexts[view] = (post, f)
        return f

    def context_moments(self, view: str, e0: int, e1: int, e2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class and per pair of classes, counts (G,), sums (G, D), second moments (G, D, D) of the context."""
        assert self.labels is not None
        f = self._context(view)
        parts = [shard_chain.group_moments(f[s], self.labels[s], self.k, e0, e1, e2) for _, s in self._blocks()]
        if not parts:
            m, dim = self.k * (self.k + 1) // 2, f.shape[1]
            return np.zeros(m, np.int64), np.zeros((m, dim), np.int64), np.zeros((m, dim, dim), np.int64)
        return tuple(fixed_sum([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    def context_split(self, view: str, centres: np.ndarray, e0: int, e1: int) -> tuple[np.ndarray, ...]:
        """:func:`actors.shard_chain.group_split_stats` of the context at ``centres`` (G, 2, D), all blocks."""
        assert self.labels is not None
        f = self._context(view)
        parts = [
            shard_chain.group_split_stats(f[s], self.labels[s], self.k, centres, e0, e1) for _, s in self._blocks()
        ]
        if not parts:
            m, dim = centres.shape[0], centres.shape[2]
            z = np.zeros
            return z((m, 2), np.int64), z((m, 2, dim), np.int64), z((m, 2), np.int64), z((m, 2), np.int64)
        return tuple(fixed_sum([p[i] for p in parts]) for i in range(4))

    def make_candidate(self, cid: int, spec: tuple[Any, ...]) -> None:
        """Candidate labelling ``cid`` made from the labels by ``spec`` (:mod:`actors.shard_sequence`).

        ``("repartition", view, i, j, centres (2, D), flip)``: the points of i and j nearer
        ``centres[1]`` by context take j (i when ``flip``), the others i (j);
        ``("merge", view, i, j, s, centres (2, D))``: j joins i, s's points nearer ``centres[1]`` take j;
        ``("latent", i, j, s, centres (2, d))``: the same by the latents (:meth:`apply_move`).
        """
        assert self.labels is not None
        lab, kind = self.labels, spec[0]
        if kind == "latent":
            _, i, j, s, centres = spec
            self.cands[cid] = _merge_split(lab, self.x, i, j, s, centres)
            return
        f = self._context(spec[1])
        new = lab.copy()
        if kind == "repartition":
            _, _, i, j, centres, flip = spec
            rows = np.flatnonzero((lab == i) | (lab == j))
            side = shard_chain.nearer_second(f[rows], np.broadcast_to(centres, (rows.shape[0], *centres.shape)))
            new[rows] = np.where(side, i, j) if flip else np.where(side, j, i)
        else:
            _, _, i, j, s, centres = spec
            rows = np.flatnonzero(lab == s)
            side = shard_chain.nearer_second(f[rows], np.broadcast_to(centres, (rows.shape[0], *centres.shape)))
            new[lab == j] = i
            new[rows[side]] = j
        self.cands[cid] = new

    def make_candidates(self, specs: list[tuple[Any, ...]]) -> None:
        """:meth:`make_candidate` for every spec, candidate ``i`` from ``specs[i]`` (one round trip for all)."""
        for cid, spec in enumerate(specs):
            self.make_candidate(cid, spec)

    def adopt(self, cid: int) -> None:
        """Take the labels candidate ``cid``'s fitted chain assigns (its posterior's argmax); forget the rest."""
        labels = np.argmax(self.fits[cid][0], axis=1)
        self.drop_candidates(keep_base=False)
        self.labels = labels

    def use_chain_prior(self, force: bool) -> None:
        """The base chain's message as the sweeps' prior, when ``force`` or when the MM sent none."""
        if force or self.log_bias is None:
            self.log_bias = gmm_core.log_prior(self.fits["base"][1])
        self.drop_candidates(keep_base=False)

    def _log_weights(self, s: slice, means: np.ndarray, prec_chol: np.ndarray, log_pi: np.ndarray) -> np.ndarray:
        log_w = gmm_core.gaussian_log_likelihood(self.x[s], means, prec_chol) + log_pi[None, :]
        if self.log_bias is not None:
            log_w += self.log_bias[s]
        return log_w

    def sweep(
        self,
        round: int,
        sweep: int,
        means: np.ndarray,
        prec_chol: np.ndarray,
        log_pi: np.ndarray,
        keep: bool,
        e1: int,
        e2: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw every label given the parameters, add P(class) to the running average when ``keep``.

        Returns :meth:`class_stats` of the new labels about ``means``.
        """
        assert self.labels is not None
        if self.probs is None:
            self.probs = np.zeros((self.x.shape[0], self.k))
        for first, s in self._blocks():
            p = gmm_core.normalise_log(self._log_weights(s, means, prec_chol, log_pi))
            if keep:
                self.probs[s] += p
            cdf = np.cumsum(p, axis=1)
            u = block_uniforms(self.key, round, sweep, first, p.shape[0])
            self.labels[s] = np.minimum((u[:, None] >= cdf).sum(axis=1), self.k - 1)
        return self.class_stats(means, e1, e2)

    def finish(self, means: np.ndarray, prec_chol: np.ndarray, kept: int) -> np.ndarray:
        """Average the kept P(class), the emissions under the point estimate; returns the assigned sizes (K,)."""
        assert self.probs is not None
        self.probs /= kept
        self.log_likelihood = np.empty_like(self.probs)
        for _, s in self._blocks():
            self.log_likelihood[s] = gmm_core.gaussian_log_likelihood(self.x[s], means, prec_chol)
        self.assigned = np.argmax(self.probs, axis=1)
        return np.bincount(self.assigned, minlength=self.k)

    def posteriors(self) -> tuple[np.ndarray, np.ndarray]:
        """What goes up to the MM shard: probs and log-likelihoods, each (n, K)."""
        assert self.probs is not None and self.log_likelihood is not None
        return self.probs, self.log_likelihood

    def result(self) -> dict[str, np.ndarray]:
        """This shard's labels, probs and log-likelihoods (tests; never gathered in a run)."""
        assert self.labels is not None and self.probs is not None and self.log_likelihood is not None
        return {"labels": self.labels.copy(), "probs": self.probs.copy(), "log_likelihood": self.log_likelihood.copy()}

    def reset_average(self) -> None:
        self.probs = None


def _merge_split(labels: np.ndarray, x: np.ndarray, i: int, j: int, s: int, centres: np.ndarray) -> np.ndarray:
    """New labels (n,): class j merged into i, class s's points nearer ``centres[1]`` (2, d) moved to j."""
    from actors.shard_moves import split_side

    lab = labels.copy()
    in_s = np.flatnonzero(labels == s)
    side = split_side(x[in_s], np.zeros(in_s.shape[0], np.int64), centres[None])
    lab[labels == j] = i
    lab[in_s[side]] = j
    return lab


def _reduce(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return tuple(fixed_sum([p[i] for p in parts]) for i in range(len(parts[0])))


class ShardedGMM:
    """Coordinator of a sharded mixture: reduces the shards' statistics and samples the parameters.

    Parameters
    ----------
    config : GMMConfig
    seed : numpy.random.SeedSequence
        The module's seed: its first child seeds the coordinator's generator, its
        second the shards' Philox key (:attr:`key`).
    """

    def __init__(
        self, config: GMMConfig, seed: np.random.SeedSequence, moves: bool = False, sequence: bool = False
    ) -> None:
        self.config = config
        self.moves = bool(moves)  # merge-and-split moves before the sweeps (actors.shard_moves), when mixture_moves > 0
        # with moves and a Markov model above: the sequence-guided moves instead (actors.shard_sequence)
        self.sequence = bool(sequence)
        self.last_moves: list[str] = []
        self.last_evidence: float | None = None  # the last update's sequence evidence (nats), when tested
        coord, draws = seed.spawn(2)
        self.rng = numpy_generator(coord)
        self.key = philox_key(draws)
        self.reference: np.ndarray | None = None

    def _moments(self, shards: Shards, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Mean (d,), covariance (d, d) (ddof 1) and max |x| of all points, from the shards."""
        maxabs = max(shards.map("extent"))
        e1 = grid_exponent(n * max(maxabs, 1e-12))
        mean = from_fixed(fixed_sum(shards.map("moment_sums", e1)), e1) / n
        e2 = grid_exponent(n * (maxabs + float(np.abs(mean).max())) ** 2 + 1e-300)
        cov = from_fixed(fixed_sum(shards.map("centred_moments", mean, e2)), e2) / max(n - 1, 1)
        return mean, cov, maxabs

    def _prior(self, mean: np.ndarray, cov: np.ndarray) -> gmm_core.NIWPrior:
        cfg, d = self.config, mean.shape[0]
        if cfg.prior_covariance == "data":
            floor = 1e-6 * max(float(np.trace(cov)) / d, 1e-12)  # as gmm_core.data_covariance
            base = 0.5 * (cov + cov.T) + floor * np.eye(d)
        else:
            base = np.eye(d)
        return gmm_core.NIWPrior(
            mean=mean,
            kappa=float(cfg.prior_kappa),
            dof=float(d + 1.0 + cfg.covariance_strength),
            scale=base * float(cfg.prior_scale * cfg.covariance_strength),
        )

    def _initial(self, shards: Shards, n: int, round: int) -> None:
        k = self.config.n_components
        if self.config.init != "kmeans++":
            shards.map("init_labels", None, round)
            return
        stride = max(1, -(-n // INIT_SAMPLE))
        rows = np.concatenate(shards.map("sample_rows", stride))
        labels = gmm_core.kmeans_plus_plus(rows, k, self.rng)
        centres = np.array(
            [
                rows[labels == j].mean(axis=0) if (labels == j).any() else rows[self.rng.integers(len(rows))]
                for j in range(k)
            ]
        )
        shards.map("init_labels", centres, round)

    def update(self, shards: Shards, n: int, round: int) -> dict[str, Any]:
        """Run ``n_sweeps`` sweeps over the shards (their MM prior already set on them).

        Parameters
        ----------
        shards : Shards
            :class:`GMMShard` objects holding the round's latents, in global order.
        n : int
            Total number of points N.
        round : int

        Returns
        -------
        dict
            ``class_means`` (K, d), ``counts`` (K,), ``weights`` (K,), ``covariances`` (K, d, d),
            ``sizes`` (K,) of the assigned classes, ``seconds``: everything reduced, nothing per point.
        """
        begin = time.perf_counter()
        cfg, k = self.config, self.config.n_components
        if k > n:
            raise ValueError(f"n_components should be at most the number of points {n}, got {k}")
        mean, cov, maxabs = self._moments(shards, n)
        centre, spread = np.zeros_like(mean), np.ones_like(mean)
        if cfg.standardise:
            centre, spread = mean, np.sqrt(np.diag(cov) * (n - 1) / n) + 1e-12
            shards.map("scale", centre, spread)
            cov = cov / np.outer(spread, spread)
            mean, maxabs = np.zeros_like(mean), max(shards.map("extent"))
        prior = self._prior(mean, cov)
        if not all(shards.map("has_labels")):
            self._initial(shards, n, round)

        def exps(reference: np.ndarray) -> tuple[int, int]:
            far = maxabs + float(np.abs(reference).max())
            return grid_exponent(n * far), grid_exponent(n * far * far)

        self.last_moves = []
        sequence = self.sequence
        if self.moves and sequence and cfg.sequence_test:  # as GMMWorker.update: the sequence only where labels show it
            first, pairs = _reduce(shards.map("label_counts"))
            self.last_evidence = mm_core.evidence_from_counts(first, pairs)
            sequence = self.last_evidence > 0.0
            if not sequence:
                shards.map("set_prior", None)
        if self.moves and sequence:
            if cfg.sequence_moves > 0:
                from actors import shard_sequence

                self.last_moves = shard_sequence.search(shards, prior, cfg, n, exps)
                shards.map("use_chain_prior", bool(self.last_moves))  # as GMMWorker._sequence_step
        elif self.moves and cfg.mixture_moves > 0:
            from actors import shard_moves

            self.last_moves = shard_moves.search(
                shards,
                prior,
                k,
                cfg.mixture_moves,
                cfg.mixture_min_gain,
                cfg.weight_concentration,
                exps,
            )
            for move in self.last_moves:
                log.info("sharded gmm round %d: move %s", round, move)
        shards.map("reset_average")
        ref = np.broadcast_to(mean, (k, mean.shape[0])).copy() if self.reference is None else self.reference

        e1, e2 = exps(ref)
        stats = _reduce(shards.map("class_stats", ref, e1, e2))
        keep_from = min(int(cfg.n_sweeps * 0.5), cfg.n_sweeps - 1)
        for sweep in range(cfg.n_sweeps):
            post = posterior_from_stats(prior, stats, ref, e1, e2)
            log_pi = np.log(self.rng.dirichlet(post.counts + cfg.weight_concentration))
            means, prec_chol = gmm_core.sample_parameters(post, self.rng)
            ref = means
            e1, e2 = exps(ref)
            stats = _reduce(shards.map("sweep", round, sweep, means, prec_chol, log_pi, sweep >= keep_from, e1, e2))
        post = posterior_from_stats(prior, stats, ref, e1, e2)
        self.reference = post.mean.copy()
        means, prec_chol = gmm_core.point_estimate(post)
        sizes = fixed_sum(shards.map("finish", means, prec_chol, cfg.n_sweeps - keep_from))
        seconds = time.perf_counter() - begin
        log.info("sharded gmm round %d: %d shards, %d sweeps, %.3f s", round, shards.n_shards, cfg.n_sweeps, seconds)
        return {
            "class_means": post.mean * spread + centre,
            "counts": post.counts,
            "weights": (post.counts + cfg.weight_concentration) / (n + k * cfg.weight_concentration),
            "covariances": post.mean_covariance() * np.outer(spread, spread)[None],
            "sizes": sizes,
            "seconds": seconds,
        }


def local_shards(
    x: np.ndarray,
    n_shards: int,
    n_classes: int,
    key: np.ndarray,
    block: int = BLOCK,
    lengths: np.ndarray | None = None,
) -> list[GMMShard]:
    """Cut the latents (N, d) into ``n_shards`` :class:`GMMShard` objects in this process (sequences of ``lengths``)."""
    from actors.mm_core import sequence_starts
    from actors.shard_core import shard_ranges

    starts = sequence_starts(lengths, x.shape[0])
    return [
        GMMShard(x[a:b], a, n_classes, key, block, starts[a:b]) for a, b in shard_ranges(x.shape[0], n_shards, block)
    ]
