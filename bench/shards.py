"""Sharded GMM + MM on a 2-node Ray cluster on this machine: seconds, speed-up, driver bytes, memory, invariance.

Starts its own two Ray nodes on 127.0.0.1 (1 CPU each, their own temp dir
and authentication token, free ports; stopped by pid at the end, never
``ray stop``), then for every N and S runs a fresh driver process that

* makes the synthetic latents (d = 18, K = 10 well-separated classes in the
  time order 0, 1, ..., 9, 0, ...) inside each shard's bundle, by global index
  (a Philox stream per 4096-point block), so no row passes the driver;
* runs ``--rounds`` rounds of GMM (``--sweeps`` sweeps) + MM (at most
  ``--em`` Baum-Welch iterations) through :class:`orchestrator.shard_group.ShardedPipeline`,
  S = 1 on one bundle, S = 2 on two bundles spread over the two nodes
  (``STRICT_SPREAD``);
* reports per round the GMM and MM seconds and the pickled bytes the driver
  received and sent, then every shard actor's peak RSS, the driver's peak RSS
  and a SHA-256 of the last round's class means, class counts and transitions
  (equal for every S when the results are byte-identical).

The configurations run in turn (for each repeat: each N with S = 1 then S = 2,
the order flipped on odd repeats) so that load from other jobs hits all alike.

    python bench/shards.py [--sizes 300000,1000000] [--shards 1,2] [--sweeps 5] [--em 3] [--rounds 2] [--repeats 1]
        [--moves]   # the GMM's sequence-guided move search on the shards before its sweeps, as in a run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors.gmm_shards import GMMShard, posterior_from_stats

ROOT = Path(__file__).resolve().parents[1]
D, K, SEED = 18, 10, 0


def synthetic(start: int, stop: int) -> np.ndarray:
    """Latents of global points [start, stop) (start a multiple of 4096), the same whoever makes them."""
    from actors.shard_core import BLOCK

    centres = np.random.default_rng(SEED).normal(0.0, 4.0, (K, D))
    key = np.random.SeedSequence(SEED).generate_state(2, np.uint64)
    out = np.empty((stop - start, D))
    for first in range(start, stop, BLOCK):
        size = min(BLOCK, stop - first)
        gen = np.random.Generator(np.random.Philox(key=key, counter=np.array([0, first, 0, 0], np.uint64)))
        out[first - start : first - start + size] = centres[np.arange(first, first + size) % K] + gen.standard_normal(
            (size, D)
        )
    return out


def driver(
    address: str, n: int, n_shards: int, sweeps: int, em: int, rounds: int, moves: bool = False
) -> dict[str, Any]:
    """One configuration in this (fresh) process, connected to the cluster."""
    import ray

    from actors.config import GMMConfig, MMConfig
    from orchestrator.shard_group import ShardedPipeline, peak_rss_bytes

    ray.init(address=address, log_to_driver=False)
    strategy = "STRICT_SPREAD" if n_shards > 1 else "PACK"
    pipe = ShardedPipeline(
        (synthetic, n_shards),
        n,
        GMMConfig(n_components=K, n_sweeps=sweeps),
        MMConfig(em_iterations=em),
        np.random.SeedSequence(SEED),
        strategy=strategy,
        moves=moves,
    )
    try:
        per_round = []
        for r in range(1, rounds + 1):
            out = pipe.round(r)
            per_round.append(
                {
                    "round": r,
                    "gmm_seconds": out["gmm_seconds"],
                    "mm_seconds": out["mm_seconds"],
                    "moves": list(pipe.gmm.last_moves),
                    "mm_iterations": out["mm"]["iterations"],
                    "driver_received": out["driver_received"],
                    "driver_sent": out["driver_sent"],
                    "gmm_cpu": out["gmm_cpu"],
                    "mm_cpu": out["mm_cpu"],
                    "driver_gmm_cpu": out["driver_gmm_cpu"],
                    "driver_mm_cpu": out["driver_mm_cpu"],
                }
            )
        digest = hashlib.sha256()
        for a in (out["gmm"]["class_means"], out["gmm"]["counts"], out["mm"]["transitions"]):
            digest.update(np.ascontiguousarray(a).tobytes())
        rss = pipe.peak_rss()
        nodes = pipe.nodes()
    finally:
        pipe.close()
        ray.shutdown()
    return {
        "n": n,
        "shards": n_shards,
        "sweeps": sweeps,
        "with_moves": moves,
        "rounds": per_round,
        "actor_peak_rss": rss,
        "driver_peak_rss": peak_rss_bytes(),
        "sha256": digest.hexdigest(),
        "sizes": out["gmm"]["sizes"].tolist(),
        "nodes": nodes,
    }


def micro(n: int, repeats: int = 3) -> dict[str, float]:
    """CPU seconds (process_time, robust to other jobs' load) of one shard's pieces on ``n`` points, no Ray.

    Returns the per-point cost of a GMM sweep on the shard and of the MM's
    per-shard passes (transfer product + smoothing), and the per-block cost of
    the sequential chain (forward + backward) per 4096-point super-block, each the minimum over ``repeats``.
    """
    from actors import gmm_core
    from actors.mm_shards import FB_BLOCK, MMShard
    from actors.shard_core import philox_key

    x = synthetic(0, n)
    shard = GMMShard(x, 0, K, philox_key(np.random.SeedSequence(SEED)))
    shard.init_labels(np.random.default_rng(0).normal(0.0, 4.0, (K, D)), 1)
    prior = gmm_core.default_prior(x)
    stats = shard.class_stats(np.zeros((K, D)), 0, 0)  # grids do not matter for the timing
    post = posterior_from_stats(prior, stats, np.zeros((K, D)), 0, 0)
    means, prec = gmm_core.sample_parameters(post, np.random.default_rng(1))
    log_pi = np.log(np.full(K, 1.0 / K))
    sweep, passes, chain = [], [], []
    for i in range(repeats):
        t = time.process_time()
        shard.sweep(1, i, means, prec, log_pi, True, 20, 10)
        sweep.append(time.process_time() - t)
    shard.finish(means, prec, repeats)
    trans = np.full((K, K), 0.02)
    trans[np.arange(K), (np.arange(K) + 1) % K] = 0.82
    trans /= trans.sum(axis=1, keepdims=True)
    pi0 = np.full(K, 1.0 / K)
    mm = MMShard(0, np.arange(n) == 0)
    mm.load(shard.posteriors())
    for _ in range(repeats):
        t = time.process_time()
        mm.transfer(trans, pi0)
        t1 = time.process_time()
        mm.chain_forward(pi0, 0.0)
        mm.chain_backward(np.ones(K))
        t2 = time.process_time()
        mm.smooth(trans, pi0, 20)
        t3 = time.process_time()
        passes.append((t1 - t) + (t3 - t2))
        chain.append(t2 - t1)
    return {
        "n": n,
        "gmm_sweep_us_per_point": min(sweep) / n * 1e6,
        "mm_shard_passes_us_per_point": min(passes) / n * 1e6,
        "mm_chain_us_per_superblock": min(chain) / mm.prod.shape[0] * 1e6,
        "fb_block": FB_BLOCK,
    }


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait_started(log: Path, proc: subprocess.Popen) -> None:
    for _ in range(480):
        if log.exists() and "Ray runtime started" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited early:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)
    raise RuntimeError(f"a node did not start within 240 s:\n{log.read_text(errors='replace')}")


def start_cluster(tmp: Path, env: dict[str, str]) -> tuple[str, list[subprocess.Popen]]:
    """Head and second node, 1 CPU each, on loopback; returns the address and the two `ray start` processes."""
    port, client, dash, agent1, agent2 = _free_ports(5)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", f"--temp-dir={tmp}"]
    common += ["--object-store-memory=2000000000", "--disable-usage-stats", "--block"]
    head = [
        "ray",
        "start",
        "--head",
        f"--port={port}",
        "--include-dashboard=false",
        f"--ray-client-server-port={client}",
        f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent1}",
        *common,
    ]
    procs = []
    with open(tmp / "head.log", "w") as log:
        procs.append(subprocess.Popen(head, stdout=log, stderr=log, env=env, start_new_session=True))
    _wait_started(tmp / "head.log", procs[0])
    second = ["ray", "start", f"--address=127.0.0.1:{port}", f"--dashboard-agent-listen-port={agent2}", *common]
    with open(tmp / "worker.log", "w") as log:
        procs.append(subprocess.Popen(second, stdout=log, stderr=log, env=env, start_new_session=True))
    _wait_started(tmp / "worker.log", procs[1])
    return f"127.0.0.1:{port}", procs


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each node's process group (the ones this script started), SIGKILL what is left after 15 s."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 15
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def critical_cpu(last: dict[str, Any]) -> float:
    """CPU seconds on the critical path of a round: the busiest shard's plus the driver's (GMM and MM in turn)."""
    return max(last["gmm_cpu"]) + last["driver_gmm_cpu"] + max(last["mm_cpu"]) + last["driver_mm_cpu"]


def table(rows: list[dict[str, Any]]) -> str:
    base = {(r["n"], r["repeat"]): r for r in rows if r["shards"] == 1}
    head = (
        "| N | S | repeat | GMM s | MM s | GMM+MM s | speed-up (wall) | shard CPU s GMM / MM (max) | driver CPU s "
        "| speed-up (critical-path CPU) | driver recv / sent per round | peak RSS per actor (max) | driver peak RSS "
        "| same bytes as S=1 |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        last = r["rounds"][-1]
        total = last["gmm_seconds"] + last["mm_seconds"]
        one = base.get((r["n"], r["repeat"]))
        one_last = None if one is None else one["rounds"][-1]
        speed = "" if one_last is None else f"{(one_last['gmm_seconds'] + one_last['mm_seconds']) / total:.2f}x"
        cpu_speed = "" if one_last is None else f"{critical_cpu(one_last) / critical_cpu(last):.2f}x"
        same = "" if one is None else str(one["sha256"] == r["sha256"])
        shard_cpu = f"{max(last['gmm_cpu']):.2f} / {max(last['mm_cpu']):.2f}"
        driver_cpu = f"{last['driver_gmm_cpu'] + last['driver_mm_cpu']:.2f}"
        rss = max(r["actor_peak_rss"]["gmm"] + r["actor_peak_rss"]["mm"]) / 2**20
        lines.append(
            f"| {r['n']:,} | {r['shards']} | {r['repeat']} | {last['gmm_seconds']:.2f} | {last['mm_seconds']:.2f} | "
            f"{total:.2f} | {speed} | {shard_cpu} | {driver_cpu} | {cpu_speed} | "
            f"{last['driver_received'] / 1024:.0f} KiB / {last['driver_sent'] / 1024:.0f} KiB | "
            f"{rss:.0f} MiB | {r['driver_peak_rss'] / 2**20:.0f} MiB | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300000,1000000")
    parser.add_argument("--shards", default="1,2")
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--em", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument(
        "--moves", action="store_true", help="the GMM's sequence-guided move search before its sweeps, as in a run"
    )
    parser.add_argument("--driver", help=argparse.SUPPRESS)  # ADDRESS,N,S: run one configuration here
    parser.add_argument("--micro", help="per-shard CPU costs on these shard sizes (no Ray), e.g. 150000,500000")
    args = parser.parse_args()
    if args.micro:
        for n in args.micro.split(","):
            print(json.dumps(micro(int(n))))
        return
    if args.driver:
        address, n, s = args.driver.split(",")
        print(json.dumps(driver(address, int(n), int(s), args.sweeps, args.em, args.rounds, args.moves)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="s12.", dir="/tmp"))  # short: Ray's socket paths are limited to 107 bytes
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp / "auth_token"))
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    (tmp / "auth_token").write_text(secrets.token_hex(32) + "\n")
    os.chmod(tmp / "auth_token", 0o600)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the nodes are stopped (finally below)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    address, procs = start_cluster(tmp, env)
    rows: list[dict[str, Any]] = []
    try:
        sizes = [int(v) for v in args.sizes.split(",")]
        shard_counts = [int(v) for v in args.shards.split(",")]
        for rep in range(args.repeats):
            for n in sizes:
                for s in shard_counts if rep % 2 == 0 else shard_counts[::-1]:
                    cmd = [sys.executable, __file__, "--driver", f"{address},{n},{s}"]
                    cmd += ["--sweeps", str(args.sweeps), "--em", str(args.em), "--rounds", str(args.rounds)]
                    cmd += ["--moves"] if args.moves else []
                    t0 = time.perf_counter()
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                    if out.returncode:
                        raise RuntimeError(f"driver N={n} S={s} failed:\n{out.stderr[-4000:]}")
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    row["repeat"], row["wall_seconds"] = rep, time.perf_counter() - t0
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        stop_cluster(procs)
    print(table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
