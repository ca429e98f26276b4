"""Ray-free numerical core of the VAE: networks, loss and a training loop.

The loss of one batch is the original's: reconstruction (BCE or MSE summed over
pixels) plus ``kl_weight`` times KL(q(z|x) || N(m, I)), where m is each point's
prior mean sent by the GMM (zeros before the first message), summed over the
batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


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
    z = mean + torch.exp(0.5 * log_var) * noise
    out = net.decoder(z)
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
) -> np.ndarray:
    """Train for ``epochs`` passes over shuffled mini-batches.

    Parameters
    ----------
    data : torch.Tensor, shape (N, D), on the training device
    prior_mean : torch.Tensor, shape (N, d), on the training device
    generator : torch.Generator
        CPU generator driving the shuffles and the noise, so results do not
        depend on the device's own RNG.
    on_epoch : callable, optional
        Called after each epoch with (epochs done, that epoch's mean loss).

    Returns
    -------
    numpy.ndarray, shape (epochs,)
        Mean loss per point of each epoch.
    """
    n = data.shape[0]
    latent_dim = prior_mean.shape[1]
    device = data.device
    losses = np.empty(epochs)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        noise_all = torch.randn(n, latent_dim, generator=generator).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = vae_loss(net, data[idx], prior_mean[idx], noise_all[idx], kl_weight, reconstruction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        losses[epoch] = float(total) / n
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[epoch])
    return losses


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
