"""The GMM module (Serket-style constructor) and its worker."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors import gmm_core, mixture_moves, mm_core, sequence_core
from actors.config import GMMConfig
from actors.module import Edge, Module, as_labels
from actors.scoring import accuracy, best_matching
from actors.seeding import generator_state_json, numpy_generator, set_generator_state
from actors.serket_text import export_text
from actors.state import WorkerState
from messages import ClassPosteriors, ClassPrior, Latents, ObservationData, PriorMeans
from messages.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)


class GMM(Module):
    """Bayesian Gaussian mixture classifying the latent vectors without labels.

    Parameters
    ----------
    K : int
        Number of classes (Serket's first argument); alias ``n_components``.
    itr : int, optional
        Serket's name for ``n_sweeps``.
    category : array_like, shape (N,), optional
        True labels, used only to score accuracy (never by the model).
    name, mode : str
    **options
        Any other :class:`actors.config.GMMConfig` field.
    """

    kind = "gmm"
    below_kinds = ("vae", "observation")

    def __init__(
        self,
        K: int = 10,
        itr: int | None = None,
        category: Any = None,
        name: str = "gmm",
        mode: str = "learn",
        **options: Any,
    ) -> None:
        super().__init__(name, mode)
        if itr is not None:
            options.setdefault("n_sweeps", itr)
        options.setdefault("n_components", K)
        try:
            self.config = GMMConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"unknown GMM option: {exc}") from None
        self.category = None if category is None else np.asarray(category)

    def labels(self) -> np.ndarray | None:
        """Validated labels (N,) or None."""
        if self.category is None:
            return None
        return as_labels(self.category, self.n_points(), "category (labels)")

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def worker_spec(
        self, name: str, above: str | None, below: str | None, seed: np.random.SeedSequence, num_threads: int | None
    ) -> tuple[type, tuple[Any, ...]]:
        sequence = any(m.kind == "mm" for m in self.above)
        return GMMWorker, (self.config, name, above or name, below or name, seed, sequence)

    def inputs(self) -> dict[str, Edge]:
        below = self.below[0]  # a VAE's latents, or the observed data itself
        edges: dict[str, Edge] = {"latents": (below, "data" if below.kind == "observation" else "latents")}
        if self.above:
            edges["class_prior"] = (self.above[0], "class_prior")
        return edges

    def output_names(self) -> tuple[str, ...]:
        return ("posteriors", "prior_means", "report")

    def export(self, directory: Path, outputs: dict[str, Any], labels: np.ndarray | None) -> dict[str, Any]:
        post: ClassPosteriors = outputs["posteriors"]
        report = outputs["report"]
        classes = np.argmax(post.probs, axis=1)
        scalars: dict[str, Any] = {"cluster_sizes": np.bincount(classes, minlength=post.n_classes).tolist()}
        acc = None
        if labels is not None:
            acc = accuracy(classes, labels)
            scalars["accuracy"] = acc
            scalars["matching"] = best_matching(classes, labels).tolist()
        export_text(
            directory, self.mode, classes=classes, probs=post.probs, class_means=report["class_means"], accuracy=acc
        )
        return scalars


class GMMWorker:
    """Gibbs-samples the mixture; becomes a Ray actor.

    The labels of the last sweep are kept between rounds, so cluster numbers
    stay stable (re-initialising would renumber them and break the MM).

    With ``sequence`` (a Markov model sits above, so the points form a
    sequence) each update first searches for split/merge moves that raise the
    sequence log-likelihood (:func:`actors.sequence_core.search`).  The sweeps
    then use the MM's message, or, when a move renumbered clusters (or before
    the MM's first message), the prior of the chain the search fitted; with
    ``chain_refresh`` that prior follows the sampler's labels
    (:class:`actors.sequence_core.ChainPrior`).  Only clusters a move touches
    change number; the MM re-learns its transitions from the posteriors sent up.

    Without ``sequence`` each update first searches for merge-and-split moves
    that raise the mixture's marginal likelihood
    (:func:`actors.mixture_moves.search`, ``mixture_moves``).

    With ``sequence`` and ``sequence_test`` (the default), an update whose
    starting labels show no chain (:func:`actors.mm_core.sequence_evidence` not
    positive) is the update without ``sequence``: the MM's message is not used.
    """

    def __init__(
        self, config: GMMConfig, name: str, above: str, below: str, seed: np.random.SeedSequence, sequence: bool = False
    ) -> None:
        self.config = config
        self.name, self.above, self.below = name, above, below
        self.sequence = bool(sequence)
        self.rng = numpy_generator(seed)
        self.labels: np.ndarray | None = None
        self.mixture: gmm_core.Mixture | None = None  # the last update's parameters, in the latents' units

    def _initial_labels(self, x: np.ndarray, prior: gmm_core.NIWPrior, lengths: np.ndarray | None = None) -> np.ndarray:
        """Labels (N,) of the first update: the best of ``init_restarts`` k-means++ starts by the joint objective."""
        cfg = self.config
        k = cfg.n_components
        if cfg.init != "kmeans++":
            return self.rng.integers(0, k, size=x.shape[0])
        best: tuple[float, np.ndarray] | None = None
        for _ in range(cfg.init_restarts):
            labels = gmm_core.kmeans_plus_plus(x, k, self.rng)
            if cfg.init_restarts == 1:
                return labels
            if self.sequence:
                fit = sequence_core.chain_fit(
                    x,
                    np.eye(k)[labels],
                    prior,
                    cfg.chain_alpha,
                    cfg.chain_em_iterations,
                    lengths,
                    cfg.chain_emission_weight,
                )
                score, labels = fit.log_likelihood, np.argmax(fit.posterior, axis=1)
            else:
                score = mixture_moves.log_marginal(x, labels, k, prior, cfg.weight_concentration)
            if best is None or score > best[0]:
                best = (score, labels)
        assert best is not None
        return best[1]

    def _prior(self, xs: np.ndarray) -> gmm_core.NIWPrior:
        """The NIW prior of this update, from the config and the latents (N, d)."""
        cfg = self.config
        return gmm_core.mixture_prior(
            xs, cfg.prior_kappa, cfg.prior_scale, cfg.covariance_strength, cfg.prior_covariance
        )

    def _sequence_step(
        self,
        xs: np.ndarray,
        prior: gmm_core.NIWPrior,
        log_bias: np.ndarray | None,
        lengths: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, list[str], sequence_core.ChainPrior | None]:
        """Split/merge search and the chain prior for the sweeps, each sequence of ``lengths`` on its own.

        Returns
        -------
        log_bias : numpy.ndarray (N, K) or None
            Prior of the first sweeps: the MM's message, or the fitted chain's
            when a move renumbered clusters (the MM's message no longer fits).
        moves : list of str
        chain : ChainPrior or None
        """
        cfg = self.config
        assert self.labels is not None
        k = cfg.n_components
        moves: list[str] = []
        if cfg.sequence_moves > 0:
            found = sequence_core.search(
                xs,
                self.labels,
                k,
                prior,
                self.rng,
                alpha=cfg.chain_alpha,
                max_moves=cfg.sequence_moves,
                n_best=cfg.move_candidates,
                min_gain=cfg.move_min_gain,
                em_iterations=cfg.chain_em_iterations,
                lengths=lengths,
                mixture_candidates=cfg.joint_mixture_candidates,
                n_scored=cfg.moves_scored,
                emission_weight=cfg.chain_emission_weight,
                stretch_candidates=cfg.stretch_candidates,
                slow_candidates=cfg.slow_candidates,
                extend_iterations=cfg.chain_extend_iterations,
            )
            moves = found.moves
            if moves or log_bias is None:
                self.labels = found.labels
                log_bias = gmm_core.log_prior(found.fit.prior)
            trans = found.fit.transitions
        else:
            trans = mm_core.transition_matrix(mm_core.expected_counts(np.eye(k)[self.labels], lengths), cfg.chain_alpha)
        chain = sequence_core.ChainPrior(xs, prior, trans, cfg.chain_alpha, lengths) if cfg.chain_refresh > 0 else None
        return log_bias, moves, chain

    def update(
        self, round: int, latents: Latents | ObservationData, class_prior: ClassPrior | None = None
    ) -> tuple[ClassPosteriors, PriorMeans, dict[str, Any]]:
        """Run ``n_sweeps`` Gibbs sweeps with the MM's message as a per-point prior.

        Returns
        -------
        posteriors : ClassPosteriors, probs and log_likelihood (N, K), to the MM
        prior_means : PriorMeans, means (N, d): each point's class mean, to the VAE
        report : dict with ``labels`` (N,), ``class_means`` (K, d), ``counts`` (K,), ``weights`` (K,)
        """
        start = time.perf_counter()
        x = latents.z if isinstance(latents, Latents) else latents.data
        lengths = latents.lengths
        k = self.config.n_components
        if k > x.shape[0]:
            raise ConfigError(f"n_components should be at most the number of points {x.shape[0]}, got {k}")
        if self.config.standardise:
            centre, spread = x.mean(axis=0), x.std(axis=0) + 1e-12
            xs = (x - centre) / spread
        else:
            centre, spread, xs = np.zeros(x.shape[1]), np.ones(x.shape[1]), x
        prior = self._prior(xs)
        if self.labels is None or self.labels.shape[0] != x.shape[0]:
            self.labels = self._initial_labels(xs, prior, lengths)
        evidence = None
        sequence = self.sequence
        if sequence and self.config.sequence_test:
            evidence = mm_core.sequence_evidence(self.labels, k, lengths)
            sequence = evidence > 0.0
        log_bias = None
        if sequence and class_prior is not None and self.config.use_class_prior:
            log_bias = gmm_core.log_prior(class_prior.probs)
        moves: list[str] = []
        chain = None
        if sequence:
            log_bias, moves, chain = self._sequence_step(xs, prior, log_bias, lengths)
        elif self.config.mixture_moves > 0:
            found = mixture_moves.search(
                xs,
                self.labels,
                k,
                prior,
                self.rng,
                concentration=self.config.weight_concentration,
                max_moves=self.config.mixture_moves,
                n_best=self.config.mixture_move_candidates,
                min_gain=self.config.mixture_min_gain,
            )
            self.labels, moves = found.labels, found.moves
        res = gmm_core.gibbs_sweeps(
            xs,
            self.labels,
            k,
            prior,
            self.rng,
            self.config.n_sweeps,
            log_bias,
            self.config.weight_concentration,
            refresh=chain,
            refresh_every=self.config.chain_refresh,
        )
        self.labels = res.labels
        class_means = res.class_means * spread + centre
        assigned = np.argmax(res.probs, axis=1)
        seconds = time.perf_counter() - start
        log.info(
            "%s round %d: %d sweeps, %d moves, sizes %s, %.3f s%s",
            self.name,
            round,
            self.config.n_sweeps,
            len(moves),
            res.counts.astype(int).tolist(),
            seconds,
            "" if evidence is None else f", sequence evidence {evidence:.1f} nats ({'used' if sequence else 'unused'})",
        )
        for move in moves:
            log.info("%s round %d: move %s", self.name, round, move)
        post = ClassPosteriors(
            sender=self.name,
            receiver=self.above,
            round=round,
            probs=res.probs,
            log_likelihood=res.log_likelihood,
            lengths=lengths,
        )
        means = PriorMeans(
            sender=self.name, receiver=self.below, round=round, means=class_means[assigned], lengths=lengths
        )
        self.mixture = gmm_core.Mixture(class_means, res.covariances * np.outer(spread, spread)[None], res.weights)
        report = {
            "labels": res.labels,
            "class_means": class_means,
            "counts": res.counts,
            "weights": res.weights,
            "covariances": self.mixture.covariances,
            "seconds": seconds,
            "moves": moves,
            "sequence_used": bool(sequence),
        }
        if evidence is not None:
            report["sequence_evidence"] = evidence
        return post, means, report

    def classify(self, z: np.ndarray, class_prior: np.ndarray | None = None) -> gmm_core.Classified:
        """Class posteriors of points under the learned mixture, without sampling or learning.

        P(k | z_n) ∝ w_k N(z_n | mu_k, Sigma_k), times ``class_prior[n, k]`` when given
        (the MM's message), with the parameters of the last update (or of
        :meth:`load_mixture`).  Each Gibbs sweep of :meth:`update` weighs the classes
        with the same :func:`actors.gmm_core.posterior_log_weights`, under that
        sweep's drawn parameters.

        Parameters
        ----------
        z : numpy.ndarray, shape (N, d)
        class_prior : numpy.ndarray, shape (N, K), optional

        Returns
        -------
        Classified
            ``probs`` (N, K) and ``log_likelihood`` (N, K).

        Raises
        ------
        ConfigError
            The worker has no learned mixture yet.
        DataError
            ``z`` does not have the learned mixture's dimension.
        """
        if self.mixture is None:
            raise ConfigError(f"{self.name} should have learned or loaded a mixture before it classifies, got none")
        dim = self.mixture.means.shape[1]
        if z.ndim != 2 or z.shape[1] != dim:
            raise DataError(f"data should have {dim} features like the learned GMM's input, got {z.shape[-1]}")
        return self.mixture.classify(z, None if class_prior is None else gmm_core.log_prior(class_prior))

    def load_mixture(self, report: dict[str, np.ndarray]) -> None:
        """Take the learned parameters from a saved update's report arrays.

        ``report`` holds ``class_means`` (K, d), ``covariances`` (K, d, d) and ``weights`` (K,).

        Raises
        ------
        CheckpointError
            One of them is missing.
        """
        missing = [k for k in ("class_means", "covariances", "weights") if k not in report]
        if missing:
            raise CheckpointError(f"{self.name}'s saved report should hold {missing}, got only {sorted(report)}")
        self.mixture = gmm_core.Mixture(report["class_means"], report["covariances"], report["weights"])

    def get_state(self) -> WorkerState:
        """Everything needed to continue: the sampler's labels and RNG state."""
        arrays = {} if self.labels is None else {"labels": self.labels}
        return WorkerState(arrays=arrays, meta={"rng": generator_state_json(self.rng)})

    def set_state(self, state: WorkerState) -> None:
        """Restore what :meth:`get_state` returned.

        Raises
        ------
        CheckpointError
            The state lacks the RNG state.
        """
        state.require(self.name, meta=("rng",))
        self.labels = state.arrays.get("labels")
        set_generator_state(self.rng, state.meta["rng"])
