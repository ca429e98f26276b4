"""serket-ray benchmarks: accuracy per variant and seed, seconds per module per round, speed ratios
against a bare torch loop timed in the same command, GMM/MM scaling in N, and the original's figures.

    python bench/bench.py                       # everything (about 25 minutes on 2 cores)
    python bench/bench.py --only speed,scaling  # parts: accuracy, speed, scaling, chain
    python bench/bench.py --only chain --seeds 0-2  # random Markov chain over digits (not in the default)
    python bench/bench.py --only chains         # every kind of chain x seed x variant, with hmmlearn's peer (bench/chains.py)
    python bench/bench.py --seeds 0-1 --rounds 5

Timings are ratios against a baseline run in this same process, interleaved (baseline, candidate,
baseline, candidate, ...) so that load on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import chains  # noqa: E402
from bare_vae import bare_round  # noqa: E402

ORIGINAL = {
    "accuracy (VAE+GMM+MM)": 0.674, "accuracy (VAE+GMM)": 0.705, "whole run s": 1142.0,
    "VAE s/round": 14.0, "GMM s/round": 210.0, "MM s/round": 4.0,
}
DEFAULT_NPZ = HERE.parent.parent / "shared" / "data" / "mnist_seq3000.npz"


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    path = Path(os.environ.get("SERKET_RAY_MNIST_NPZ", DEFAULT_NPZ))
    with np.load(path) as d:
        return d["images"] / 255.0, d["labels"].astype(np.int64)


def build(images: np.ndarray, labels: np.ndarray, variant: str, epochs: int = 200) -> list[Any]:
    from actors import GMM, VAE, MarkovModel, Observation

    obs, vae, gmm = Observation(images), VAE(18, itr=epochs, batch_size=500), GMM(10, category=labels)
    vae.connect(obs)
    gmm.connect(vae)
    modules = [obs, vae, gmm]
    if variant != "no-mm":
        mm = MarkovModel(message="serket" if variant == "serket-message" else "forward-backward")
        mm.connect(gmm)
        modules.append(mm)
    return modules


def next_digit_mass(out: Path, labels: np.ndarray) -> float:
    """Smallest, over digits, of the learned transition mass on the true next digit (clusters matched to digits)."""
    from actors.scoring import best_matching

    classes = np.loadtxt(out / "module002_gmm" / "class_learn.txt", dtype=int)
    trans = np.loadtxt(out / "module003_mm" / "trans_prob_learn.txt")
    match = dict(best_matching(classes, labels).tolist())  # cluster -> digit
    digit_to_cluster = {d: c for c, d in match.items()}
    masses = []
    for digit in range(10):
        c, nxt = digit_to_cluster.get(digit), digit_to_cluster.get((digit + 1) % 10)
        masses.append(0.0 if c is None or nxt is None else float(trans[c, nxt]))
    return min(masses)


def part_accuracy(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Accuracy per variant and seed (in-process workers: results equal the Ray actors', tested)."""
    from orchestrator import Orchestrator

    images, labels = load_mnist()
    for variant in args.variants:
        for seed in args.seeds:
            out = Path(args.workdir) / f"{variant}_s{seed}"
            t0 = time.perf_counter()
            res = Orchestrator(build(images, labels, variant, args.epochs), out, seed=seed, backend="local").run(args.rounds)
            row = {"part": "accuracy", "variant": variant, "seed": seed, "accuracy": res.accuracy,
                   "final": res.final_accuracy, "seconds": round(time.perf_counter() - t0, 1), "per_round": res.seconds}
            if variant != "no-mm":
                row["min_next_digit_mass"] = round(next_digit_mass(out, labels), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)


def _vae_actor(images: np.ndarray, epochs: int) -> tuple[Any, Any]:
    """A VAE actor started as the orchestrator starts it (auto resources, torch threads), and its data."""
    import ray

    from actors.config import VAEConfig
    from actors.vae import VAEWorker
    from messages import ObservationData
    from orchestrator.executor import RayExecutor, auto_resources, threads_for

    res = auto_resources("vae")
    actor = RayExecutor(None).start("vae", VAEWorker, (VAEConfig(epochs=epochs), "vae", "gmm", "obs", np.random.SeedSequence(0), None, None, threads_for(res)), res)
    ray.get(actor.get_state.remote())  # actor up
    return actor, ray.put(ObservationData(sender="obs", receiver="vae", round=0, data=images))


