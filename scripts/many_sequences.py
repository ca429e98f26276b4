"""Many short sequences, given with --lengths or as one long sequence: accuracy and transition TV.

300 sequences of 10 points each follow the cycle 0, 1, ..., 9 from a random start;
the images are the tutorial's 3000 MNIST images drawn by label (each used once).
Run through the real command line (``serket-ray run``), tutorial settings by default:

    python scripts/many_sequences.py --out /tmp/many --epochs 200

prints, for each way of giving the data, the final accuracy and the mean row TV of
the learned transitions (clusters matched to labels) to the cycle.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from actors.scoring import transition_distance
from orchestrator.checkpoint import read_table, table_arrays
from orchestrator.cli import main

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_seq3000.npz"


def cycle_sequences(
    images: np.ndarray, labels: np.ndarray, n_seq: int, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_seq`` sequences of ``length`` points following the cycle of the labels from random starts.

    Returns
    -------
    images : numpy.ndarray, shape (n_seq * length, D)
    labels : numpy.ndarray, shape (n_seq * length,)
    lengths : numpy.ndarray, shape (n_seq,)
    """
    k = int(labels.max()) + 1
    starts = rng.integers(0, k, size=n_seq)
    want = ((starts[:, None] + np.arange(length)[None, :]) % k).reshape(-1)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(k)}
    if any(np.count_nonzero(want == c) > len(pools[c]) for c in range(k)):
        raise ValueError("not enough images of some label for these sequences")
    order = np.array([pools[c].pop() for c in want])
    return images[order], labels[order], np.full(n_seq, length, dtype=np.int64)


def run(out: Path, data: Path, labels: Path, lengths: Path | None, args: argparse.Namespace) -> dict[str, float]:
    argv = [
        "run",
        "--data",
        str(data),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
        "--backend",
        args.backend,
        "--rounds",
        str(args.rounds),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "500",
        "--latent-dim",
        "18",
        "--sweeps",
        "100",
        "--seed",
        str(args.seed),
    ]
    if lengths is not None:
        argv += ["--lengths", str(lengths)]
    if main(argv) != 0:
        raise SystemExit(f"run failed: {' '.join(argv)}")
    manifest = json.loads((out / "run.json").read_text())
    last = max(int(p.name) for p in (out / "module003_mm").iterdir() if p.is_dir())
    report, _ = table_arrays(read_table(out / "module003_mm" / f"{last:03d}" / "report.arrow"))
    classes = np.loadtxt(out / "module002_gmm" / "class_learn.txt", dtype=np.int64)
    y = np.load(labels)
    cycle = np.roll(np.eye(10), 1, axis=1)
    return {
        "accuracy": manifest["rounds"][-1]["accuracy"],
        "tv": transition_distance(report["transitions"], classes, y, cycle),
        "seconds": manifest.get("total_seconds"),
    }


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--npz", type=Path, default=Path(os.environ.get("SERKET_RAY_MNIST_NPZ", DEFAULT_NPZ)))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("ray", "local"), default="local")
    parser.add_argument("--only", choices=("lengths", "one"), default=None, help="run one way only")
    args = parser.parse_args(argv)
    with np.load(args.npz) as d:
        images, labels = d["images"].reshape(len(d["images"]), -1) / 255.0, d["labels"].astype(np.int64)
    x, y, lengths = cycle_sequences(images, labels, 300, 10, np.random.default_rng(0))
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "x.npy", x)
    np.save(args.out / "y.npy", y)
    np.savetxt(args.out / "lengths.txt", lengths, fmt="%d")
    ways = {"lengths": args.out / "lengths.txt", "one": None}
    for name, path in ways.items():
        if args.only not in (None, name):
            continue
        got = run(args.out / f"run_{name}", args.out / "x.npy", args.out / "y.npy", path, args)
        print(
            json.dumps(
                {
                    "given": "--lengths (300 x 10)" if path else "one long sequence",
                    "epochs": args.epochs,
                    "seed": args.seed,
                    **got,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main_()
