"""Driver of the two-node demo: runs the pipeline on a running Ray cluster and checks it.

Used by ``scripts/two_node_demo.sh`` and ``tests/test_multinode.py`` once the
cluster is up (a head node and a second node that carries the custom resource
``vae_node``, standing in for a GPU machine).  It

1. runs 2 rounds of VAE + GMM + MM on the cluster through the Python API, with
   the VAE pinned to the ``vae_node`` node and the GMM and MM to the head;
2. runs the same graph with the same seed in this process (``backend="local"``);
3. checks that ``run.json`` places the VAE on the ``vae_node`` node and that
   every ``class_learn.txt`` of the cluster run equals the local run's.

It prints one line ``RESULT {json}`` and exits 0 when every check holds, 1 when
one fails.

Usage::

    python scripts/two_node_driver.py --address 127.0.0.1:6379 --out /tmp/two-node
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

# Actor options per module kind: the VAE needs the node with the ``vae_node``
# resource (on a real cluster: ``{"num_gpus": 1, "resources": {"vae_node": 1}}``);
# the GMM and MM take a quarter CPU each on the head (``head_role``), so they can
# never take the VAE node's only CPU before the VAE is placed.
RESOURCES: dict[str, Any] = {
    "vae": {"num_cpus": 1, "resources": {"vae_node": 1}},
    "gmm": {"num_cpus": 0.25, "resources": {"head_role": 0.25}},
    "mm": {"num_cpus": 0.25, "resources": {"head_role": 0.25}},
}


def build_graph(digits: tuple[Any, Any]) -> Any:
    """The tutorial's graph on the embedded digits; returns the VAE."""
    from orchestrator.recipe import TutorialRecipe

    data, labels = digits
    return TutorialRecipe(latent_dim=8, epochs=5, batch_size=200).build(data, labels)[1]


def class_files(root: Path) -> dict[str, str]:
    """Relative path -> text of every ``class_learn.txt`` under ``root``."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("class_learn.txt"))}


def main(argv: list[str] | None = None) -> int:
    """Run the checks; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="host:port of the running cluster's head")
    parser.add_argument("--out", required=True, help="output directory (gets cluster/ and local/)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-local", action="store_true", help="skip the single-node comparison")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import ray

    from orchestrator import Orchestrator
    from orchestrator.data import default_digits

    out = Path(args.out)
    digits = default_digits()
    result: dict[str, Any] = {"address": args.address}
    failures: list[str] = []

    # 1. the cluster run
    t0 = time.perf_counter()
    orch = Orchestrator(
        [build_graph(digits)], out / "cluster", seed=args.seed, address=args.address, resources=RESOURCES
    )
    try:
        res = orch.run(args.rounds)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    finally:
        orch.close()
        ray.shutdown()
    result["cluster_seconds"] = round(time.perf_counter() - t0, 2)
    result["accuracy"] = res.accuracy
    result["nodes"] = {n["NodeID"]: sorted(k for k in n["Resources"] if not k.startswith("node:")) for n in nodes}
    head_ids = [n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"]]
    vae_ids = [n["NodeID"] for n in nodes if n["Resources"].get("vae_node", 0) > 0]
    result["head_node_id"] = head_ids[0] if head_ids else None
    result["vae_node_id"] = vae_ids[0] if vae_ids else None
    manifest = json.loads((out / "cluster" / "run.json").read_text())
    result["placement"] = {
        name: m.get("node_id") for name, m in manifest["modules"].items() if m.get("kind") != "observation"
    }
    if len(nodes) != 2 or len(vae_ids) != 1 or len(head_ids) != 1:
        failures.append(f"expected a head and one vae_node node, got {result['nodes']}")
    if result["placement"].get("module001_vae") != result["vae_node_id"]:
        failures.append(
            f"module001_vae ran on {result['placement'].get('module001_vae')}, not the vae_node node "
            f"{result['vae_node_id']}"
        )
    for name, node in result["placement"].items():
        if name != "module001_vae" and node != result["head_node_id"]:
            failures.append(f"{name} ran on {node}, not the head {result['head_node_id']}")

    # 2. the same graph and seed in this process
    if not args.skip_local:
        t0 = time.perf_counter()
        Orchestrator([build_graph(digits)], out / "local", seed=args.seed, backend="local").run(args.rounds)
        result["local_seconds"] = round(time.perf_counter() - t0, 2)
        on_cluster, local = class_files(out / "cluster"), class_files(out / "local")
        result["class_files"] = sorted(on_cluster)
        result["class_files_equal"] = bool(on_cluster) and on_cluster == local
        if not on_cluster:
            failures.append("the cluster run wrote no class_learn.txt")
        elif sorted(on_cluster) != sorted(local):
            failures.append(f"class_learn.txt files differ in number: {sorted(on_cluster)} vs {sorted(local)}")
        else:
            differ = [k for k in on_cluster if on_cluster[k] != local[k]]
            if differ:
                failures.append(f"class_learn.txt differs from the single-node run: {differ}")

    result["failures"] = failures
    print("RESULT " + json.dumps(result), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
