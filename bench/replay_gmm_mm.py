"""Replay a run's GMM and MM updates from its checkpoints, in this process: CPU seconds per round, or a dump.

    python bench/replay_gmm_mm.py RUN_DIR                  # CPU s per round: GMM (its move search, its sweeps), MM
    python bench/replay_gmm_mm.py RUN_DIR --dump OUT.npz   # every output of every round, to compare code versions
    python bench/replay_gmm_mm.py RUN_DIR --seed 3         # the workers seeded otherwise: another path of moves

Each round gets the inputs and starting state the run gave it (the VAE's latents, the MM's message and both
workers' states of the round before), so two code versions replaying the same run directory must dump
equal arrays if they compute the same thing (``--compare A.npz B.npz``).  CPU time (``time.process_time``,
fastest of ``--repeats``) is used because it is less disturbed by other jobs than wall time; run it with
``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors import gmm_core, sequence_core
from actors.config import GMMConfig, MMConfig
from actors.gmm import GMMWorker
from actors.mm import MMWorker
from orchestrator.checkpoint import read_message
from orchestrator.run_dir import load_state


def _round(out: Path, r: int, seed: int = 0) -> tuple[Any, Any, Any, GMMWorker, MMWorker]:
    gmm_dir, mm_dir = out / "module002_gmm", out / "module003_mm"
    latents = read_message(out / "module001_vae" / f"{r:03d}" / "latents.arrow")
    prior = read_message(mm_dir / f"{r - 1:03d}" / "class_prior.arrow") if r else None
    post = read_message(gmm_dir / f"{r:03d}" / "posteriors.arrow")
    g = GMMWorker(GMMConfig(), "gmm", "mm", "vae", np.random.SeedSequence(seed), sequence=True)
    m = MMWorker(MMConfig(), "mm", "gmm", np.random.SeedSequence(seed))
    if r:
        g.set_state(load_state(gmm_dir / f"{r - 1:03d}"))
        m.set_state(load_state(mm_dir / f"{r - 1:03d}"))
    return latents, prior, post, g, m


def _timed(phase: dict[str, float]) -> None:
    """Add each call's CPU seconds of the move search and of the sweeps to ``phase``."""
    for mod, name in ((sequence_core, "search"), (gmm_core, "gibbs_sweeps")):
        inner = getattr(mod, name)

        def wrapper(*args: Any, _inner: Any = inner, _name: str = name, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                phase[_name] = phase.get(_name, 0.0) + time.process_time() - t0

        setattr(mod, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--dump", type=Path, help="write every round's outputs to this .npz")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="two dumps: which arrays differ")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--seed", type=int, default=0, help="the workers' seed (the run's GMM has its own stream: moves differ by seed)"
    )
    args = parser.parse_args()
    if args.compare:
        a, b = (np.load(p, allow_pickle=True) for p in args.compare)
        differ = [k for k in a.files if k not in b.files or not np.array_equal(a[k], b[k])]
        print(f"{len(a.files)} arrays, {len(differ)} differ: {differ}")
        sys.exit(1 if differ else 0)
    rounds = len(sorted((args.run / "module002_gmm").glob("[0-9][0-9][0-9]")))
    if args.dump:
        res: dict[str, np.ndarray] = {}
        for r in range(rounds):
            latents, prior, post, g, m = _round(args.run, r, args.seed)
            gp, means, rep = g.update(r, latents, prior)
            mp, mrep = m.update(r, post)
            res |= {f"r{r}_probs": gp.probs, f"r{r}_loglik": gp.log_likelihood, f"r{r}_means": means.means}
            res |= {f"r{r}_{k}": rep[k] for k in ("labels", "class_means", "counts", "weights", "covariances")}
            res[f"r{r}_moves"] = np.array(rep["moves"], dtype=str)
            res |= {f"r{r}_mm_prior": mp.probs, f"r{r}_mm_transitions": mrep["transitions"]}
            res[f"r{r}_mm_log_likelihood"] = np.array(mrep["log_likelihood"])
        np.savez(args.dump, **res)
        print(f"{len(res)} arrays of {rounds} rounds in {args.dump}")
        return
    phase: dict[str, float] = {}
    _timed(phase)
    for r in range(rounds):
        best: tuple[float, dict[str, float]] = (float("inf"), {})
        best_mm = float("inf")
        for _ in range(args.repeats):
            latents, prior, post, g, m = _round(args.run, r, args.seed)
            phase.clear()
            t0 = time.process_time()
            g.update(r, latents, prior)
            t = time.process_time() - t0
            best = min(best, (t, dict(phase)), key=lambda b: b[0])
            t0 = time.process_time()
            m.update(r, post)
            best_mm = min(best_mm, time.process_time() - t0)
        p = best[1]
        print(
            f"round {r}: GMM {best[0]:.3f} s (search {p.get('search', 0):.3f}, sweeps {p.get('gibbs_sweeps', 0):.3f}),"
            f" MM {best_mm:.4f} s CPU"
        )


if __name__ == "__main__":
    main()
