"""The tutorial with the VAE's hand-written step against autograd: accuracy per seed, same seeds.

Each (seed, step) is one in-process run (backend "local", ``--threads`` torch threads) of the tutorial
(VAE + GMM + MM on the MNIST sequence), the VAE's ``step`` set to "manual" or "autograd", everything
else as the tutorial has it.  Prints one JSON line per run and a summary.

    python bench/step_accuracy.py --seeds 0-2 --epochs 20 [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import build, load_mnist  # noqa: E402
from orchestrator.cli_parser import parse_seeds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-2", type=parse_seeds, help="seeds: ranges and lists, e.g. 0-2 or 0,3")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", default="manual,autograd")
    parser.add_argument("--workdir", default="bench-out/step_accuracy")
    args = parser.parse_args()
    from orchestrator import Orchestrator

    images, labels = load_mnist()
    got: dict[str, list[float]] = {}
    for seed in args.seeds:
        for step in args.steps.split(","):
            modules = build(images, labels, "full", args.epochs, "fp32")
            vae = next(m for m in modules if m.kind == "vae")
            vae.config = dataclasses.replace(vae.config, step=step)
            t0 = time.perf_counter()
            res = Orchestrator(
                modules, Path(args.workdir) / f"{step}_s{seed}", seed=seed, backend="local", threads=args.threads
            ).run(args.rounds)
            out = Path(args.workdir) / f"{step}_s{seed}"
            vae_s = [round(v, 2) for r in res.seconds for k, v in r.items() if k.endswith("_vae")]
            manifest = json.loads((out / "run.json").read_text())
            used = sorted({str(u["scalars"].get("step")) for u in manifest["updates"] if "step" in u["scalars"]})
            row = {
                "seed": seed,
                "step": step,
                "recorded_step": used,
                "epochs": args.epochs,
                "accuracy": res.accuracy,
                "final": res.final_accuracy,
                "seconds": round(time.perf_counter() - t0, 1),
                "vae_s": vae_s,
            }
            got.setdefault(step, []).append(res.final_accuracy)
            print(json.dumps(row), flush=True)
    for step, accs in got.items():
        print(json.dumps({"step": step, "mean_final": round(statistics.mean(accs), 4), "finals": accs}))


if __name__ == "__main__":
    main()
