"""Ray-free numerical core of the VAE: networks, loss and a training loop.

The loss of one batch is the original's: reconstruction (BCE or MSE summed over
pixels) plus ``kl_weight`` times KL(q(z|x) || N(m, I)), where m is each point's
prior mean sent by the GMM (zeros before the first message), summed over the
batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

#: Values of ``VAEConfig.precision``.
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).  CPU: AMX tiles or
    AVX512-BF16 instructions, as torch reports them; on other CPUs (e.g. AVX2 only)
    oneDNN emulates bfloat16 and trains several times slower than float32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision the VAE trains in: ``"bf16"`` or ``"fp32"``.

    ``"auto"`` is ``"bf16"`` where :func:`native_bf16` holds for ``device`` and
    ``"fp32"`` elsewhere, so the choice (and with it the exact results) depends on
    the machine; the resolved value is recorded with each update.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision should be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Mixed precision for the training step: bfloat16 autocast (matrix products in
    bf16, accumulating in fp32; losses, weights and Adam's state stay fp32), or nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Encoder(nn.Module):
    """The tutorial's encoder: D -> hidden ReLU -> (mean, log-variance) of size ``latent_dim``."""

    def __init__(self, input_dim: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden)
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map x (B, D) to the mean and log-variance (B, latent_dim) of q(z|x)."""
        h = F.relu(self.hidden(x))
        return self.mean(h), self.log_var(h)


class Decoder(nn.Module):
    """The tutorial's decoder: latent -> hidden ReLU -> D logits (sigmoid gives pixel means)."""

    def __init__(self, input_dim: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Linear(latent_dim, hidden)
        self.out = nn.Linear(hidden, input_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map z (B, latent_dim) to logits (B, D)."""
        return self.out(F.relu(self.hidden(z)))


class VAENet(nn.Module):
    """Encoder plus decoder.  A user's encoder must return ``(mean, log_var)``; a user's
    decoder returns logits for BCE or values for MSE."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


def vae_loss(
    net: VAENet,
    x: torch.Tensor,
    prior_mean: torch.Tensor,
    noise: torch.Tensor,
    kl_weight: float,
    reconstruction: str,
) -> torch.Tensor:
    """Negative ELBO of a batch, summed over points.

    Parameters
    ----------
    x : torch.Tensor, shape (B, D)
    prior_mean : torch.Tensor, shape (B, d)
    noise : torch.Tensor, shape (B, d)
        Standard normal draws for the reparameterisation.
    """
    mean, log_var = net.encoder(x)
    mean, log_var = mean.float(), log_var.float()  # no-ops in fp32; the loss is fp32 under autocast too
    z = mean + torch.exp(0.5 * log_var) * noise
    out = net.decoder(z).float()
    if reconstruction == "bce":
        rec = F.binary_cross_entropy_with_logits(out, x, reduction="sum")
    else:
        rec = F.mse_loss(out, x, reduction="sum")
    kl = 0.5 * torch.sum(torch.exp(log_var) + (mean - prior_mean) ** 2 - 1.0 - log_var)
    return rec + kl_weight * kl


def train_epochs(
    net: VAENet,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    prior_mean: torch.Tensor,
    epochs: int,
    batch_size: int,
    kl_weight: float,
    reconstruction: str,
    generator: torch.Generator,
    on_epoch: Callable[[int, float], None] | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Train for ``epochs`` passes over shuffled mini-batches.

    Each epoch draws its permutation and its noise once (on the CPU generator,
    in that order), gathers the data, prior means and noise into that order
    with one ``index_select`` each, and takes its mini-batches as contiguous
    slices of them: the same batches as indexing every batch, without a
    gather per step.

    Parameters
    ----------
    data : torch.Tensor, shape (N, D), on the training device
    prior_mean : torch.Tensor, shape (N, d), on the training device
    generator : torch.Generator
        CPU generator driving the shuffles and the noise, so results do not
        depend on the device's own RNG.
    on_epoch : callable, optional
        Called after each epoch with (epochs done, that epoch's mean loss).
    precision : {"fp32", "bf16"}
        A resolved precision (:func:`resolve_precision`); ``"bf16"`` runs the
        forward pass under bfloat16 autocast.

    Returns
    -------
    numpy.ndarray, shape (epochs,)
        Mean loss per point of each epoch.
    """
    n = data.shape[0]
    latent_dim = prior_mean.shape[1]
    device = data.device
    losses = np.empty(epochs)
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    total = torch.zeros((), device=device)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        noise_all = torch.randn(n, latent_dim, generator=generator).to(device)
        xs, ms, ns = data.index_select(0, order), prior_mean.index_select(0, order), noise_all.index_select(0, order)
        total.zero_()
        for start, stop in bounds:
            with autocast(precision, device):
                loss = vae_loss(net, xs[start:stop], ms[start:stop], ns[start:stop], kl_weight, reconstruction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total.add_(loss.detach())
        losses[epoch] = float(total) / n
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[epoch])
    return losses


def make_optimizer(params: Iterable[torch.nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """Adam with its fused kernel: one kernel over all parameters per step instead of
    a loop of small ops per parameter (the updates agree with the loop's to rounding,
    ~1e-6 after a few epochs, not bit for bit; still deterministic for a seed).  The
    ``foreach`` kernel (bit-identical to the loop) where the fused one does not take
    these parameters."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError) as exc:
        log.debug("fused Adam unavailable (%s); using foreach", exc)
        return torch.optim.Adam(params, lr=learning_rate, foreach=True)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Deterministic outputs after training.

    Attributes
    ----------
    mean, log_var : numpy.ndarray, shape (N, d)
    z : numpy.ndarray, shape (N, d)
        The latent vectors sent on (the mean, or a draw from q).
    x_hat : numpy.ndarray, shape (N, D)
        Reconstruction of the data from ``z`` (sigmoid of the logits for BCE).
    """

    mean: np.ndarray
    log_var: np.ndarray
    z: np.ndarray
    x_hat: np.ndarray


@torch.no_grad()
def encode(
    net: VAENet,
    data: torch.Tensor,
    reconstruction: str,
    sample: bool,
    generator: torch.Generator,
    chunk: int = 65536,
) -> Encoded:
    """Encode all data (in chunks) and reconstruct it.

    Parameters
    ----------
    data : torch.Tensor, shape (N, D)
    sample : bool
        Send a draw z ~ q(z|x) (the original) instead of the mean of q.
    """
    net.eval()
    means, log_vars, zs, xs = [], [], [], []
    for start in range(0, data.shape[0], chunk):
        x = data[start : start + chunk]
        mean, log_var = net.encoder(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator).to(mean.device)
            z = mean + torch.exp(0.5 * log_var) * noise
        out = net.decoder(z)
        x_hat = torch.sigmoid(out) if reconstruction == "bce" else out
        for store, value in ((means, mean), (log_vars, log_var), (zs, z), (xs, x_hat)):
            store.append(value.detach().cpu().numpy().astype(np.float64))
    return Encoded(*(np.concatenate(s) for s in (means, log_vars, zs, xs)))
