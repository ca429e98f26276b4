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
    precision : {"auto", "bf16", "fp32"}
        Arithmetic of the training step.  ``"fp32"``: float32 throughout.
        ``"bf16"``: the forward pass under bfloat16 autocast (matrix products
        in bf16 accumulating in fp32; loss, gradients' accumulation, weights
        and Adam's state in fp32; the latents sent on are always encoded in
        fp32).  ``"auto"`` (default): ``"bf16"`` on a CUDA GPU that supports
        it and on a CPU with native bf16 matrix instructions (AMX or
        AVX512-BF16), ``"fp32"`` elsewhere, so results depend on the machine;
        each update records the precision it used in ``run.json``.
    step : {"auto", "manual", "autograd"}
        How the training step computes its gradients.  ``"manual"``: a
        hand-written forward and backward pass of the default networks
        (``actors.vae_core.ManualStep``: no autograd graph, buffers allocated
        once), in the resolved precision: in float32 its gradients equal
        autograd's to float32 rounding; in bf16 its matrix products are
        autocast's (bf16 inputs and results), its loss equals the autocast
        step's and its bias gradients are summed in fp32.  It needs the default
        encoder and decoder.  ``"autograd"``: torch's autograd through the
        loss, for any networks and precision.  ``"auto"`` (default):
        ``"manual"`` for the default networks, ``"autograd"`` otherwise; each
        update records the step it used in ``run.json``.
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
    precision: str = "auto"
    step: str = "auto"

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
        _check_choice("precision", self.precision, ("auto", "bf16", "fp32"))
        _check_choice("step", self.step, ("auto", "manual", "autograd"))


