"""Every kind of chain on fixed latents: the Markov model helps where there is structure and costs nothing where
there is none (GMM and MM workers only, no VAE, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.config import GMMConfig, MMConfig
from actors.gmm import GMMWorker
from actors.mm import MMWorker
from actors.scoring import accuracy, transition_distance
from messages import Latents
from orchestrator.chain_kinds import independent_sequence, self_transition_matrix
from orchestrator.sequences import sample_chain


def _run(
    z: np.ndarray, with_mm: bool, rounds: int, seed: int = 0, **gmm_options
) -> tuple[np.ndarray, np.ndarray | None]:
    """Classes (N,) and learned transitions after ``rounds`` GMM (+ MM) updates on latents z (N, d)."""
    gmm_seed, mm_seed = np.random.SeedSequence(seed).spawn(2)
    gmm = GMMWorker(GMMConfig(**gmm_options), "gmm", "mm", "vae", gmm_seed, sequence=with_mm)
    mm = MMWorker(MMConfig(), "mm", "gmm", mm_seed)
    prior, trans = None, None
    for r in range(rounds):
        post, _, _ = gmm.update(r, Latents(sender="vae", receiver="gmm", round=r, z=z), prior)
        if with_mm:
            prior, report = mm.update(r, post)
            trans = report["transitions"]
    return np.argmax(post.probs, axis=1), trans


@pytest.fixture(scope="module")
def pca_latents(mnist) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's 3000 images projected on their 18 leading principal axes, and their labels."""
    images, labels = mnist
    centred = images.reshape(len(images), -1).astype(float)
    centred -= centred.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:18].T, np.asarray(labels)


def test_on_independent_draws_the_markov_model_costs_nothing(pca_latents) -> None:
    """No sequence structure: the labels never show a chain (negative sequence evidence), so with the MM every
    update is the one without it, bit for bit (measured on PCA latents, 2 rounds: 0.704 both; before the evidence
    test, with the MM 0.777 here but 0.023 below the mixture alone on one full run)."""
    z, labels = pca_latents
    seq = independent_sequence(z, labels, np.random.default_rng(0))
    alone, _ = _run(seq.data, with_mm=False, rounds=2)
    joint, _ = _run(seq.data, with_mm=True, rounds=2)
    np.testing.assert_array_equal(joint, alone)
    assert accuracy(alone, seq.labels) > 0.6  # chance is 0.1


def test_with_sequence_test_off_the_sequence_changes_independent_draws(pca_latents) -> None:
    """The counterpart: forcing the sequence machinery on the same shuffled latents gives other classes, so the
    equality above is the evidence test's doing."""
    z, labels = pca_latents
    seq = independent_sequence(z, labels, np.random.default_rng(0))
    alone, _ = _run(seq.data, with_mm=False, rounds=2)
    forced, _ = _run(seq.data, with_mm=True, rounds=2, sequence_test=False)
    assert not np.array_equal(forced, alone)


def test_a_self_transition_chain_is_recovered_within_the_tv_bound() -> None:
    """Runs of one class (stay 0.6) over overlapping Gaussian classes: the sequence lifts accuracy above 0.95 and
    the learned transitions are within 0.1 mean row TV (measured 0.972 and 0.058; the mixture alone 0.865)."""
    rng = np.random.default_rng(0)
    trans = self_transition_matrix(10, 0.6)
    states = sample_chain(trans, 3000, rng)
    z = rng.normal(scale=0.9, size=(10, 18))[states] + rng.normal(size=(3000, 18))
    alone, _ = _run(z, with_mm=False, rounds=2)
    classes, learned = _run(z, with_mm=True, rounds=2)
    assert accuracy(classes, states) >= 0.95
    assert accuracy(classes, states) > accuracy(alone, states) + 0.05
    assert transition_distance(learned, classes, states, trans) <= 0.1
