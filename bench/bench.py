"""serket-ray benchmarks: accuracy per variant and seed, seconds per module per round, speed ratios
against a bare torch loop timed in the same command, GMM/MM scaling in N, and the original's figures.

    python bench/bench.py                       # everything (about 25 minutes on 2 cores)
    python bench/bench.py --only speed,scaling  # parts: accuracy, speed, scaling, chain
    python bench/bench.py --only chain --seeds 0-2  # random Markov chain over digits (not in the default)
    python bench/bench.py --only chains         # every chain kind x seed x variant, with hmmlearn (bench/chains.py)
    python bench/bench.py --only shards         # sharded GMM + MM, S = 1 and 2 on 2 loopback nodes (bench/shards.py)
    python bench/bench.py --seeds 0-1 --rounds 5

Speed (``--only speed --repeats 3``, on a quiet machine): the bare fp32 loop, the bare loop with the
adopted tricks (bench/bare_vae.py) and ``serket-ray run`` on the tutorial's text files, each in its own
fresh process with no Ray running, in turn (bare, tricks, run, the run with ``--backend local``, bare, ...) so
that load hits all alike; min and median over the repeats of each figure and of the per-repeat ratios.
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

#: The environment this command started with, before importing serket-ray sets its OpenMP default.
START_ENV = dict(os.environ)

import chains  # noqa: E402

from orchestrator.cli_parser import parse_seeds  # noqa: E402

ORIGINAL = {
    "accuracy (VAE+GMM+MM)": 0.674,
    "accuracy (VAE+GMM)": 0.705,
    "whole run s": 1142.0,
    "VAE s/round": 14.0,
    "GMM s/round": 210.0,
    "MM s/round": 4.0,
}
DEFAULT_NPZ = HERE.parent.parent / "shared" / "data" / "mnist_seq3000.npz"


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    path = Path(os.environ.get("SERKET_RAY_MNIST_NPZ", DEFAULT_NPZ))
    with np.load(path) as d:
        return d["images"] / 255.0, d["labels"].astype(np.int64)


def build(
    images: np.ndarray, labels: np.ndarray, variant: str, epochs: int = 200, precision: str = "auto"
) -> list[Any]:
    from orchestrator.recipe import TutorialRecipe

    message = "serket" if variant == "serket-message" else "forward-backward"
    return TutorialRecipe(epochs=epochs, precision=precision, no_mm=variant == "no-mm", mm_message=message).build(
        images, labels
    )


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
            res = Orchestrator(
                build(images, labels, variant, args.epochs, args.precision), out, seed=seed, backend="local"
            ).run(args.rounds)
            row = {
                "part": "accuracy",
                "variant": variant,
                "seed": seed,
                "precision": args.precision,
                "accuracy": res.accuracy,
                "final": res.final_accuracy,
                "seconds": round(time.perf_counter() - t0, 1),
                "per_round": res.seconds,
            }
            if variant != "no-mm":
                row["min_next_digit_mass"] = round(next_digit_mass(out, labels), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)


def _child_env(wait_policy: str | None) -> dict[str, str]:
    """This command's environment as it was started, with OMP_WAIT_POLICY set (or unset for None)."""
    env = dict(START_ENV)
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _bare(
    args: argparse.Namespace,
    tricks: bool,
    precision: str,
    wait_policy: str | None,
    epochs: int | None = None,
    rounds: int | None = None,
) -> dict[str, Any]:
    """One bare loop (bench/bare_vae.py) in its own clean process: no Ray, nothing else imported."""
    cmd = [
        sys.executable,
        str(HERE / "bare_vae.py"),
        "--json",
        "--rounds",
        str(rounds or args.rounds),
        "--epochs",
        str(epochs or args.epochs),
        "--precision",
        precision,
        *(["--tricks"] if tricks else []),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_child_env(wait_policy))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _tutorial_text_files(workdir: Path) -> tuple[Path, Path]:
    """The tutorial's data and labels as text files (np.savetxt), written once into ``workdir``."""
    data, labels = workdir / "tutorial_data.txt", workdir / "tutorial_category.txt"
    if not (data.exists() and labels.exists()):
        images, cats = load_mnist()
        workdir.mkdir(parents=True, exist_ok=True)
        np.savetxt(data, images)
        np.savetxt(labels, cats, fmt="%d")
    return data, labels


