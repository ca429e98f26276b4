"""The Markov model module (Serket-style constructor) and its worker."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors import mm_core
from actors.config import MMConfig
from actors.module import Edge, Module
from actors.seeding import generator_state_json, numpy_generator, set_generator_state
from actors.serket_text import export_text
from actors.state import WorkerState
from messages import ClassPosteriors, ClassPrior
from messages.errors import ConfigError

log = logging.getLogger(__name__)


class MarkovModel(Module):
    """Learns transitions between consecutive points' classes and sends the GMM a
    transition-aware class prior.

    Parameters
    ----------
    num_samp : int, optional
        Serket's name for ``n_samples`` (used by ``counts="sampled"``).
    name, mode : str
    **options
        Any :class:`actors.config.MMConfig` field: ``message``, ``counts``,
        ``alpha``, ``em_iterations``.
    """

    kind = "mm"
    below_kinds = ("gmm",)

    def __init__(self, num_samp: int | None = None, name: str = "mm", mode: str = "learn", **options: Any) -> None:
        super().__init__(name, mode)
        if num_samp is not None:
            options.setdefault("n_samples", num_samp)
        try:
            self.config = MMConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"unknown MarkovModel option: {exc}") from None

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def worker_spec(
        self, name: str, above: str | None, below: str | None, seed: np.random.SeedSequence, num_threads: int | None
    ) -> tuple[type, tuple[Any, ...]]:
        return MMWorker, (self.config, name, below or name, seed)

    def inputs(self) -> dict[str, Edge]:
        return {"posteriors": (self.below[0], "posteriors")}

    def output_names(self) -> tuple[str, ...]:
        return ("class_prior", "report")

    def export(self, directory: Path, outputs: dict[str, Any], labels: np.ndarray | None) -> dict[str, Any]:
        report = outputs["report"]
        export_text(
            directory,
            self.mode,
            message=outputs["class_prior"].probs,
            transitions=report["transitions"],
            initial=report.get("initial"),
        )
        return {"sequence_log_likelihood": outputs["report"]["log_likelihood"]}


class MMWorker:
    """Estimates the transition matrix and computes the message; becomes a Ray actor.

    When the posteriors come with ``lengths`` (many sequences), no transition is
    counted across a boundary and the worker also learns the distribution of a
    sequence's first class from the sequences' first points (``initial``); with
    one sequence that distribution stays uniform.
    """

    def __init__(self, config: MMConfig, name: str, below: str, seed: np.random.SeedSequence) -> None:
        self.config = config
        self.name, self.below = name, below
        self.rng = numpy_generator(seed)
        self.transitions: np.ndarray | None = None
        self.initial: np.ndarray | None = None

    def update(self, round: int, posteriors: ClassPosteriors) -> tuple[ClassPrior, dict[str, Any]]:
        """Learn transitions from the GMM's posteriors and compute the message.

        Returns
        -------
        class_prior : ClassPrior, probs (N, K), to the GMM
        report : dict with ``transitions`` (K, K), ``counts`` (K, K), ``log_likelihood``,
            and ``initial`` (K,) with many sequences
        """
        start = time.perf_counter()
        cfg = self.config
        probs = posteriors.probs
        lengths = posteriors.lengths
        if probs.shape[0] < 2:
            raise ConfigError(f"a Markov model needs a sequence of at least 2 points, got {probs.shape[0]}")
        log_em = log_emissions(probs, posteriors.log_likelihood)
        if cfg.counts == "sampled":
            counts = mm_core.sampled_counts(probs, cfg.n_samples, self.rng, lengths)
        else:
            counts = mm_core.expected_counts(probs, lengths)
        trans = mm_core.transition_matrix(counts, cfg.alpha)
        initial = mm_core.initial_distribution(probs, lengths, cfg.alpha)
        fb: mm_core.ForwardBackward | None = None
        if cfg.counts == "pairwise":
            trans, initial, fb, iterations = self._baum_welch(log_em, trans, initial, lengths)
            counts = fb.pair_counts
            log.debug("%s round %d: %d Baum-Welch iterations", self.name, round, iterations)
        self.transitions, self.initial = trans, initial
        msg, log_lik = self.message(probs, posteriors.log_likelihood, lengths, fb=fb)
        seconds = time.perf_counter() - start
        log.info("%s round %d: message %s, %.3f s", self.name, round, cfg.message, seconds)
        prior = ClassPrior(sender=self.name, receiver=self.below, round=round, probs=msg, lengths=lengths)
        report = {"transitions": trans, "counts": counts, "log_likelihood": log_lik, "seconds": seconds}
        if initial is not None:
            report["initial"] = initial
        return prior, report

    def message(
        self,
        probs: np.ndarray,
        log_likelihood: np.ndarray | None = None,
        lengths: np.ndarray | None = None,
        method: str | None = None,
        fb: mm_core.ForwardBackward | None = None,
    ) -> tuple[np.ndarray, float]:
        """The class prior each point gets from the rest of its sequence, under the learned transitions.

        Learning sends it to the GMM after every update; recognition weighs the
        novel data's classes with it.  Each sequence of ``lengths`` starts from the
        learned initial distribution (uniform when learned from one sequence).

        Parameters
        ----------
        probs : numpy.ndarray, shape (N, K)
            The GMM's class posteriors.
        log_likelihood : numpy.ndarray, shape (N, K), optional
            log p(point | class); without it the posteriors stand in as scaled likelihoods.
        lengths : numpy.ndarray, shape (S,), optional
            Sequences (hmmlearn's convention); None: one sequence.
        method : {"forward-backward", "serket"}, optional
            The HMM prior from every other point of the sequence, or the original's
            one-step prediction from the neighbours' posteriors; default: the config's ``message``.
        fb : ForwardBackward, optional
            A pass already made under the learned transitions (Baum-Welch's last), reused.

        Returns
        -------
        prior : numpy.ndarray, shape (N, K)
        log_likelihood : float
            log p(all points) under the chain (forward-backward), NaN for ``serket``.

        Raises
        ------
        ConfigError
            The worker has not learned (or restored) its transitions yet.
        """
        if self.transitions is None:
            raise ConfigError(f"{self.name} should have learned or restored its transitions before a message, got none")
        if (method or self.config.message) == "forward-backward":
            if fb is None:
                fb = mm_core.forward_backward(
                    log_emissions(probs, log_likelihood), self.transitions, self.initial, lengths=lengths
                )
            return fb.prior, fb.log_likelihood
        return mm_core.one_step_message(probs, self.transitions, lengths, self.initial), float("nan")

    def _baum_welch(
        self,
        log_em: np.ndarray,
        trans: np.ndarray,
        initial: np.ndarray | None = None,
        lengths: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, mm_core.ForwardBackward, int]:
        """Re-estimate the transitions with the emissions fixed.

        Starts from ``trans`` (counted from the posteriors) or, unless the mixture has
        renumbered its clusters since the last update, from the last update's
        transitions, whichever explains the sequence better.  Each iteration is one
        forward-backward pass; the pass of the final transitions is returned too, so
        the message costs no extra pass.  With ``lengths`` (many sequences) the
        initial distribution is re-estimated alongside, from the smoothed
        posteriors of the sequences' first points.

        Returns
        -------
        trans : numpy.ndarray, shape (K, K)
        initial : numpy.ndarray, shape (K,), or None (one sequence)
        fb : ForwardBackward under ``trans`` and ``initial``
        iterations : int
        """
        cfg = self.config
        fb = mm_core.forward_backward(log_em, trans, initial, lengths=lengths)
        if self.transitions is not None and self.transitions.shape == trans.shape:
            warm_initial = (
                self.initial
                if initial is not None and self.initial is not None and self.initial.shape == initial.shape
                else initial
            )
            warm = mm_core.forward_backward(log_em, self.transitions, warm_initial, lengths=lengths)
            if warm.log_likelihood >= fb.log_likelihood:
                trans, initial, fb = self.transitions, warm_initial, warm
        iterations = 0
        while iterations < cfg.em_iterations:
            new = mm_core.transition_matrix(fb.pair_counts, cfg.alpha)
            moved = float(np.abs(new - trans).max())
            if initial is not None:
                new_initial = mm_core.initial_distribution(fb.posterior, lengths, cfg.alpha)
                moved = max(moved, float(np.abs(new_initial - initial).max()))
                initial = new_initial
            trans, fb, iterations = new, mm_core.forward_backward(log_em, new, initial, lengths=lengths), iterations + 1
            if moved <= cfg.em_tolerance:
                break
        return trans, initial, fb, iterations

    def get_state(self) -> WorkerState:
        """Everything needed to continue: the transitions, the initial distribution (many sequences) and RNG state."""
        arrays = {} if self.transitions is None else {"transitions": self.transitions}
        if self.initial is not None:
            arrays["initial"] = self.initial
        return WorkerState(arrays=arrays, meta={"rng": generator_state_json(self.rng)})

    def set_state(self, state: WorkerState) -> None:
        """Restore what :meth:`get_state` returned.

        Raises
        ------
        CheckpointError
            The state lacks the RNG state.
        """
        state.require(self.name, meta=("rng",))
        self.transitions = state.arrays.get("transitions")
        self.initial = state.arrays.get("initial")
        set_generator_state(self.rng, state.meta["rng"])


def log_emissions(probs: np.ndarray, log_likelihood: np.ndarray | None) -> np.ndarray:
    """The chain's log emissions (N, K): the GMM's log p(point | class), or its posteriors as scaled likelihoods."""
    return log_likelihood if log_likelihood is not None else np.log(np.maximum(probs, 1e-300))
