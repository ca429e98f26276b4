"""Typed, frozen, range-checked hyperparameters of each module."""

from __future__ import annotations

import dataclasses
from typing import Any

from messages.errors import ConfigError


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} should be an integer >= {low}, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} should be an integer >= {low}, got {value}")


def _check_float(name: str, value: Any, low: float, strict: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} should be a number, got {value!r}")
    if (value <= low) if strict else (value < low):
        raise ConfigError(f"{name} should be {'>' if strict else '>='} {low}, got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} should be one of {choices}, got {value!r}")


class _Config:
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-ready)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True)
class VAEConfig(_Config):
    """Hyperparameters of the VAE.

    Attributes
    ----------
    latent_dim : int
        Size d of the latent vectors.
    epochs : int
        Passes over the data per update (Serket's ``itr``).
    batch_size : int
        Mini-batch size; a batch larger than the data is one full batch.
    kl_weight : float
        Weight of the KL term.
    reconstruction : {"bce", "mse"}
        Reconstruction loss (Serket's ``RE``); BCE needs data in [0, 1].
    learning_rate : float
        Adam's step size.
    hidden : int
        Width of the default encoder's and decoder's hidden layer.
    send : {"mean", "sample"}
        Send the mean of q(z|x) up (default; less noise for the GMM) or a draw
        from it (the original).
    warm_start : bool
        Keep weights and optimiser state across rounds (the TensorFlow original)
        instead of rebuilding the networks every round (the PyTorch original).
    device : {"auto", "cpu", "cuda"}
        ``auto`` trains on CUDA when the process sees a GPU.
    """

    latent_dim: int = 18
    epochs: int = 200
    batch_size: int = 500
    kl_weight: float = 1.0
    reconstruction: str = "bce"
    learning_rate: float = 1e-3
    hidden: int = 128
    send: str = "mean"
    warm_start: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_int("latent_dim", self.latent_dim, 1)
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("hidden", self.hidden, 1)
        _check_float("kl_weight", self.kl_weight, 0.0, strict=False)
        _check_float("learning_rate", self.learning_rate, 0.0)
        _check_choice("reconstruction", self.reconstruction, ("bce", "mse"))
        _check_choice("send", self.send, ("mean", "sample"))
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))


@dataclasses.dataclass(frozen=True)
class GMMConfig(_Config):
    """Hyperparameters of the Bayesian Gaussian mixture.

    Attributes
    ----------
    n_components : int
        Number of classes K.
    n_sweeps : int
        Gibbs sweeps per update (Serket's ``itr``).
    prior_scale : float
        S0 = prior_scale * I, the inverse-Wishart scale.
    prior_kappa : float
        r0, the prior pseudo-count on class means.
    weight_concentration : float
        Symmetric Dirichlet concentration on the mixture weights.
    init : {"kmeans++", "random"}
        Labels of the first update: k-means++ and Lloyd on the first latents
        (default) or uniformly random (the original).
    standardise : bool
        Sample on latents scaled to unit variance per dimension, so that the
        prior scale means the same thing whatever the VAE's latent scale.
    """

    n_components: int = 10
    n_sweeps: int = 100
    prior_scale: float = 0.1
    prior_kappa: float = 1.0
    weight_concentration: float = 1.0
    init: str = "kmeans++"
    standardise: bool = False

    def __post_init__(self) -> None:
        _check_int("n_components", self.n_components, 1)
        _check_int("n_sweeps", self.n_sweeps, 1)
        _check_float("prior_scale", self.prior_scale, 0.0)
        _check_float("prior_kappa", self.prior_kappa, 0.0)
        _check_float("weight_concentration", self.weight_concentration, 0.0)
        _check_choice("init", self.init, ("kmeans++", "random"))


@dataclasses.dataclass(frozen=True)
class MMConfig(_Config):
    """Hyperparameters of the Markov model.

    Attributes
    ----------
    message : {"forward-backward", "serket"}
        The message to the GMM: exact HMM prior from the whole rest of the
        sequence (default) or the original's one-step prediction.
    counts : {"pairwise", "expected", "sampled"}
        How transitions are counted: HMM pairwise marginals (Baum-Welch),
        sum_t p_t p_{t+1}^T of the GMM's posteriors, or ``n_samples`` joint draws.
    alpha : float
        Dirichlet smoothing of each transition row.
    n_samples : int
        Draws for ``counts="sampled"`` (Serket's ``num_samp``).
    em_iterations : int
        Baum-Welch iterations of the transitions per update (``pairwise`` only).
    """

    message: str = "forward-backward"
    counts: str = "pairwise"
    alpha: float = 1.0
    n_samples: int = 100
    em_iterations: int = 10

    def __post_init__(self) -> None:
        _check_choice("message", self.message, ("forward-backward", "serket"))
        _check_choice("counts", self.counts, ("pairwise", "expected", "sampled"))
        _check_float("alpha", self.alpha, 0.0)
        _check_int("n_samples", self.n_samples, 1)
        _check_int("em_iterations", self.em_iterations, 1)