@dataclasses.dataclass(frozen=True)
class GMMConfig(_Config):
    """Hyperparameters of the Bayesian Gaussian mixture.

    Attributes
    ----------
    n_components : int
        Number of classes K.
    n_sweeps : int
        Gibbs sweeps per update (Serket's ``itr``).
    prior_covariance : {"data", "identity"}
        What the prior class covariance is measured against.  ``"data"``
        (default): the covariance C of the latents of this update, an
        empirical-Bayes choice (scikit-learn's ``BayesianGaussianMixture``
        centres its covariance prior on the data's covariance too), so the
        prior means the same thing whatever the scale, spread and
        correlations of the VAE's latents, and (with ``prior_scale`` < 1) a
        class is never expected to be broader than the whole data set.
        ``"identity"``: C = I, the
        original's absolute prior; a strong absolute prior collapses every
        point into one class as soon as the latents are narrower than it
        (scikit-learn's digits, briefly trained VAEs).
    prior_scale : float
        Prior mean of every class covariance, prior_scale * C (the
        inverse-Wishart scale is S0 = prior_scale * covariance_strength * C).
        The default 0.8 (scikit-learn's default is 1) expects a class to be
        a little narrower than the whole data.  Measured means over seeds
        0-4 on the tutorial's data (VAE+GMM alone / full model) and the
        embedded digits' default job: 0.8 gives 0.784 / 0.997 and 0.997;
        0.45 gave 0.793 / 0.995 but 0.988 on the digits.  The original is
        ``prior_covariance="identity"``, ``prior_scale=0.1``,
        ``covariance_strength=1``.
    covariance_strength : float
        Pseudo-points behind that prior covariance: the inverse-Wishart has
        d + 1 + covariance_strength degrees of freedom.  The original has 1
        (nu0 = d + 2).  The default 30 (10 % of a class of the tutorial's
        3000 points) pulls every class towards a common, data-relative shape,
        so that a broad class cannot swallow two digits while a third digit
        splits in two; with the weak strength 1 the marginal likelihood
        itself prefers such partitions (measured on the tutorial's latents),
        so the moves below would not help.
    prior_kappa : float
        r0, the prior pseudo-count on class means.
    weight_concentration : float
        Symmetric Dirichlet concentration on the mixture weights.
    init : {"kmeans++", "random"}
        Labels of the first update: k-means++ and Lloyd on the first latents
        (default) or uniformly random (the original).
    init_restarts : int
        k-means++ starts of the first update; the one the joint objective
        prefers is kept (with a Markov model above: the sequence
        log-likelihood of a Gaussian-emission chain fitted from it; without:
        the mixture's marginal likelihood).
    standardise : bool
        Sample on latents scaled to unit variance per dimension, so that the
        prior scale means the same thing whatever the VAE's latent scale.

    The fields below act only when no Markov model sits above the mixture;
    with one, the sequence-guided moves below take their place.  See
    :mod:`actors.mixture_moves`.

    mixture_moves : int
        Most merge-and-split moves per update (merge two clusters, split a
        third by 2-means), each kept when it raises the marginal likelihood
        log p(latents, labels) of the mixture by ``mixture_min_gain`` nats;
        0 turns them off (the plain sampler).  They run before the sweeps.
    mixture_move_candidates : int
        Candidates, ranked by their separable gain, polished and scored
        exactly per move.
    mixture_min_gain : float
        Least gain of log p(latents, labels), in nats, for a move to be taken.

    The fields below act only when a Markov model sits above the mixture (the
    points then form a sequence); see :mod:`actors.sequence_core`.

    sequence_moves : int
        Most split/merge moves per update, re-partitioning clusters by the
        classes of each point's neighbours and kept when they raise the
        sequence log-likelihood (0: none, the plain sampler).
    move_candidates : int
        Candidates of each kind (repartition, merge-and-split) proposed per move.
    move_min_gain : float
        Least gain of sequence log-likelihood, in nats, for a move to be taken.
    chain_refresh : int
        Sweeps between recomputations of the Markov chain's prior from the
        sampler's current labels during an update (0, the default: keep the
        MM's message fixed for the whole update, as the original does).  It
        helps when ``sequence_moves`` is 0; with moves it changes nothing
        measurable and costs time.
    chain_alpha : float
        Dirichlet smoothing of the transition rows the mixture fits for its
        moves and refreshed prior (sparse below 1).
    chain_em_iterations : int
        EM iterations of the chain fitted to score each candidate move.
    joint_mixture_candidates : int
        Merge-and-split moves of the mixture (as ``mixture_moves`` proposes
        them) scored among the sequence-guided moves per move, by the same
        sequence log-likelihood (0: only the context moves).
    moves_scored : int
        Of all the candidates of a move, the ones a cheap screen (one
        forward-backward pass of the candidate's labels) ranks best are fitted
        by ``chain_em_iterations`` EM iterations and compared; 0 fits every
        candidate.  Ranking by context scatter alone missed the repair of two
        clusters sharing two digits on a random chain (order seed 1: the right
        repartition ranked twelfth), so 8 candidates of each kind are screened
        and 3 fitted, about the cost of fitting 3 of each.
    chain_emission_weight : float
        Power of the Gaussian emissions in the chain that scores the moves
        (and whose prior the sweeps use after a move); 1 is the plain HMM.
        The MM's message and the sweeps keep the full emissions.  On the
        VAE's latents the plain HMM prefers splitting two similar digits (4
        and 9) by style over splitting them by digit, by ~50-200 nats that
        the sequence cannot outweigh; at 0.7 the noisy cycle on fixed
        latents went 0.861 -> 0.956 (TV 0.173 -> 0.042) with independent
        draws unchanged (0.775 / 0.774).
    chain_extend_iterations : int
        When none of the fitted candidates of a move gains ``move_min_gain``,
        the one that scored best is fitted this many EM iterations more
        (continued from its fit, stopping early once an iteration adds less
        than a nat) and taken if it then gains.  Three iterations can stop
        halfway: on a random chain (order seed 4) whose clusters 3 and 9 each
        held 7s and 9s split by style, the context repartition of the two
        scored -118 nats after 3 iterations and +152 after 10, where it
        separates 7 from 9 (97 % of the two clusters' points); 0 turns it off.
    stretch_candidates : int
        Repartitions of the pairs of clusters that pass to each other most,
        split by their latents averaged over each stretch of consecutive
        points of the pair (a run of one class, whose style changes point to
        point while the class stays), scored among the moves
        (:func:`actors.sequence_core.stretch_proposals`).  Runs of one digit
        (stay 0.6) on fixed latents, order seed 0: 0.846 -> 0.873 (TV 0.148
        -> 0.119); independent draws 0.775 -> 0.772, the noisy cycle 0.956 ->
        0.954.
    slow_candidates : int
        When no move above gains: repartitions of the pairs of clusters that
        pass to each other most, and merge-and-splits of the clusters whose
        consecutive points share a direction most, split along the direction
        consecutive points share (the class, not the style), scored by a
        chain whose classes each emit from two Gaussians and taken only when
        the sequence explains the gain (:func:`actors.sequence_core.search`);
        0 turns them off.
    sequence_test : bool
        Use the sequence (the Markov model's message and the moves above)
        only while the mixture's labels show it: at the start of every update
        the log Bayes factor of a Markov chain over the labels against
        independent draws (:func:`actors.mm_core.sequence_evidence`) must be
        positive; otherwise the update is exactly the one without a Markov
        model above (merge-and-split moves by the mixture's likelihood, no
        message), so data without order loses nothing to the sequence
        machinery (the default).  False: always use the sequence.
    use_class_prior : bool
        Add the Markov model's message to every point's class weights (the
        default).  False keeps only the mixture's own sequence machinery (an
        ablation: the bench's ``moves`` variant).
    """

    n_components: int = 10
    n_sweeps: int = 100
    prior_covariance: str = "data"
    prior_scale: float = 0.8
    covariance_strength: float = 30.0
    prior_kappa: float = 1.0
    weight_concentration: float = 1.0
    init: str = "kmeans++"
    init_restarts: int = 1
    standardise: bool = False
    mixture_moves: int = 8
    mixture_move_candidates: int = 20
    mixture_min_gain: float = 10.0
    sequence_moves: int = 8
    move_candidates: int = 8
    move_min_gain: float = 10.0
    chain_refresh: int = 0
    chain_alpha: float = 0.1
    chain_em_iterations: int = 3
    chain_extend_iterations: int = 7
    joint_mixture_candidates: int = 3
    moves_scored: int = 3
    chain_emission_weight: float = 0.7
    stretch_candidates: int = 3
    slow_candidates: int = 3
    sequence_test: bool = True
    use_class_prior: bool = True

    def __post_init__(self) -> None:
        _check_int("n_components", self.n_components, 1)
        _check_int("n_sweeps", self.n_sweeps, 1)
        _check_float("prior_scale", self.prior_scale, 0.0)
        _check_float("covariance_strength", self.covariance_strength, 0.0)
        _check_float("prior_kappa", self.prior_kappa, 0.0)
        _check_float("weight_concentration", self.weight_concentration, 0.0)
        _check_choice("init", self.init, ("kmeans++", "random"))
        _check_int("init_restarts", self.init_restarts, 1)
        _check_choice("prior_covariance", self.prior_covariance, ("identity", "data"))
        _check_int("mixture_moves", self.mixture_moves, 0)
        _check_int("mixture_move_candidates", self.mixture_move_candidates, 1)
        _check_float("mixture_min_gain", self.mixture_min_gain, 0.0, strict=False)
        _check_int("sequence_moves", self.sequence_moves, 0)
        _check_int("move_candidates", self.move_candidates, 1)
        _check_float("move_min_gain", self.move_min_gain, 0.0, strict=False)
        _check_int("chain_refresh", self.chain_refresh, 0)
        _check_float("chain_alpha", self.chain_alpha, 0.0)
        _check_int("chain_em_iterations", self.chain_em_iterations, 0)
        _check_int("chain_extend_iterations", self.chain_extend_iterations, 0)
        _check_int("joint_mixture_candidates", self.joint_mixture_candidates, 0)
        _check_int("moves_scored", self.moves_scored, 0)
        _check_float("chain_emission_weight", self.chain_emission_weight, 0.0)
        _check_int("stretch_candidates", self.stretch_candidates, 0)
        _check_int("slow_candidates", self.slow_candidates, 0)
        if not isinstance(self.sequence_test, bool):
            raise ConfigError(f"sequence_test should be True or False, got {self.sequence_test!r}")
        if not isinstance(self.use_class_prior, bool):
            raise ConfigError(f"use_class_prior should be True or False, got {self.use_class_prior!r}")


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
        Dirichlet smoothing of each transition row; below 1 it favours sparse
        rows (few successors per class).
    n_samples : int
        Draws for ``counts="sampled"`` (Serket's ``num_samp``).
    em_iterations : int
        Most Baum-Welch iterations of the transitions per update (``pairwise`` only).
    em_tolerance : float
        Stop those iterations once no transition probability moves by more than
        this (0: always run ``em_iterations``).
    """

    message: str = "forward-backward"
    counts: str = "pairwise"
    alpha: float = 0.1
    n_samples: int = 100
    em_iterations: int = 10
    em_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        _check_choice("message", self.message, ("forward-backward", "serket"))
        _check_choice("counts", self.counts, ("pairwise", "expected", "sampled"))
        _check_float("alpha", self.alpha, 0.0)
        _check_int("n_samples", self.n_samples, 1)
        _check_int("em_iterations", self.em_iterations, 1)
        _check_float("em_tolerance", self.em_tolerance, 0.0, strict=False)
