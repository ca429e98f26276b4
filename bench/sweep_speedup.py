"""Speed-up of a seed sweep: 2 pipelines at once vs the same 2 one after the other.

Runs on this machine's local Ray (all its cores) with small settings (digits
data, 30 epochs, 3 rounds by default) and prints the wall times and the ratio.

Three ways are timed, each on seeds 0 and 1:

* ``concurrent``: :func:`orchestrator.sweep.sweep` with 2 at once (1 CPU per VAE);
* ``sequential-same``: the same sweep with ``max_concurrent=1`` (same resources,
  one pipeline at a time);
* ``sequential-auto``: two plain runs one after the other with the default
  ("auto") resources, where the VAE gets most of the machine's CPUs.

Usage::

    python bench/sweep_speedup.py [--epochs 30] [--rounds 3] [--repeats 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(epochs: int, sweeps: int):
    """A new digits graph (Observation -> VAE -> GMM -> MM) per call."""
    from orchestrator.data import default_digits
    from orchestrator.recipe import TutorialRecipe

    images, labels = default_digits()
    return TutorialRecipe(epochs=epochs, sweeps=sweeps).build(images, labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sweeps", type=int, default=100, help="GMM Gibbs sweeps per round")
    parser.add_argument("--repeats", type=int, default=1, help="time each way this many times (best is kept)")
    parser.add_argument("--out", help="keep outputs here (default: a temporary directory)")
    args = parser.parse_args(argv)

    import ray

    from orchestrator import Orchestrator
    from orchestrator.sweep import sweep

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    seeds = [0, 1]

    def concurrent(d: Path) -> dict[int, float]:
        res = sweep(lambda: build(args.epochs, args.sweeps), seeds, d, args.rounds, max_concurrent=2)
        assert res.concurrent == 2, res.concurrent
        return {r.seed: r.accuracy for r in res.rows}

    def sequential_same(d: Path) -> dict[int, float]:
        res = sweep(lambda: build(args.epochs, args.sweeps), seeds, d, args.rounds, max_concurrent=1)
        return {r.seed: r.accuracy for r in res.rows}

    def sequential_auto(d: Path) -> dict[int, float]:
        acc = {}
        for s in seeds:
            orch = Orchestrator(build(args.epochs, args.sweeps), d / f"seed_{s}", seed=s)
            try:
                acc[s] = orch.run(args.rounds).final_accuracy
            finally:
                orch.close()
        return acc

    ways = {"sequential-same": sequential_same, "concurrent": concurrent, "sequential-auto": sequential_auto}
    best: dict[str, float] = {}
    accuracy: dict[str, dict[int, float]] = {}
    try:
        for rep in range(args.repeats):
            for name, fn in ways.items():
                d = root / f"{name}-{rep}"
                t0 = time.perf_counter()
                accuracy[name] = fn(d)
                seconds = time.perf_counter() - t0
                best[name] = min(best.get(name, np.inf), seconds)
                print(f"{name:<16} {seconds:7.1f} s  accuracy {accuracy[name]}", flush=True)
    finally:
        ray.shutdown()
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    summary = {
        "cpus": os.cpu_count(),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "sweeps": args.sweeps,
        "repeats": args.repeats,
        "seconds": {k: round(v, 2) for k, v in best.items()},
        "speedup_vs_sequential_same": round(best["sequential-same"] / best["concurrent"], 3),
        "speedup_vs_sequential_auto": round(best["sequential-auto"] / best["concurrent"], 3),
        "accuracy": accuracy,
    }
    print(
        f"speed-up of 2 at once: {summary['speedup_vs_sequential_same']:.2f}x vs the same 2 one after the other "
        f"(same resources), {summary['speedup_vs_sequential_auto']:.2f}x vs 2 plain runs with auto resources"
    )
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
