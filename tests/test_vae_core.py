"""The VAE's torch core: loss, training, custom networks, determinism; no Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actors import vae_core
from actors.config import VAEConfig
from actors.vae import VAEWorker
from messages import ObservationData, PriorMeans


def test_kl_term_matches_closed_form() -> None:
    torch.manual_seed(0)

    class FixedEncoder(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), 0.5), torch.full((x.shape[0], 2), np.log(0.25))

    class ZeroDecoder(nn.Module):
        def forward(self, z):
            return torch.zeros(z.shape[0], 3)

    net = vae_core.VAENet(FixedEncoder(), ZeroDecoder())
    x = torch.full((4, 3), 0.5)
    prior = torch.full((4, 2), -1.0)
    loss_no_kl = vae_core.vae_loss(net, x, prior, torch.zeros(4, 2), 0.0, "bce")
    loss = vae_core.vae_loss(net, x, prior, torch.zeros(4, 2), 2.0, "bce")
    # KL(N(0.5, 0.25) || N(-1, 1)) per dim = 0.5 (0.25 + 1.5^2 - 1 - log 0.25)
    kl = 4 * 2 * 0.5 * (0.25 + 2.25 - 1 - np.log(0.25))
    assert float(loss - loss_no_kl) == pytest.approx(2.0 * kl, rel=1e-5)
    assert float(loss_no_kl) == pytest.approx(12 * np.log(2), rel=1e-5)  # BCE of logit 0 at x = 0.5


def _worker(seed: int = 0, **cfg) -> VAEWorker:
    config = VAEConfig(latent_dim=4, epochs=cfg.pop("epochs", 15), batch_size=64, **cfg)
    return VAEWorker(config, "vae", "gmm", "obs", np.random.SeedSequence(seed), num_threads=1)


def _digits() -> ObservationData:
    from orchestrator.data import default_digits

    data, _ = default_digits()
    return ObservationData(sender="obs", receiver="vae", round=0, data=data[:400])


def test_training_lowers_the_loss_and_outputs_have_shapes() -> None:
    worker = _worker()
    lat, rec, report = worker.update(0, _digits())
    assert report["loss"][-1] < report["loss"][0] * 0.8
    assert lat.z.shape == (400, 4) and rec.x_hat.shape == (400, 64)
    assert 0.0 <= rec.x_hat.min() and rec.x_hat.max() <= 1.0


def test_same_seed_same_result_and_warm_start() -> None:
    obs = _digits()
    a, b = _worker(3), _worker(3)
    za, _, ra = a.update(0, obs)
    zb, _, rb = b.update(0, obs)
    np.testing.assert_array_equal(za.z, zb.z)
    np.testing.assert_array_equal(ra["loss"], rb["loss"])
    # second round continues from the kept weights: its first epoch beats round 1's first epoch
    _, _, r2 = a.update(1, obs)
    assert r2["loss"][0] < ra["loss"][0]


def test_prior_means_pull_the_latents() -> None:
    obs = _digits()
    target = np.full((400, 4), 3.0)
    free, _, _ = _worker(1, epochs=30).update(0, obs)
    pulled, _, _ = _worker(1, epochs=30).update(0, obs, PriorMeans(sender="gmm", receiver="vae", round=0, means=target))
    assert np.abs(pulled.z - 3.0).mean() < np.abs(free.z - 3.0).mean() - 1.0


def test_user_networks_are_used() -> None:
    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 6)

        def forward(self, x):
            h = self.lin(x)
            return h[:, :3], h[:, 3:]

    dec = nn.Sequential(nn.Linear(3, 64))
    config = VAEConfig(latent_dim=3, epochs=3, batch_size=100)
    worker = VAEWorker(config, "vae", "gmm", "obs", np.random.SeedSequence(0), Enc(), dec, num_threads=1)
    lat, rec, _ = worker.update(0, _digits())
    assert lat.z.shape == (400, 3) and rec.x_hat.shape == (400, 64)
    assert worker.net is not None and isinstance(worker.net.decoder, nn.Sequential)


def test_one_gather_per_epoch_trains_as_indexing_every_batch() -> None:
    """train_epochs' per-epoch gather and slices give the batches a per-batch indexing loop gives, bit for bit."""
    from orchestrator.data import default_digits

    x = torch.as_tensor(default_digits()[0][:300], dtype=torch.float32)
    mu = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))

    def fresh() -> tuple[vae_core.VAENet, torch.optim.Optimizer, torch.Generator]:
        torch.manual_seed(0)
        net = vae_core.VAENet(vae_core.Encoder(64, 4), vae_core.Decoder(64, 4))
        return net, torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True), torch.Generator().manual_seed(5)

    net, opt, gen = fresh()
    got = vae_core.train_epochs(net, opt, x, mu, 3, 128, 1.0, "bce", gen)
    ref_net, ref_opt, ref_gen = fresh()
    want = []
    for _ in range(3):
        order, noise, total = torch.randperm(300, generator=ref_gen), torch.randn(300, 4, generator=ref_gen), 0.0
        for s in range(0, 300, 128):
            idx = order[s : s + 128]
            loss = vae_core.vae_loss(ref_net, x[idx], mu[idx], noise[idx], 1.0, "bce")
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
            total += float(loss.detach())
        want.append(total / 300)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for a, b in zip(net.parameters(), ref_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_precision_is_checked_resolved_and_recorded() -> None:
    from messages.errors import ConfigError

    with pytest.raises(ConfigError, match="precision should be one of"):
        VAEConfig(precision="fp16")
    cpu = torch.device("cpu")
    assert vae_core.resolve_precision("auto", cpu) == ("bf16" if vae_core.native_bf16(cpu) else "fp32")
    obs = _digits()
    _, _, r32 = _worker(2, epochs=4, precision="fp32").update(0, obs)
    _, _, r16 = _worker(2, epochs=4, precision="bf16").update(0, obs)
    assert (r32["precision"], r16["precision"]) == ("fp32", "bf16")
    # same start, batches and noise: bf16 rounding moves the loss curve slightly, not its course
    np.testing.assert_allclose(r16["loss"], r32["loss"], rtol=0.02)
    assert not np.array_equal(r16["loss"], r32["loss"])


def _reference_loss(net: vae_core.VAENet, x, m, eps, kl_weight: float, reconstruction: str) -> torch.Tensor:
    """The loss written out from its definition (independent of vae_loss and ManualStep), for autograd."""
    from torch.nn import functional as F

    enc, dec = net.encoder, net.decoder
    h = torch.relu(x @ enc.hidden.weight.T + enc.hidden.bias)
    mean, log_var = h @ enc.mean.weight.T + enc.mean.bias, h @ enc.log_var.weight.T + enc.log_var.bias
    z = mean + torch.exp(log_var / 2) * eps
    o = torch.relu(z @ dec.hidden.weight.T + dec.hidden.bias) @ dec.out.weight.T + dec.out.bias
    if reconstruction == "bce":
        rec = (F.softplus(o) - o * x).sum()
    else:
        rec = ((o - x) ** 2).sum()
    return rec + kl_weight * 0.5 * (log_var.exp() + (mean - m) ** 2 - 1 - log_var).sum()


@pytest.mark.parametrize("reconstruction", ["bce", "mse"])
def test_manual_step_gives_autograds_loss_and_gradients(reconstruction: str) -> None:
    gen = torch.Generator().manual_seed(7)
    for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 2e-5)):
        torch.manual_seed(3)
        net = vae_core.VAENet(vae_core.Encoder(30, 5, 16), vae_core.Decoder(30, 5, 16)).to(dtype)
        # 37 rows into buffers for 50: the last, shorter batch of an epoch
        x = torch.rand(37, 30, generator=gen, dtype=dtype)
        m = 2 * torch.randn(37, 5, generator=gen, dtype=dtype)
        eps = torch.randn(37, 5, generator=gen, dtype=dtype)
        want = _reference_loss(net, x, m, eps, 0.7, reconstruction)
        want.backward()
        want_grads = [p.grad.clone() for p in net.parameters()]
        net.zero_grad(set_to_none=True)
        step = vae_core.ManualStep(net, 50, 0.7, reconstruction)
        for _ in range(2):  # gradients are overwritten, not accumulated
            got = step(x, m, eps)
        assert float(got) == pytest.approx(want.item(), rel=rtol)
        for (name, p), g in zip(net.named_parameters(), want_grads, strict=True):
            np.testing.assert_allclose(
                p.grad.numpy(), g.numpy(), rtol=rtol, atol=rtol * float(g.abs().max()), err_msg=name
            )
        if dtype == torch.float32:  # and vae_loss, the autograd path's own loss, agrees
            assert float(got) == pytest.approx(vae_core.vae_loss(net, x, m, eps, 0.7, reconstruction).item(), rel=rtol)


