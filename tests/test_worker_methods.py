"""The workers' inference methods that learning and recognition share (encode, classify, message); the text export."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from actors.config import GMMConfig, MMConfig, VAEConfig
from actors.gmm import GMMWorker
from actors.mm import MMWorker
from actors.serket_text import SERKET_FILES, export_text, write_text
from messages import Latents, ObservationData
from messages.errors import ConfigError, DataError


def _two_blobs(seed: int, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-2, 1, size=(n, 2)), rng.normal(2, 0.5, size=(n, 2))])


def _fitted_gmm() -> tuple[GMMWorker, np.ndarray]:
    z = _two_blobs(0)
    gmm = GMMWorker(GMMConfig(n_components=2, n_sweeps=6), "g", "m", "v", np.random.SeedSequence(0))
    gmm.update(0, Latents(sender="v", receiver="g", round=0, z=z))
    return gmm, z


def test_classify_is_the_mixtures_bayes_posterior_computed_independently() -> None:
    gmm, _ = _fitted_gmm()
    mix = gmm.mixture
    assert mix is not None
    x = _two_blobs(1, 10)
    dens = np.stack(
        [w * multivariate_normal(m, c).pdf(x) for m, c, w in zip(mix.means, mix.covariances, mix.weights, strict=True)],
        axis=1,
    )
    got = gmm.classify(x)
    np.testing.assert_allclose(got.probs, dens / dens.sum(axis=1, keepdims=True), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.exp(got.log_likelihood), dens / mix.weights[None, :], rtol=1e-10, atol=1e-300)
    prior = np.random.default_rng(2).dirichlet([1.0, 1.0], size=x.shape[0])
    want = dens * prior
    np.testing.assert_allclose(gmm.classify(x, prior).probs, want / want.sum(axis=1, keepdims=True), rtol=1e-10)


def test_classify_refuses_before_learning_and_on_other_dimensions() -> None:
    fresh = GMMWorker(GMMConfig(n_components=2), "module002_gmm", "m", "v", np.random.SeedSequence(0))
    with pytest.raises(ConfigError, match="module002_gmm should have learned or loaded a mixture"):
        fresh.classify(np.zeros((3, 2)))
    gmm, _ = _fitted_gmm()
    with pytest.raises(DataError, match="data should have 2 features like the learned GMM's input, got 3"):
        gmm.classify(np.zeros((4, 3)))


@pytest.mark.parametrize("counts,message", [("pairwise", "forward-backward"), ("expected", "serket")])
def test_the_message_method_gives_what_the_update_sent(counts: str, message: str) -> None:
    gmm, z = _fitted_gmm()
    lengths = np.array([30, 50])
    post, _, _ = gmm.update(1, Latents(sender="v", receiver="g", round=1, z=z, lengths=lengths))
    mm = MMWorker(MMConfig(counts=counts, message=message), "m", "g", np.random.SeedSequence(0))
    sent, report = mm.update(0, post)
    again, log_lik = mm.message(post.probs, post.log_likelihood, lengths)
    np.testing.assert_array_equal(again, sent.probs)
    if message == "forward-backward":
        assert log_lik == report["log_likelihood"]
    else:
        assert np.isnan(log_lik)


def test_message_refuses_before_any_transitions() -> None:
    mm = MMWorker(MMConfig(), "module003_mm", "g", np.random.SeedSequence(0))
    with pytest.raises(ConfigError, match="module003_mm should have learned or restored its transitions"):
        mm.message(np.full((3, 2), 0.5))


def test_encode_sends_what_the_update_sent_and_checks_the_features() -> None:
    from actors.vae import VAEWorker

    rng = np.random.default_rng(3)
    x = rng.random((64, 6))
    cfg = VAEConfig(latent_dim=2, epochs=1, batch_size=32, hidden=8, device="cpu", precision="fp32")
    vae = VAEWorker(cfg, "module001_vae", "g", "o", np.random.SeedSequence(0), num_threads=1)
    with pytest.raises(ConfigError, match="module001_vae should be trained or restored before it encodes"):
        vae.encode(x)
    latents, recon, _ = vae.update(0, ObservationData(sender="o", receiver="v", round=0, data=x))
    enc = vae.encode(x)
    np.testing.assert_array_equal(enc.z, latents.z)
    np.testing.assert_array_equal(enc.x_hat.astype(np.float32), recon.x_hat)
    with pytest.raises(DataError, match="data should have 6 features like the learned model's, got 5"):
        vae.encode(x[:, :5])


def test_export_text_writes_serkets_file_names(tmp_path) -> None:
    export_text(tmp_path, "recog", classes=np.array([2, 0]), probs=np.eye(2), accuracy=0.5, initial=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pdz_recog.txt", "acc_recog.txt", "class_recog.txt"]
    assert (tmp_path / "class_recog.txt").read_text() == "2\n0\n"
    assert float(np.loadtxt(tmp_path / "acc_recog.txt")) == 0.5
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "Pdz_recog.txt"), np.eye(2))
    assert SERKET_FILES["transitions"][0].format(mode="learn") == "trans_prob_learn.txt"
    with pytest.raises(KeyError):
        export_text(tmp_path, "learn", classe=np.zeros(2))


@pytest.mark.parametrize(
    "values,fmt",
    [
        (np.random.default_rng(0).normal(size=(300, 10)), "%.18e"),
        (np.random.default_rng(1).normal(size=(50, 18)).astype(np.float32), "%.18e"),
        (np.random.default_rng(2).integers(0, 10, size=77), "%d"),
        (np.array([np.nan, np.inf, -0.0, 1e-310, 0.9957]), "%.18e"),
        (np.ones((4, 1)), "%.18e"),
        (np.zeros((0, 3)), "%.18e"),
    ],
)
def test_write_text_gives_numpy_savetxts_bytes(tmp_path, values: np.ndarray, fmt: str) -> None:
    np.savetxt(tmp_path / "numpy.txt", values, fmt=fmt)
    write_text(tmp_path / "ours.txt", values, fmt)
    assert (tmp_path / "ours.txt").read_bytes() == (tmp_path / "numpy.txt").read_bytes()
    with pytest.raises(ValueError, match="1-D or 2-D"):
        write_text(tmp_path / "bad.txt", np.zeros((2, 2, 2)), fmt)
