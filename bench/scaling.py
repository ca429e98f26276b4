"""Cost of the GMM's and MM's numerical cores, and of a VAE epoch, as N grows.

For each N (default 3k, 30k, 300k) a fresh subprocess draws synthetic latents
(d=18, K=10 well-separated Gaussian classes, in the time order 0,1,...,9,0,...),
then times

* ``actors.gmm_core.gibbs_sweeps`` for a few sweeps (seconds per sweep),
* ``actors.mm_core.forward_backward`` (seconds per pass),

each on one thread, and measures peak memory: the process's peak RSS
(``resource.getrusage``) and tracemalloc's peak of numpy allocations during one
sweep and one pass.  A VAE epoch (784 -> 128 -> 18, batch 500) is timed on
3000 points and scaled linearly.

Usage::

    python bench/scaling.py [--sizes 3000,30000,300000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

D, K = 18, 10


def _one_size(n: int, n_sweeps: int, n_fb: int) -> dict:
    import resource
    import tracemalloc

    import numpy as np

    from actors import gmm_core, mm_core

    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 4.0, (K, D))
    truth = np.arange(n) % K
    x = centres[truth] + rng.normal(size=(n, D))
    prior = gmm_core.default_prior(x)
    labels = rng.integers(0, K, n)
    gmm_core.gibbs_sweeps(x, labels, K, prior, rng, 1)  # warm-up
    t0 = time.perf_counter()
    res = gmm_core.gibbs_sweeps(x, labels, K, prior, rng, n_sweeps)
    per_sweep = (time.perf_counter() - t0) / n_sweeps
    trans = np.full((K, K), 0.02)
    trans[np.arange(K), (np.arange(K) + 1) % K] = 0.82
    log_em = res.log_likelihood
    mm_core.forward_backward(log_em, trans)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_fb):
        mm_core.forward_backward(log_em, trans)
    per_fb = (time.perf_counter() - t0) / n_fb
    rss_before_trace = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    gmm_core.gibbs_sweeps(x, labels, K, prior, rng, 2)
    _, gmm_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    mm_core.forward_backward(log_em, trans)
    _, fb_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n": n,
        "gmm_seconds_per_sweep": per_sweep,
        "fb_seconds_per_pass": per_fb,
        "gmm_tracemalloc_peak_bytes": gmm_peak,
        "fb_tracemalloc_peak_bytes": fb_peak,
        "peak_rss_bytes": rss_before_trace,
        "inputs_bytes": x.nbytes + log_em.nbytes,
    }


def _vae_epoch(n: int = 3000, dim: int = 784, threads: int = 1) -> float:
    import torch

    from actors import vae_core

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, dim, generator=gen)
    net = vae_core.VAENet(vae_core.Encoder(dim, D), vae_core.Decoder(dim, D))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mu = torch.zeros(n, D)
    vae_core.train_epochs(net, opt, x, mu, 1, 500, 1.0, "bce", gen)  # warm-up
    t0 = time.perf_counter()
    epochs = 5
    vae_core.train_epochs(net, opt, x, mu, epochs, 500, 1.0, "bce", gen)
    return (time.perf_counter() - t0) / epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,30000,300000")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        n = args.child
        sweeps = 10 if n <= 30000 else 3
        print(json.dumps(_one_size(n, sweeps, 5 if n <= 30000 else 2)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, env=env, check=True
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"N={n:>8}: GMM {row['gmm_seconds_per_sweep'] * 1e3:9.2f} ms/sweep  MM forward-backward "
            f"{row['fb_seconds_per_pass'] * 1e3:9.2f} ms/pass  "
            f"peak RSS {row['peak_rss_bytes'] / 2**20:7.1f} MiB  tracemalloc peak GMM "
            f"{row['gmm_tracemalloc_peak_bytes'] / 2**20:7.1f} MiB, "
            f"MM {row['fb_tracemalloc_peak_bytes'] / 2**20:7.1f} MiB",
            flush=True,
        )
    vae = {t: _vae_epoch(threads=t) for t in (1, 2)}
    print(f"VAE epoch on 3000 x 784 (batch 500): {vae[1]:.3f} s on 1 thread, {vae[2]:.3f} s on 2 threads", flush=True)
    big = rows[-1]
    n_big = big["n"]
    for target in (70_000, 1_000_000):
        scale = target / n_big
        gmm_round = 100 * big["gmm_seconds_per_sweep"] * scale
        mm_round = 11 * big["fb_seconds_per_pass"] * scale
        vae_round = 200 * vae[1] * target / 3000
        print(
            f"extrapolated to N={target}: GMM 100 sweeps {gmm_round:8.1f} s, MM 11 passes {mm_round:7.1f} s, "
            f"VAE 200 epochs {vae_round:8.1f} s (1 thread) per round",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "vae_epoch_seconds_3000x784": vae}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