def _cli_run(args: argparse.Namespace, data: Path, labels: Path, out: Path, backend: str = "ray") -> dict[str, Any]:
    """``serket-ray run`` on the text files in a fresh process, timed from spawn to exit.

    Start-up: spawn until the first VAE update began (its line's arrival minus its
    seconds); shutdown: the last update's line until the process ended.  ``backend``
    "local" runs every worker in the CLI's own process (no Ray): what Ray itself costs.
    """
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        "--data",
        str(data),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--overwrite",
        "--rounds",
        str(args.rounds),
        "--epochs",
        str(args.epochs),
        "--seed",
        "0",
        "--precision",
        args.precision,
        "--backend",
        backend,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_child_env(None))
    update_lines: list[float] = []
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("round ") and "(elapsed" in line:
            update_lines.append(time.perf_counter() - t0)
    if proc.wait() != 0:
        raise RuntimeError(f"serket-ray run failed ({proc.returncode}):\n" + "\n".join(lines[-20:]))
    whole = time.perf_counter() - t0
    manifest = json.loads((out / "run.json").read_text())
    first = manifest["updates"][0]
    per_module: dict[str, list[float]] = {}
    for u in manifest["updates"]:
        per_module.setdefault(u["module"], []).append(round(u["seconds"], 3))
    return {
        "whole_s": whole,
        "startup_s": update_lines[0] - first["seconds"],
        "shutdown_s": whole - update_lines[-1],
        "accuracy": manifest["rounds"][-1].get("accuracy"),
        "per_module_s": per_module,
        "precision": sorted(
            {u["scalars"].get("precision") for u in manifest["updates"] if "precision" in u["scalars"]}
        ),
        "step": sorted({str(u["scalars"].get("step")) for u in manifest["updates"] if "precision" in u["scalars"]}),
    }


def _stats(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits)}


