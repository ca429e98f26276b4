"""The message vocabulary: one frozen class per kind of edge in the graph.

=====================  ==============  ==========================================
class                  edge            arrays (N points)
=====================  ==============  ==========================================
``ObservationData``    obs -> VAE/GMM  ``data`` (N, D) float
``Latents``            VAE -> GMM      ``z`` (N, d) float
``ClassPosteriors``    GMM -> MM       ``probs`` (N, K), ``log_likelihood`` (N, K)
``ClassPrior``         MM -> GMM       ``probs`` (N, K)
``PriorMeans``         GMM -> VAE      ``means`` (N, d) float
``Reconstruction``     VAE -> obs      ``x_hat`` (N, D) float
=====================  ==============  ==========================================
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from messages.base import Message, check_array, check_probabilities
from messages.errors import MessageError


@dataclasses.dataclass(frozen=True)
class ObservationData(Message):
    """Observed data sent up from an observation.

    Attributes
    ----------
    data : numpy.ndarray, shape (N, D), float
        One row per data point.
    """

    data: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "observation_data"
    array_fields: ClassVar[tuple[str, ...]] = ("data",)

    def _validate(self) -> None:
        check_array("data", self.data, ndim=2)


@dataclasses.dataclass(frozen=True)
class Latents(Message):
    """Latent vectors sent from the VAE to the module above it.

    Attributes
    ----------
    z : numpy.ndarray, shape (N, d), float
        One latent vector per data point.
    """

    z: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "latents"
    array_fields: ClassVar[tuple[str, ...]] = ("z",)

    def _validate(self) -> None:
        check_array("z", self.z, ndim=2)


@dataclasses.dataclass(frozen=True)
class ClassPosteriors(Message):
    """Class posteriors of every point, sent from the GMM up to the MM.

    Attributes
    ----------
    probs : numpy.ndarray, shape (N, K), float
        P(class k | point n), including any prior the GMM received; rows sum to one.
    log_likelihood : numpy.ndarray, shape (N, K), float, optional
        log p(point n | class k) under the GMM's current parameters (the
        emissions a sequence model needs); ``None`` when not available.
    """

    probs: np.ndarray = None  # type: ignore[assignment]
    log_likelihood: np.ndarray | None = None
    kind: ClassVar[str] = "class_posteriors"
    array_fields: ClassVar[tuple[str, ...]] = ("probs", "log_likelihood")
    optional_fields: ClassVar[tuple[str, ...]] = ("log_likelihood",)

    def _validate(self) -> None:
        check_array("probs", self.probs, ndim=2)
        check_probabilities("probs", self.probs)
        if self.log_likelihood is not None:
            check_array("log_likelihood", self.log_likelihood, ndim=2)
            if self.log_likelihood.shape != self.probs.shape:
                raise MessageError(
                    f"log_likelihood should have shape {self.probs.shape} like probs, got {self.log_likelihood.shape}"
                )

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return int(self.probs.shape[1])


@dataclasses.dataclass(frozen=True)
class ClassPrior(Message):
    """Transition-aware class prior of every point, sent from the MM down to the GMM.

    Attributes
    ----------
    probs : numpy.ndarray, shape (N, K), float
        Prior probability of class k for point n given the rest of the sequence;
        rows sum to one.
    """

    probs: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "class_prior"
    array_fields: ClassVar[tuple[str, ...]] = ("probs",)

    def _validate(self) -> None:
        check_array("probs", self.probs, ndim=2)
        check_probabilities("probs", self.probs)


@dataclasses.dataclass(frozen=True)
class PriorMeans(Message):
    """Per-point prior means sent from the GMM down to the VAE.

    Attributes
    ----------
    means : numpy.ndarray, shape (N, d), float
        Mean of the class each point was assigned to.
    """

    means: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "prior_means"
    array_fields: ClassVar[tuple[str, ...]] = ("means",)

    def _validate(self) -> None:
        check_array("means", self.means, ndim=2)


@dataclasses.dataclass(frozen=True)
class Reconstruction(Message):
    """The VAE's reconstruction of the observation, sent back down to it.

    Attributes
    ----------
    x_hat : numpy.ndarray, shape (N, D), float
        Reconstructed data, one row per point.
    """

    x_hat: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "reconstruction"
    array_fields: ClassVar[tuple[str, ...]] = ("x_hat",)

    def _validate(self) -> None:
        check_array("x_hat", self.x_hat, ndim=2)