@pytest.mark.parametrize("reconstruction", ["bce", "mse"])
def test_manual_bf16_step_gives_the_autocast_steps_loss_and_gradients(reconstruction: str) -> None:
    """The bf16 manual step against autograd under bf16 autocast (the same products rounded the same
    way, up to where each rounds) and both against the float64 reference (bf16's 8 bits of mantissa)."""
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(4)
    net = vae_core.VAENet(vae_core.Encoder(200, 6, 64), vae_core.Decoder(200, 6, 64))
    x = torch.rand(90, 200, generator=gen)
    m = torch.randn(90, 6, generator=gen)
    eps = torch.randn(90, 6, generator=gen)
    with vae_core.autocast("bf16", torch.device("cpu")):
        cast = vae_core.vae_loss(net, x, m, eps, 0.7, reconstruction)
    cast.backward()
    cast_grads = [p.grad.clone() for p in net.parameters()]
    ref_net = vae_core.VAENet(vae_core.Encoder(200, 6, 64), vae_core.Decoder(200, 6, 64)).double()
    ref_net.load_state_dict(net.state_dict())
    want = _reference_loss(ref_net, x.double(), m.double(), eps.double(), 0.7, reconstruction)
    want.backward()
    net.zero_grad(set_to_none=True)
    step = vae_core.ManualStep(net, 128, 0.7, reconstruction, precision="bf16")
    got = step(x, m, eps)
    assert float(got) == pytest.approx(cast.item(), rel=1e-5)
    assert float(got) == pytest.approx(want.item(), rel=1e-4)
    for (name, p), c, r in zip(net.named_parameters(), cast_grads, ref_net.parameters(), strict=True):
        size = float(r.grad.norm())
        # as far from autocast's as its bias sums (fp32 here, bf16 there) make it ...
        assert float((p.grad - c).norm()) < 5e-3 * size, name
        # ... and no farther from the float64 gradient than autocast's is (bf16 rounding, not a wrong formula)
        assert float((p.grad.double() - r.grad).norm()) <= 1.05 * float((c.double() - r.grad).norm()) + 1e-3 * size
    assert all(p.grad.dtype == torch.float32 for p in net.parameters())


