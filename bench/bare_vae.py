"""The baseline: a bare torch loop doing the VAE's training in one process, no Ray, no messages.

Same networks (784-128-18 MLPs), same loss (BCE summed + KL to N(m, I)), Adam 1e-3, shuffled
mini-batches, ``epochs`` passes, then one encode of all points.  ``python bench/bare_vae.py`` times
one round of the tutorial's settings.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def bare_round(data: np.ndarray, epochs: int = 200, batch_size: int = 500, latent: int = 18, threads: int | None = None, seed: int = 0) -> float:
    """Seconds for ``epochs`` epochs of VAE training plus one encode, in a plain loop.

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D), values in [0, 1]
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    n, d = data.shape
    hidden = nn.Linear(d, 128)
    mean_head, logvar_head = nn.Linear(128, latent), nn.Linear(128, latent)
    dec_hidden, dec_out = nn.Linear(latent, 128), nn.Linear(128, d)
    params = [p for m in (hidden, mean_head, logvar_head, dec_hidden, dec_out) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x_all = torch.as_tensor(data, dtype=torch.float32)
    prior = torch.zeros(n, latent)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n)
        noise = torch.randn(n, latent)
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            x = x_all[idx]
            h = F.relu(hidden(x))
            mu, logvar = mean_head(h), logvar_head(h)
            z = mu + torch.exp(0.5 * logvar) * noise[idx]
            logits = dec_out(F.relu(dec_hidden(z)))
            loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + 0.5 * torch.sum(
                torch.exp(logvar) + (mu - prior[idx]) ** 2 - 1.0 - logvar
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        mean_head(F.relu(hidden(x_all))).numpy()
    return time.perf_counter() - start


if __name__ == "__main__":
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--npz", default=os.environ.get("SERKET_RAY_MNIST_NPZ", "../shared/data/mnist_seq3000.npz"))
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    images = np.load(args.npz)["images"] / 255.0
    print(f"bare torch loop: {bare_round(images, args.epochs):.2f} s for {args.epochs} epochs")
