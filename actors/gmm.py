"""The GMM module (Serket-style constructor) and its worker."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors import gmm_core
from actors.config import GMMConfig
from actors.module import Module, as_labels
from actors.scoring import accuracy, best_matching
from actors.seeding import generator_state_json, numpy_generator, set_generator_state
from messages import ClassPosteriors, ClassPrior, Latents, ObservationData, PriorMeans
from messages.errors import ConfigError

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
        K: int = 10,  # noqa: N803 - Serket's spelling
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

    def worker_spec(self, name: str, above: str | None, below: str | None, seed: np.random.SeedSequence, num_threads: int | None) -> tuple[type, tuple[Any, ...]]:
        return GMMWorker, (self.config, name, above or name, below or name, seed)

    def inbox_sources(self) -> dict[str, tuple[Module, int]]:
        sources: dict[str, tuple[Module, int]] = {"latents": (self.below[0], 0)}
        if self.above:
            sources["class_prior"] = (self.above[0], 0)
        return sources

    def output_names(self) -> tuple[str, ...]:
        return ("posteriors", "prior_means", "report")

    def export(self, directory: Path, outputs: dict[str, Any], labels: np.ndarray | None) -> dict[str, Any]:
        post: ClassPosteriors = outputs["posteriors"]
        report = outputs["report"]
        classes = np.argmax(post.probs, axis=1)
        np.savetxt(directory / f"class_{self.mode}.txt", classes, fmt="%d")
        np.savetxt(directory / f"Pdz_{self.mode}.txt", post.probs)
        np.savetxt(directory / f"mu_{self.mode}.txt", report["class_means"])
        scalars: dict[str, Any] = {"cluster_sizes": np.bincount(classes, minlength=post.n_classes).tolist()}
        if labels is not None:
            acc = accuracy(classes, labels)
            np.savetxt(directory / f"acc_{self.mode}.txt", [acc])
            scalars["accuracy"] = acc
            scalars["matching"] = best_matching(classes, labels).tolist()
        return scalars


class GMMWorker:
    """Gibbs-samples the mixture; becomes a Ray actor.

    The labels of the last sweep are kept between rounds, so cluster numbers
    stay stable (re-initialising would renumber them and break the MM).
    """

    def __init__(self, config: GMMConfig, name: str, above: str, below: str, seed: np.random.SeedSequence) -> None:
        self.config = config
        self.name, self.above, self.below = name, above, below
        self.rng = numpy_generator(seed)
        self.labels: np.ndarray | None = None

    def _initial_labels(self, x: np.ndarray) -> np.ndarray:
        k = self.config.n_components
        if self.config.init == "kmeans++":
            return gmm_core.kmeans_plus_plus(x, k, self.rng)
        return self.rng.integers(0, k, size=x.shape[0])

    def update(self, round: int, latents: Latents | ObservationData, class_prior: ClassPrior | None = None) -> tuple[ClassPosteriors, PriorMeans, dict[str, Any]]:
        """Run ``n_sweeps`` Gibbs sweeps with the MM's message as a per-point prior.

        Returns
        -------
        posteriors : ClassPosteriors, probs and log_likelihood (N, K), to the MM
        prior_means : PriorMeans, means (N, d): each point's class mean, to the VAE
        report : dict with ``labels`` (N,), ``class_means`` (K, d), ``counts`` (K,), ``weights`` (K,)
        """
        start = time.perf_counter()
        x = latents.z if isinstance(latents, Latents) else latents.data
        k = self.config.n_components
        if k > x.shape[0]:
            raise ConfigError(f"n_components should be at most the number of points {x.shape[0]}, got {k}")
        if self.config.standardise:
            centre, spread = x.mean(axis=0), x.std(axis=0) + 1e-12
            xs = (x - centre) / spread
        else:
            centre, spread, xs = np.zeros(x.shape[1]), np.ones(x.shape[1]), x
        if self.labels is None or self.labels.shape[0] != x.shape[0]:
            self.labels = self._initial_labels(xs)
        prior = gmm_core.default_prior(xs, kappa=self.config.prior_kappa, scale=self.config.prior_scale)
        log_bias = None
        if class_prior is not None:
            with np.errstate(divide="ignore"):
                log_bias = np.log(np.maximum(class_prior.probs, 1e-300))
        res = gmm_core.gibbs_sweeps(
            xs, self.labels, k, prior, self.rng, self.config.n_sweeps, log_bias,
            self.config.weight_concentration,
        )
        self.labels = res.labels
        class_means = res.class_means * spread + centre
        assigned = np.argmax(res.probs, axis=1)
        seconds = time.perf_counter() - start
        log.info("%s round %d: %d sweeps, sizes %s, %.3f s", self.name, round, self.config.n_sweeps, res.counts.astype(int).tolist(), seconds)
        post = ClassPosteriors(sender=self.name, receiver=self.above, round=round, probs=res.probs, log_likelihood=res.log_likelihood)
        means = PriorMeans(sender=self.name, receiver=self.below, round=round, means=class_means[assigned])
        report = {
            "labels": res.labels, "class_means": class_means, "counts": res.counts, "weights": res.weights,
            "covariances": res.covariances * np.outer(spread, spread)[None], "seconds": seconds,
        }
        return post, means, report

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue: the sampler's labels and RNG state."""
        arrays = {} if self.labels is None else {"labels": self.labels}
        return {"arrays": arrays, "meta": {"rng": generator_state_json(self.rng)}, "blobs": {}}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""
        self.labels = state["arrays"].get("labels")
        set_generator_state(self.rng, state["meta"]["rng"])
