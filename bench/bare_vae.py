"""The baselines: a bare torch loop doing the run's VAE training in one process, no Ray, no messages.

Same networks (784-128-18 MLPs, mean and log-variance heads), same loss (BCE summed + KL to
N(0, I)), Adam 1e-3, shuffled mini-batches of 500, ``rounds`` x ``epochs`` passes with one encode
of all points after each round, as the tutorial's run trains its VAE.

* naive (default): the loop as one would first write it -- index every mini-batch, plain Adam,
  float32.
* ``--tricks``: the same loop with what the VAE actor adopted (actors/vae_core.py, actors/cpu_share.py):
  the thread governor (fewer torch threads while other processes keep the CPUs busy), one gather
  per epoch and contiguous slices, fused Adam, and the step the actor takes by default: its
  hand-written forward and backward pass (``vae_core.ManualStep``, the very class the actor runs,
  in ``--precision``: with bf16 its products in bf16 as under autocast; ``--step autograd`` for
  autograd instead, under bf16 autocast with bf16).  The OpenMP wait policy comes from the
  environment (bench/bench.py sets it as the run has it).

Run it in a clean process (``bench/bench.py --only speed`` does, one process per baseline):

    python bench/bare_vae.py [--tricks] [--precision fp32|bf16] [--step manual|autograd] [--rounds 5] [--epochs 200]
        [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_NPZ = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist_seq3000.npz"
)


class _NoGovernor:
    def start(self) -> None: ...

    def step(self) -> None: ...


def _governor(tricks: bool) -> Any:
    """The VAE actor's thread governor (actors/cpu_share.py), one of the adopted tricks; a no-op for naive."""
    if not tricks:
        return _NoGovernor()
    from actors import cpu_share

    return cpu_share.ThreadGovernor(torch.set_num_threads, torch.get_num_threads, torch.get_num_threads())


def bare_rounds(
    data: np.ndarray,
    rounds: int = 5,
    epochs: int = 200,
    batch_size: int = 500,
    latent: int = 18,
    threads: int | None = None,
    seed: int = 0,
    tricks: bool = False,
    precision: str = "fp32",
    step: str = "manual",
) -> list[float]:
    """Seconds of each round (``epochs`` epochs of VAE training plus one encode), in a plain loop.

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D), values in [0, 1]
    step : {"manual", "autograd"}
        With ``tricks``: the actor's ManualStep (in ``precision``) or autograd.

    Returns
    -------
    list of float, length ``rounds``
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    n, d = data.shape
    hidden = nn.Linear(d, 128)
    mean_head, logvar_head = nn.Linear(128, latent), nn.Linear(128, latent)
    dec_hidden, dec_out = nn.Linear(latent, 128), nn.Linear(128, d)
    params = [p for m in (hidden, mean_head, logvar_head, dec_hidden, dec_out) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, fused=True) if tricks else torch.optim.Adam(params, lr=1e-3)
    manual = None
    if tricks and step == "manual":
        from actors import vae_core  # torch only: no Ray, no messages

        net = vae_core.VAENet(vae_core.Encoder(d, latent), vae_core.Decoder(d, latent))
        with torch.no_grad():  # the same weights as the layers above
            for mine, theirs in zip(net.parameters(), params, strict=True):
                mine.copy_(theirs)
        params = list(net.parameters())
        hidden, mean_head = net.encoder.hidden, net.encoder.mean
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
        manual = vae_core.ManualStep(net, batch_size, 1.0, "bce", precision)
    x_all = torch.as_tensor(data, dtype=torch.float32).contiguous()
    prior = torch.zeros(n, latent)
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    out = []
    governor = _governor(tricks)
    for _ in range(rounds):
        start = time.perf_counter()
        governor.start()
        for _ in range(epochs):
            governor.step()
            order = torch.randperm(n)
            noise = torch.randn(n, latent)
            if tricks:
                xs, ps, ns = x_all.index_select(0, order), prior.index_select(0, order), noise.index_select(0, order)
            for s, e in bounds:
                if tricks:
                    x, p, eps = xs[s:e], ps[s:e], ns[s:e]
                else:
                    idx = order[s:e]
                    x, p, eps = x_all[idx], prior[idx], noise[idx]
                if manual is not None:
                    manual(x, p, eps)
                    opt.step()
                    continue
                with cast():
                    h = F.relu(hidden(x))
                    mu, logvar = mean_head(h).float(), logvar_head(h).float()
                    z = mu + torch.exp(0.5 * logvar) * eps
                    logits = dec_out(F.relu(dec_hidden(z))).float()
                    loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + 0.5 * torch.sum(
                        torch.exp(logvar) + (mu - p) ** 2 - 1.0 - logvar
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            mean_head(F.relu(hidden(x_all))).numpy()
        out.append(time.perf_counter() - start)
    return out


def bare_round(
    data: np.ndarray,
    epochs: int = 200,
    batch_size: int = 500,
    latent: int = 18,
    threads: int | None = None,
    seed: int = 0,
) -> float:
    """Seconds of one naive round (kept for bench/scaling.py and older callers)."""
    return bare_rounds(data, 1, epochs, batch_size, latent, threads, seed)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", default=os.environ.get("SERKET_RAY_MNIST_NPZ", DEFAULT_NPZ))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--tricks", action="store_true", help="the adopted tricks: one gather per epoch, fused Adam, --precision"
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--step", choices=("manual", "autograd"), default="manual", help="the tricks loop's step")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with np.load(args.npz) as f:
        images = f["images"] / 255.0
    rounds = bare_rounds(
        images,
        args.rounds,
        args.epochs,
        threads=args.threads,
        tricks=args.tricks,
        precision=args.precision,
        step=args.step,
    )
    row = {
        "tricks": args.tricks,
        "precision": args.precision,
        "step": args.step if args.tricks else "autograd",
        "threads": torch.get_num_threads(),
        "rounds_s": [round(r, 3) for r in rounds],
        "train_s": round(sum(rounds), 3),
        "process_s": round(time.perf_counter() - t0, 3),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"bare torch loop ({'tricks' if args.tricks else 'naive'}, {args.precision}, {row['step']} step, "
            f"{row['threads']} threads): "
            f"{row['train_s']:.2f} s for {args.rounds} x {args.epochs} epochs; rounds {row['rounds_s']}"
        )


if __name__ == "__main__":
    main()
