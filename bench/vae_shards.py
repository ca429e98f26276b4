"""The data-parallel VAE against the one-actor VAE: accuracy, loss and seconds of whole tutorial runs.

Each configuration is one ``serket-ray run`` in its own clean process on the tutorial's 3000 images
(tutorial settings unless given: 5 rounds x 200 epochs, batch 500, latent 18, 100 sweeps), one after
the other (order flipped on odd repeats so that load from other jobs hits both alike):

* ``S=1``: the VAE as one actor, ``--threads T``;
* ``S=2``: ``--resources '{"vae": {"shards": 2, "num_cpus": C}}'``, each shard with ``T`` threads at most C.

Prints per configuration: accuracy after each round, the VAE's last-epoch loss per round, the VAE's and
the whole run's seconds; then the differences S=2 - S=1.

    python bench/vae_shards.py [--epochs 200] [--rounds 5] [--threads 1] [--shard-cpus 1] [--repeats 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_NPZ = HERE.parent.parent / "shared" / "data" / "mnist_seq3000.npz"


def run_one(npz: Path, out: Path, shards: int, args: argparse.Namespace) -> dict[str, Any]:
    """One whole run in a fresh process; its accuracies, VAE losses and seconds from run.json."""
    cmd = [
        sys.executable, "-m", "orchestrator.cli", "run",
        "--data", str(npz), "--data-key", "images", "--labels", str(npz), "--labels-key", "labels",
        "--scale", "255", "--rounds", str(args.rounds), "--epochs", str(args.epochs),
        "--threads", str(args.threads), "--seed", str(args.seed), "--out", str(out), "--overwrite", "--quiet",
    ]  # fmt: skip
    if shards > 1:
        vae = {"shards": shards, "num_cpus": args.shard_cpus}
        resources = {"vae": vae, "gmm": {"num_cpus": 0}, "mm": {"num_cpus": 0}}
        cmd += ["--resources", json.dumps(resources)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=HERE.parent)
    wall = time.perf_counter() - start
    run = json.loads((out / "run.json").read_text())
    vae = [u for u in run["updates"] if u["module"].endswith("_vae")]
    return {
        "shards": shards,
        "accuracy": [round(r["accuracy"], 4) for r in run["rounds"] if "accuracy" in r],
        "vae_loss": [round(u["scalars"]["final_loss"], 3) for u in vae],
        "vae_seconds": [round(u["compute_seconds"], 2) for u in vae],
        "wall_seconds": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=Path(os.environ.get("SERKET_RAY_MNIST_NPZ", DEFAULT_NPZ)))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard-cpus", type=float, default=1.0)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vae-shards-") as tmp:
        for rep in range(args.repeats):
            order = [1, args.shards] if rep % 2 == 0 else [args.shards, 1]
            for s in order:
                row = run_one(args.npz, Path(tmp) / f"s{s}-{rep}", s, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    for s in (1, args.shards):
        mine = [r for r in rows if r["shards"] == s]
        print(f"S={s}: final accuracy {[r['accuracy'][-1] for r in mine]}, wall s {[r['wall_seconds'] for r in mine]}")


if __name__ == "__main__":
    main()