def _vae_actor_round(actor: Any, data: Any, round_index: int) -> float:
    """Seconds of one VAE update inside its Ray actor, seen from the driver."""
    import ray

    t0 = time.perf_counter()
    ray.get(actor.update.options(num_returns=3).remote(round=round_index, data=data))
    return time.perf_counter() - t0


def part_speed(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """VAE actor vs bare loop; whole run vs 5 bare rounds; GMM and MM update seconds."""
    import ray

    from orchestrator import Orchestrator

    images, labels = load_mnist()
    ray.init(include_dashboard=False, log_to_driver=False)
    bare, actor = [], []
    vae, data = _vae_actor(images, args.epochs)
    for r in range(args.repeats + 1):  # interleaved pairs; the actor's first update is reported apart
        bare.append(bare_round(images, args.epochs, threads=os.cpu_count()))
        actor.append(_vae_actor_round(vae, data, r))
    ray.kill(vae)
    b, a = statistics.median(bare), statistics.median(actor[1:])
    rows.append({"part": "speed", "what": "VAE update in its actor / bare loop", "ratio": round(a / b, 3), "bare_s": round(b, 2), "actor_s": round(a, 2),
                 "actor_first_update_s": round(actor[0], 2), "bare_all": [round(x, 2) for x in bare], "actor_all": [round(x, 2) for x in actor]})
    print(json.dumps(rows[-1]), flush=True)
    out = Path(args.workdir) / "speed_run"
    t0 = time.perf_counter()
    res = Orchestrator(build(images, labels, "full", args.epochs), out, seed=0).run(args.rounds)
    whole = time.perf_counter() - t0
    bare_after = bare_round(images, args.epochs, threads=os.cpu_count())
    base = args.rounds * statistics.median(bare + [bare_after])
    rows.append({"part": "speed", "what": f"whole {args.rounds}-round run on Ray / {args.rounds} bare rounds", "ratio": round(whole / base, 3),
                 "whole_s": round(whole, 1), "bare_rounds_s": round(base, 1), "accuracy": [round(a, 4) for a in res.accuracy], "per_round": res.seconds})
    print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    gmm_t, mm_t = _replay_gmm_mm(out, args.rounds)
    updates = json.loads((out / "run.json").read_text())["updates"]
    in_run = {kind: [round(u["compute_seconds"], 3) for u in updates if u["module"].endswith("_" + kind)] for kind in ("gmm", "mm")}
    rows.append({"part": "speed", "what": "GMM update (N=3000, d=18, K=10, 100 sweeps + split/merge search), per round",
                 "replayed_s": gmm_t, "in_actor_s": in_run["gmm"], "target": "<= 1 s"})
    rows.append({"part": "speed", "what": "MM update (N=3000, K=10), per round", "replayed_s": mm_t, "in_actor_s": in_run["mm"], "target": "<= 0.05 s"})
    print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)