def test_manual_step_trains_as_autograd_and_is_deterministic() -> None:
    from orchestrator.data import default_digits

    x = torch.as_tensor(default_digits()[0][:300], dtype=torch.float32)
    mu = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))

    def train(step: str, reconstruction: str) -> tuple[np.ndarray, list[torch.Tensor]]:
        torch.manual_seed(0)
        net = vae_core.VAENet(vae_core.Encoder(64, 4), vae_core.Decoder(64, 4))
        opt = vae_core.make_optimizer(net.parameters(), 1e-3)
        losses = vae_core.train_epochs(
            net, opt, x, mu, 6, 128, 0.5, reconstruction, torch.Generator().manual_seed(5), step=step
        )
        return losses, [p.detach().clone() for p in net.parameters()]

    for reconstruction in ("bce", "mse"):
        manual, manual_w = train("manual", reconstruction)
        auto, auto_w = train("autograd", reconstruction)
        np.testing.assert_allclose(manual, auto, rtol=1e-5)
        assert manual[-1] < manual[0]
        for a, b in zip(manual_w, auto_w, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
        again, again_w = train("manual", reconstruction)
        np.testing.assert_array_equal(again, manual)
        assert all(torch.equal(a, b) for a, b in zip(again_w, manual_w, strict=True))


def test_step_is_checked_resolved_and_recorded() -> None:
    from actors import VAE
    from messages.errors import ConfigError

    with pytest.raises(ConfigError, match="step should be one of"):
        VAEConfig(step="jit")
    with pytest.raises(ConfigError, match="step='manual' needs the default encoder and decoder"):
        VAE(3, step="manual", decoder=nn.Sequential(nn.Linear(3, 64)))
    obs = _digits()
    _, _, auto = _worker(2, epochs=3, precision="fp32").update(0, obs)
    _, _, grad = _worker(2, epochs=3, step="autograd").update(0, obs)
    _, _, bf16 = _worker(2, epochs=3, precision="bf16").update(0, obs)
    _, _, bf16_grad = _worker(2, epochs=3, precision="bf16", step="autograd").update(0, obs)
    assert (auto["step"], grad["step"], bf16["step"], bf16_grad["step"]) == ("manual", "autograd", "manual", "autograd")
    assert bf16["precision"] == bf16_grad["precision"] == "bf16"
    # the same products in bf16 (the manual step sums its bias gradients in fp32): close, not equal
    np.testing.assert_allclose(bf16["loss"], bf16_grad["loss"], rtol=1e-3)
    # the two steps round differently: up to 3e-5 apart after 3 epochs on AVX-512 kernels (1e-5 on AVX2)
    np.testing.assert_allclose(auto["loss"], grad["loss"], rtol=1e-4)
    custom = VAEWorker(
        VAEConfig(latent_dim=4, epochs=2, batch_size=64),
        "vae",
        "gmm",
        "obs",
        np.random.SeedSequence(0),
        decoder=nn.Sequential(nn.Linear(4, 64)),
        num_threads=1,
    )
    assert custom.update(0, obs)[2]["step"] == "autograd"
