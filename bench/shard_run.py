"""A whole run with a sharded GMM + MM (Observation -> GMM -> MM) on Ray: the bytes the driver exchanges per update.

For each N, runs ``Orchestrator(..., shards=S)`` on synthetic latents
(d = 18, K = 10 classes in the time order 0, 1, ..., 9, 0, ...) on a local
Ray and reads ``driver_bytes_received`` / ``driver_bytes_sent`` of every GMM
and MM update from run.json, with the SHA-256 of the last round's
``class_learn.txt`` and ``trans_prob_learn.txt`` (equal for every S).

    python bench/shard_run.py [--sizes 20000,80000] [--shards 1,2] [--sweeps 5] [--rounds 2] [--out DIR]

(The observation itself is put into the object store once by the driver, as in any run; what the
sharded modules send and receive per update is what this measures.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

D, K = 18, 10


def graph(n: int, sweeps: int) -> list[Any]:
    from actors import GMM, MarkovModel, Observation

    rng = np.random.default_rng(0)
    labels = np.arange(n) % K
    x = rng.normal(0.0, 4.0, (K, D))[labels] + rng.normal(size=(n, D))
    obs, gmm, mm = Observation(x), GMM(K, itr=sweeps, category=labels), MarkovModel(em_iterations=3)
    gmm.connect(obs)
    mm.connect(gmm)
    return [obs, gmm, mm]


def one(n: int, shards: int, sweeps: int, rounds: int, out: Path) -> dict[str, Any]:
    from orchestrator import Orchestrator

    resources = {"gmm": {"num_cpus": 0.5}, "mm": {"num_cpus": 0.5}}
    orch = Orchestrator(graph(n, sweeps), out, seed=0, threads=1, shards=shards, sharded=True, resources=resources)
    try:
        orch.run(rounds)
    finally:
        orch.close()
    manifest = json.loads((out / "run.json").read_text())
    rows = [
        {
            "module": u["module"],
            "round": u["round"],
            "received": u["scalars"]["driver_bytes_received"],
            "sent": u["scalars"]["driver_bytes_sent"],
        }
        for u in manifest["updates"]
    ]
    gmm = next(p for p in out.glob("module*_gmm"))
    mm = next(p for p in out.glob("module*_mm"))
    digest = hashlib.sha256((gmm / "class_learn.txt").read_bytes() + (mm / "trans_prob_learn.txt").read_bytes())
    return {"n": n, "shards": shards, "updates": rows, "sha256": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,80000")
    parser.add_argument("--shards", default="1,2")
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    base = Path(args.out or tempfile.mkdtemp(prefix="shard_run_"))
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        for s in (int(s) for s in args.shards.split(",")):
            res = one(n, s, args.sweeps, args.rounds, base / f"n{n}_s{s}")
            results.append(res)
            for row in res["updates"]:
                print(
                    f"N {n:>8}  S {s}  {row['module']:<14} round {row['round']}  driver received {row['received']:>8} B"
                    f"  sent {row['sent']:>8} B",
                    flush=True,
                )
            print(f"N {n:>8}  S {s}  sha256 {res['sha256']}", flush=True)
    ray.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