def _replay_gmm_mm(out: Path, rounds: int, repeats: int = 3) -> tuple[list[float], list[float]]:
    """Each round's GMM and MM update replayed in this process from the run's checkpoints
    (same inputs and starting state as in the run); the fastest of ``repeats`` per round."""
    from actors.config import GMMConfig, MMConfig
    from actors.gmm import GMMWorker
    from actors.mm import MMWorker
    from orchestrator.checkpoint import read_message
    from orchestrator.session import load_state

    gmm_dir, mm_dir = out / "module002_gmm", out / "module003_mm"
    gmm_t, mm_t = [], []
    for r in range(rounds):
        latents = read_message(out / "module001_vae" / f"{r:03d}" / "latents.arrow")
        prior = read_message(mm_dir / f"{r - 1:03d}" / "class_prior.arrow") if r else None
        post = read_message(gmm_dir / f"{r:03d}" / "posteriors.arrow")
        best_g = best_m = float("inf")
        for _ in range(repeats):
            g = GMMWorker(GMMConfig(), "g", "m", "v", np.random.SeedSequence(0), sequence=True)
            m = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(0))
            if r:
                g.set_state(load_state(gmm_dir / f"{r - 1:03d}"))
                m.set_state(load_state(mm_dir / f"{r - 1:03d}"))
            t0 = time.perf_counter()
            g.update(r, latents, prior)
            best_g = min(best_g, time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.update(r, post)
            best_m = min(best_m, time.perf_counter() - t0)
        gmm_t.append(round(best_g, 3))
        mm_t.append(round(best_m, 4))
    return gmm_t, mm_t


def part_chain(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The full model on the tutorial's images reordered by a random Markov chain over digits.

    Per seed: a random doubly stochastic chain with about 3 likely successors per digit
    (:func:`orchestrator.sequences.random_transitions`, drawn with that seed) orders all the
    images; the learned transitions (clusters matched to digits) are compared with the true
    chain and with the empirical transitions of the sampled sequence.
    """
    from actors.scoring import transition_distance
    from orchestrator import Orchestrator
    from orchestrator.sequences import chain_sequence

    images, labels = load_mnist()
    for seed in args.seeds:
        seq = chain_sequence(images, labels, len(labels), np.random.default_rng(seed))
        states, k = seq.states, len(seq.classes)
        empirical = seq.empirical_transitions()
        out = Path(args.workdir) / f"chain_s{seed}"
        t0 = time.perf_counter()
        res = Orchestrator(build(seq.data, seq.labels, "full", args.epochs), out, seed=seed, backend="local").run(args.rounds)
        classes = np.loadtxt(out / "module002_gmm" / "class_learn.txt", dtype=int)
        learned = np.loadtxt(out / "module003_mm" / "trans_prob_learn.txt")
        uniform = np.full((k, k), 1.0 / k)
        row = {"part": "chain", "seed": seed, "accuracy": res.accuracy, "final": res.final_accuracy,
               "tv_true": round(transition_distance(learned, classes, states, seq.transitions), 4),
               "tv_empirical": round(transition_distance(learned, classes, states, empirical), 4),
               "tv_empirical_to_true": round(transition_distance(empirical, states, states, seq.transitions), 4),
               "tv_uniform_to_true": round(transition_distance(uniform, states, states, seq.transitions), 4),
               "cluster_sizes": np.bincount(classes, minlength=k).tolist(), "n_reused": seq.n_reused,
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)


SCALING_CHILD = """
import sys, time, resource, numpy as np
from actors.config import GMMConfig, MMConfig
from actors.gmm import GMMWorker
from actors.mm import MMWorker
from messages import Latents
n, sweeps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
centres = rng.normal(scale=4, size=(10, 18))
z = centres[np.arange(n) % 10] + rng.normal(size=(n, 18))
g = GMMWorker(GMMConfig(n_sweeps=sweeps, mixture_moves=0), "g", "m", "v", np.random.SeedSequence(0))
t0 = time.perf_counter(); post, _, _ = g.update(0, Latents(sender="v", receiver="g", round=0, z=z)); tg = time.perf_counter() - t0
m = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(0))
t0 = time.perf_counter(); m.update(0, post); tm = time.perf_counter() - t0
print(n, sweeps, tg, tm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def part_scaling(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """GMM and MM update time in N (synthetic latents, d=18, K=10), each size in a fresh process (peak memory)."""
    for n, sweeps in ((3_000, 100), (30_000, 20), (300_000, 5)):
        out = subprocess.run([sys.executable, "-c", SCALING_CHILD, str(n), str(sweeps)], capture_output=True, text=True, check=True)
        _, _, tg, tm, rss = out.stdout.split()
        rows.append({"part": "scaling", "N": n, "gmm_sweeps": sweeps, "gmm_s_per_sweep": round(float(tg) / sweeps, 4),
                     "gmm_s_per_100_sweeps": round(float(tg) / sweeps * 100, 2), "mm_s": round(float(tm), 3), "peak_rss_MiB": round(float(rss))})
        print(json.dumps(rows[-1]), flush=True)


def table(rows: list[dict[str, Any]]) -> str:
    """One printable table of every measurement and the original's figures."""
    lines = ["| part | what | figures |", "|---|---|---|"]
    for r in rows:
        if r["part"] == "accuracy":
            accs = " ".join(f"{a:.3f}" for a in r["accuracy"])
            extra = f"; min next-digit mass {r['min_next_digit_mass']}" if "min_next_digit_mass" in r else ""
            secs = "; s/round " + ", ".join(f"{k.split('_')[1]} {v:.2f}" for k, v in r["per_round"][-1].items())
            lines.append(f"| accuracy | {r['variant']} seed {r['seed']} | per round {accs}{extra}{secs} |")
        elif r["part"] == "speed":
            figs = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("part", "what", "per_round", "bare_all", "actor_all"))
            lines.append(f"| speed | {r['what']} | {figs} |")
        elif r["part"] == "chain":
            lines.append(f"| chain | seed {r['seed']} | accuracy {r['final']:.3f}; TV to true {r['tv_true']:.3f}, to empirical {r['tv_empirical']:.3f} "
                         f"(empirical to true {r['tv_empirical_to_true']:.3f}, uniform to true {r['tv_uniform_to_true']:.3f}); {r['seconds']} s |")
        else:
            lines.append(f"| scaling | N={r['N']} | GMM {r['gmm_s_per_100_sweeps']} s/100 sweeps, MM {r['mm_s']} s, peak {r['peak_rss_MiB']} MiB |")
    by_variant: dict[str, list[float]] = {}
    for r in rows:
        if r["part"] == "accuracy":
            by_variant.setdefault(r["variant"], []).append(r["final"])
    for v, accs in by_variant.items():
        lines.append(f"| accuracy | {v}: mean over seeds | {statistics.mean(accs):.4f} (min {min(accs):.4f}, max {max(accs):.4f}, n={len(accs)}) |")
    chain = [r for r in rows if r["part"] == "chain"]
    if chain:
        tv = [r["tv_true"] for r in chain]
        lines.append(f"| chain | mean over seeds | TV to true {statistics.mean(tv):.3f} (max {max(tv):.3f}), "
                     f"accuracy {statistics.mean(r['final'] for r in chain):.3f}, n={len(chain)} |")
    lines.append("| original | Serket, same machine | " + ", ".join(f"{k} {v}" for k, v in ORIGINAL.items()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="accuracy,speed,scaling")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--variants", default="full,no-mm,serket-message")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default="bench-out")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--kinds", default="tutorial,random-chain,self-transitions,noisy-cycle,independent,short-cycles", help="chains: orders to run")
    parser.add_argument("--chain-variants", default=",".join(chains.VARIANTS), help="chains: " + ", ".join(chains.VARIANTS))
    parser.add_argument("--fixed-latents", action="store_true", help="chains: GMM+MM only, on the gmm run's first-round latents")
    parser.add_argument("--gmm-per-order", action="store_true", help="chains: run VAE+GMM on every order instead of reindexing one run")
    parser.add_argument("--threads", type=int, default=1, help="chains: torch threads of the VAE (1: runs side by side stay comparable)")
    parser.add_argument("--rerun", action="store_true", help="chains: rerun the per-seed VAE+GMM run even if its outputs exist")
    args = parser.parse_args()
    lo, _, hi = args.seeds.partition("-")
    args.seeds = list(range(int(lo), int(hi or lo) + 1))
    args.variants = args.variants.split(",")
    args.kinds = args.kinds.split(",")
    args.chain_variants = args.chain_variants.split(",")
    parts = args.only.split(",")
    rows: list[dict[str, Any]] = []
    for name, fn in (("accuracy", part_accuracy), ("speed", part_speed), ("scaling", part_scaling), ("chain", part_chain)):
        if name in parts:
            fn(args, rows)
    if "chains" in parts:
        chains.part_chains(args, rows, load_mnist)
    print(table([r for r in rows if r["part"] != "chains"]) if any(r["part"] != "chains" for r in rows) else "")
    print(chains.table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