def _contention(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    """The tricks loop (``--contention-epochs`` epochs, with the VAE's thread governor) alone and
    beside a CPU hog, under ``OMP_WAIT_POLICY=PASSIVE`` and under OpenMP's default (spinning) policy,
    which the run uses."""
    row: dict[str, Any] = {
        "part": "speed",
        "what": f"bare tricks loop, {args.contention_epochs} epochs, "
        "beside a busy core (`python -c 'while True: pass'`)",
    }
    for policy in ("PASSIVE", None):
        alone = _bare(args, True, precision, policy, args.contention_epochs, 1)["train_s"]
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            busy = _bare(args, True, precision, policy, args.contention_epochs, 1)["train_s"]
        finally:
            hog.kill()
            hog.wait()
        name = policy or "unset"
        row[f"{name}_alone_s"], row[f"{name}_beside_hog_s"], row[f"{name}_slowdown"] = (
            round(alone, 2),
            round(busy, 2),
            round(busy / alone, 2),
        )
    return row


def _bare_pairs(args: argparse.Namespace, precision: str, policy: str, rows: list[dict[str, Any]]) -> None:
    """``--repeats`` alternating pairs (naive fp32, tricks), then (tricks, naive), ..., each loop in its own
    clean process: the tricks' gain over naive without the CLI run."""
    pairs = []
    for i in range(args.repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {
            t: _bare(args, t, "fp32" if not t else precision, START_ENV.get("OMP_WAIT_POLICY") if not t else policy)
            for t in order
        }
        pairs.append((got[False]["train_s"], got[True]["train_s"], got[True].get("step")))
        print(
            json.dumps(
                {
                    "part": "speed",
                    "pair": i,
                    "naive_s": pairs[-1][0],
                    "tricks_s": pairs[-1][1],
                    "tricks_step": pairs[-1][2],
                }
            ),
            flush=True,
        )
    n = f"{args.rounds} x {args.epochs} epochs"
    rows.append(
        {"part": "speed", "what": f"bare fp32 loop, naive ({n}, batch 500), s", **_stats([p[0] for p in pairs])}
    )
    rows.append(
        {
            "part": "speed",
            "what": f"bare loop with the adopted tricks ({precision}, {pairs[-1][2]} step, "
            f"OMP_WAIT_POLICY={policy}), s",
            **_stats([p[1] for p in pairs]),
        }
    )
    rows.append(
        {"part": "speed", "what": "bare tricks / bare fp32, per pair", **_stats([p[1] / p[0] for p in pairs], 3)}
    )
    for row in rows[-3:]:
        print(json.dumps(row), flush=True)


def part_speed(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The whole tutorial run through the CLI against bare torch loops doing its VAE training, each in
    its own clean process, ``--repeats`` times in turn (bare fp32, bare with tricks, CLI run); then the
    same loop beside a CPU hog."""
    import torch

    from actors.vae_core import resolve_precision

    precision = resolve_precision(args.precision, torch.device("cpu"))
    workdir = Path(args.workdir)
    data, labels = _tutorial_text_files(workdir)
    policy = START_ENV.get("OMP_WAIT_POLICY")  # what the run uses: OpenMP's default unless it is set
    bare, tricks, runs, local = [], [], [], []
    if args.bare_only:
        _bare_pairs(args, precision, policy, rows)
        return
    for i in range(args.repeats):
        bare.append(_bare(args, False, "fp32", START_ENV.get("OMP_WAIT_POLICY")))
        tricks.append(_bare(args, True, precision, policy))
        runs.append(_cli_run(args, data, labels, workdir / "speed_cli"))
        local.append(_cli_run(args, data, labels, workdir / "speed_local", backend="local"))
        print(
            json.dumps(
                {
                    "part": "speed",
                    "repeat": i,
                    "bare_fp32_s": bare[-1]["train_s"],
                    "bare_tricks_s": tricks[-1]["train_s"],
                    "tricks_step": tricks[-1].get("step"),
                    "whole_run_s": round(runs[-1]["whole_s"], 2),
                    "startup_s": round(runs[-1]["startup_s"], 2),
                    "shutdown_s": round(runs[-1]["shutdown_s"], 2),
                    "accuracy": runs[-1]["accuracy"],
                    "in_process_run_s": round(local[-1]["whole_s"], 2),
                    "in_process_accuracy": local[-1]["accuracy"],
                }
            ),
            flush=True,
        )
    n = f"{args.rounds} x {args.epochs} epochs"
    first_row = len(rows)
    rows.append(
        {"part": "speed", "what": f"bare fp32 loop, naive ({n}, batch 500), s", **_stats([b["train_s"] for b in bare])}
    )
    rows.append(
        {
            "part": "speed",
            "what": f"bare loop with the adopted tricks ({precision}, {tricks[-1].get('step')} step, "
            f"OMP_WAIT_POLICY={policy}), s",
            **_stats([t["train_s"] for t in tricks]),
        }
    )
    rows.append(
        {
            "part": "speed",
            "what": "bare tricks / bare fp32 (the training step's own gain)",
            **_stats([t["train_s"] / b["train_s"] for t, b in zip(tricks, bare, strict=True)], 3),
        }
    )
    rows.append(
        {
            "part": "speed",
            "what": "whole CLI run on text files, spawn to exit, s",
            **_stats([r["whole_s"] for r in runs]),
            "precision": runs[-1]["precision"],
            "step": runs[-1]["step"],
            "accuracy": [r["accuracy"] for r in runs],
        }
    )
    rows.append(
        {
            "part": "speed",
            "what": "whole run / bare fp32 (target <= 1.0)",
            **_stats([r["whole_s"] / b["train_s"] for r, b in zip(runs, bare, strict=True)], 3),
        }
    )
    ratio_tricks = [r["whole_s"] / t["train_s"] for r, t in zip(runs, tricks, strict=True)]
    rows.append(
        {"part": "speed", "what": "whole run / bare with the same tricks (target <= 1.3)", **_stats(ratio_tricks, 3)}
    )
    rows.append(
        {
            "part": "speed",
            "what": "the same run in one process (--backend local, no Ray) / bare with the same tricks",
            **_stats([r["whole_s"] / t["train_s"] for r, t in zip(local, tricks, strict=True)], 3),
            "whole_s": _stats([r["whole_s"] for r in local]),
            "accuracy": [r["accuracy"] for r in local],
        }
    )
    rows.append(
        {"part": "speed", "what": "start-up (spawn to first VAE update), s", **_stats([r["startup_s"] for r in runs])}
    )
    rows.append(
        {"part": "speed", "what": "shutdown (last update to exit), s", **_stats([r["shutdown_s"] for r in runs])}
    )
    for module in runs[-1]["per_module_s"]:
        per_round = [statistics.median(r["per_module_s"][module][k] for r in runs) for k in range(args.rounds)]
        rows.append(
            {
                "part": "speed",
                "what": f"{module} s per round (median over repeats; wall, with checkpoint)",
                "per_round_s": [round(x, 3) for x in per_round],
            }
        )
    for row in rows[first_row:]:
        print(json.dumps(row), flush=True)
    if args.contention_epochs:
        rows.append(_contention(args, precision))
        print(json.dumps(rows[-1]), flush=True)
    out = workdir / "speed_cli"
    gmm_t, mm_t = _replay_gmm_mm(out, args.rounds)
    rows.append(
        {"part": "speed", "what": "GMM update replayed from the run's checkpoints, per round, s", "replayed_s": gmm_t}
    )
    rows.append({"part": "speed", "what": "MM update replayed, per round, s", "replayed_s": mm_t})
    print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)


def _replay_gmm_mm(out: Path, rounds: int, repeats: int = 3) -> tuple[list[float], list[float]]:
    """Each round's GMM and MM update replayed in this process from the run's checkpoints
    (same inputs and starting state as in the run); the fastest of ``repeats`` per round."""
    from actors.config import GMMConfig, MMConfig
    from actors.gmm import GMMWorker
    from actors.mm import MMWorker
    from orchestrator.checkpoint import read_message
    from orchestrator.run_dir import load_state

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
        res = Orchestrator(build(seq.data, seq.labels, "full", args.epochs), out, seed=seed, backend="local").run(
            args.rounds
        )
        classes = np.loadtxt(out / "module002_gmm" / "class_learn.txt", dtype=int)
        learned = np.loadtxt(out / "module003_mm" / "trans_prob_learn.txt")
        uniform = np.full((k, k), 1.0 / k)
        row = {
            "part": "chain",
            "seed": seed,
            "accuracy": res.accuracy,
            "final": res.final_accuracy,
            "tv_true": round(transition_distance(learned, classes, states, seq.transitions), 4),
            "tv_empirical": round(transition_distance(learned, classes, states, empirical), 4),
            "tv_empirical_to_true": round(transition_distance(empirical, states, states, seq.transitions), 4),
            "tv_uniform_to_true": round(transition_distance(uniform, states, states, seq.transitions), 4),
            "cluster_sizes": np.bincount(classes, minlength=k).tolist(),
            "n_reused": seq.n_reused,
            "seconds": round(time.perf_counter() - t0, 1),
        }
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
t0 = time.perf_counter()
post, _, _ = g.update(0, Latents(sender="v", receiver="g", round=0, z=z))
tg = time.perf_counter() - t0
m = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(0))
t0 = time.perf_counter(); m.update(0, post); tm = time.perf_counter() - t0
print(n, sweeps, tg, tm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def part_scaling(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """GMM and MM update time in N (synthetic latents, d=18, K=10), each size in a fresh process (peak memory)."""
    for n, sweeps in ((3_000, 100), (30_000, 20), (300_000, 5)):
        out = subprocess.run(
            [sys.executable, "-c", SCALING_CHILD, str(n), str(sweeps)], capture_output=True, text=True, check=True
        )
        _, _, tg, tm, rss = out.stdout.split()
        rows.append(
            {
                "part": "scaling",
                "N": n,
                "gmm_sweeps": sweeps,
                "gmm_s_per_sweep": round(float(tg) / sweeps, 4),
                "gmm_s_per_100_sweeps": round(float(tg) / sweeps * 100, 2),
                "mm_s": round(float(tm), 3),
                "peak_rss_MiB": round(float(rss)),
            }
        )
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
            figs = ", ".join(
                f"{k} {v}" for k, v in r.items() if k not in ("part", "what", "per_round", "bare_all", "actor_all")
            )
            lines.append(f"| speed | {r['what']} | {figs} |")
        elif r["part"] == "chain":
            lines.append(
                f"| chain | seed {r['seed']} | accuracy {r['final']:.3f}; TV to true {r['tv_true']:.3f}, to "
                f"empirical {r['tv_empirical']:.3f} "
                f"(empirical to true {r['tv_empirical_to_true']:.3f}, uniform to true "
                f"{r['tv_uniform_to_true']:.3f}); {r['seconds']} s |"
            )
        else:
            lines.append(
                f"| scaling | N={r['N']} | GMM {r['gmm_s_per_100_sweeps']} s/100 sweeps, MM {r['mm_s']} s, peak "
                f"{r['peak_rss_MiB']} MiB |"
            )
    by_variant: dict[str, list[float]] = {}
    for r in rows:
        if r["part"] == "accuracy":
            by_variant.setdefault(r["variant"], []).append(r["final"])
    for v, accs in by_variant.items():
        lines.append(
            f"| accuracy | {v}: mean over seeds | {statistics.mean(accs):.4f} (min {min(accs):.4f}, max "
            f"{max(accs):.4f}, n={len(accs)}) |"
        )
    chain = [r for r in rows if r["part"] == "chain"]
    if chain:
        tv = [r["tv_true"] for r in chain]
        lines.append(
            f"| chain | mean over seeds | TV to true {statistics.mean(tv):.3f} (max {max(tv):.3f}), "
            f"accuracy {statistics.mean(r['final'] for r in chain):.3f}, n={len(chain)} |"
        )
    lines.append("| original | Serket, same machine | " + ", ".join(f"{k} {v}" for k, v in ORIGINAL.items()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="accuracy,speed,scaling")
    parser.add_argument("--seeds", default="0-4", type=parse_seeds, help="seeds: ranges and lists, e.g. 0-4 or 0,2,5-6")
    parser.add_argument("--variants", default="full,no-mm,serket-message")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="speed: runs of (bare fp32, bare tricks, CLI run), min and median printed",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="the VAE's precision (accuracy and speed parts)",
    )
    parser.add_argument(
        "--contention-epochs", type=int, default=40, help="speed: epochs of the loop timed beside a CPU hog (0: skip)"
    )
    parser.add_argument(
        "--bare-only",
        action="store_true",
        help="speed: only the bare loops in alternating pairs (naive fp32, tricks), no CLI run, hog or replay",
    )
    parser.add_argument("--workdir", default="bench-out")
    parser.add_argument("--json-out", default=None)
    parser.add_argument(
        "--kinds",
        default="tutorial,random-chain,self-transitions,noisy-cycle,independent,short-cycles",
        help="chains: orders to run",
    )
    parser.add_argument(
        "--chain-variants", default=",".join(chains.VARIANTS), help="chains: " + ", ".join(chains.VARIANTS)
    )
    parser.add_argument(
        "--fixed-latents", action="store_true", help="chains: GMM+MM only, on the gmm run's first-round latents"
    )
    parser.add_argument(
        "--gmm-per-order", action="store_true", help="chains: run VAE+GMM on every order instead of reindexing one run"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="chains: torch threads of the VAE (1: runs side by side stay comparable)"
    )
    parser.add_argument(
        "--rerun", action="store_true", help="chains: rerun the per-seed VAE+GMM run even if its outputs exist"
    )
    args = parser.parse_args()
    args.variants = args.variants.split(",")
    args.kinds = args.kinds.split(",")
    args.chain_variants = args.chain_variants.split(",")
    parts = args.only.split(",")
    rows: list[dict[str, Any]] = []
    for name, fn in (
        ("accuracy", part_accuracy),
        ("speed", part_speed),
        ("scaling", part_scaling),
        ("chain", part_chain),
    ):
        if name in parts:
            fn(args, rows)
    if "chains" in parts:
        chains.part_chains(args, rows, load_mnist)
    if "shards" in parts:  # issue 12: sharded GMM + MM on a 2-node loopback cluster, its own table
        subprocess.run([sys.executable, str(HERE / "shards.py")], check=True)
    print(table([r for r in rows if r["part"] != "chains"]) if any(r["part"] != "chains" for r in rows) else "")
    print(chains.table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
