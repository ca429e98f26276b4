"""What a run's actors ask of a cluster: Ray actor options, placement-group bundles, and what is missing.

Plain arithmetic on resource dicts (no Ray): :class:`orchestrator.executor.RayExecutor`
reserves the bundles and words a refusal with :func:`shortfall`.
"""

from __future__ import annotations

import math
from typing import Any

from messages.errors import ConfigError

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

#: Actor options that take resources, and the resource each takes.
_RESOURCE_OPTIONS = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def actor_options(resources: dict[str, Any]) -> dict[str, Any]:
    """Ray actor options from a module's resources, with ``num_cpus`` made explicit.

    Ray schedules an actor without ``num_cpus`` as if it needed one CPU; saying
    so keeps the actor's request and its placement-group bundle the same.

    Raises
    ------
    ConfigError
        A resource amount is not a non-negative number.
    """
    if not isinstance(resources, dict):
        raise ConfigError(f"actor resources should be a dict like {{'num_cpus': 1}}, got {resources!r}")
    opts = dict(resources)
    # issue 12: "shards" (per module, as in {"gmm": {"shards": 4}}) is not an actor option.  The session takes it
    # out (orchestrator.shard_plan) and starts a sharded module's shards itself (orchestrator.shard_run); here 1
    # is accepted and more refused, so that no other path starts one actor for a module meant to be sharded.
    opts.pop("sharded", None)
    shards = opts.pop("shards", 1)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"'shards' should be a positive integer, got {shards!r}")
    if shards > 1:
        raise ConfigError(
            f"'shards': {shards} is not an actor option: a run's sharded GMM and MM are started by "
            "orchestrator.shard_run (Session/Orchestrator(..., shards=S) or serket-ray run --shards S); "
            "use 'shards': 1 or leave it out here"
        )
    opts.setdefault("num_cpus", 1)
    custom = opts.get("resources") or {}
    if not isinstance(custom, dict):
        raise ConfigError(f"'resources' should map custom resource names to amounts, got {custom!r}")
    for key, value in [*((k, opts[k]) for k in _RESOURCE_OPTIONS if k in opts), *custom.items()]:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"resource {key!r} should be a non-negative number, got {value!r}")
    return opts


def bundle_of(resources: dict[str, Any]) -> dict[str, float]:
    """The placement-group bundle an actor with these options needs.

    Parameters
    ----------
    resources : dict
        Ray actor options: ``num_cpus``, ``num_gpus``, ``memory`` (bytes) and
        ``resources`` (custom name -> amount); other options are ignored.

    Returns
    -------
    dict
        Resource name -> amount, zero amounts left out (empty for an actor that
        needs nothing: such actors are left out of the group, as a bundle
        cannot be empty).
    """
    opts = actor_options(resources)
    bundle = {name: float(opts[key]) for key, name in _RESOURCE_OPTIONS.items() if opts.get(key)}
    bundle.update({str(k): float(v) for k, v in (opts.get("resources") or {}).items() if v})
    return bundle


def plain_resources(resources: dict[str, float]) -> dict[str, float]:
    """Cluster resources without Ray's per-group and per-node bookkeeping entries."""
    return {k: v for k, v in resources.items() if "_group_" not in k and not k.startswith(("node:", "bundle_group"))}


def _fmt(value: float, key: str) -> str:
    if key in ("memory", "object_store_memory"):
        return f"{value / 2**30:.3g} GiB"
    return f"{value:g}"


def shortfall(
    bundles: list[dict[str, float]],
    cluster: dict[str, float],
    available: dict[str, float],
    node_max: dict[str, float],
) -> list[str]:
    """What the bundles ask for that the cluster cannot give, one line per resource.

    Parameters
    ----------
    bundles : list of dict
        Resource name -> amount, one per actor.
    cluster, available : dict
        ``ray.cluster_resources()`` and ``ray.available_resources()``.
    node_max : dict
        Resource name -> the most any one alive node has.

    Returns
    -------
    list of str
        Empty when the cluster as a whole could hold the bundles (they are
        then only held up by other work, or by the placement strategy).
    """
    eps = 1e-6
    lines = []
    for key in sorted({k for b in bundles for k in b}):
        asked = sum(b.get(key, 0.0) for b in bundles)
        largest = max(b.get(key, 0.0) for b in bundles)
        total, free, per_node = cluster.get(key, 0.0), available.get(key, 0.0), node_max.get(key, 0.0)
        if total <= 0:
            lines.append(f"{key!r}: asked {_fmt(asked, key)}, the cluster has none")
        elif asked > total + eps:
            lines.append(f"{key!r}: asked {_fmt(asked, key)} in all, the cluster has {_fmt(total, key)}")
        elif largest > per_node + eps:
            lines.append(f"{key!r}: one actor asks {_fmt(largest, key)}, the largest node has {_fmt(per_node, key)}")
        elif asked > free + eps:
            lines.append(
                f"{key!r}: asked {_fmt(asked, key)}, only {_fmt(free, key)} of {_fmt(total, key)} free now "
                "(other work holds the rest)"
            )
    return lines
