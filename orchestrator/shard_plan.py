"""Which modules of a run are sharded, on how many shards, with which block: checked before anything starts.

A run's GMM and MM can each run as a group of S shard actors (issue 12;
:mod:`orchestrator.shard_run`).  The number comes from ``--shards S`` (both
modules) or per module from ``--resources`` (``{"gmm": {"shards": 2,
"num_cpus": 1}}``); the Python API takes the same (``Orchestrator(...,
shards=2)`` or ``resources=...``).  The GMM and the MM of a run are sharded
alike, because MM shard i reads GMM shard i's posteriors where they are: a
number given for one applies to both, and two different numbers are refused.

S = 1 keeps today's one actor per module and today's samplers (the GMM's
split/merge and sequence moves included).  ``sharded=True`` (``--sharded``,
``{"gmm": {"sharded": true}}``) runs the sharded algorithm (uncollapsed blocked
Gibbs with Philox draws keyed by global index, plain sweeps, no moves) even at
S = 1: that run is the reference a sharded run equals byte for byte, whatever S.

The points are cut into blocks of ``block`` points (``--shard-block``, default
4096, a multiple of 256); a shard owns whole blocks, so S can be at most the
number of blocks.  Results depend on the block (it fixes the shapes of every
sum), never on S.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from messages.errors import ConfigError

#: Module kinds that can run as shard groups.
SHARDABLE = ("gmm", "mm")
#: Keys of a module's ``--resources`` entry that are about sharding, not Ray actor options.
SHARD_KEYS = ("shards", "sharded")
#: Default points per block (actors.shard_core.BLOCK).
DEFAULT_BLOCK = 4096
#: A block is a multiple of this (the MM's forward-backward block is block / 16, actors.mm_shards.GROUP).
BLOCK_UNIT = 256


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """The sharded modules of a run.

    Attributes
    ----------
    n_shards : int
        S, the same for every sharded module.
    block : int
        Points per block.
    modules : tuple of str
        Names of the sharded modules (the GMM, and the MM when the run has one).
    """

    n_shards: int
    block: int
    modules: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """What run.json records (``"shards"``)."""
        return {"n_shards": self.n_shards, "block": self.block, "modules": list(self.modules)}


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} should be a positive integer, got {value!r}")
    return int(value)


def without_shard_keys(
    resources: dict[str, Any] | None, keep: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """``resources`` with the sharding keys taken out of every module's entry (what Ray's actor options get),
    but for the entries named in ``keep`` (the VAE's: its data-parallel group reads its ``shards``)."""
    if resources is None:
        return None
    return {
        key: (
            {k: v for k, v in value.items() if k not in SHARD_KEYS}
            if isinstance(value, dict) and key not in keep
            else value
        )
        for key, value in resources.items()
    }


def shard_plan(
    graph: Any,
    resources: dict[str, Any] | None,
    shards: int | None = None,
    sharded: bool | None = None,
    block: int | None = None,
) -> ShardPlan | None:
    """The run's :class:`ShardPlan`, or None when every module runs as one actor (today's path).

    Parameters
    ----------
    graph : orchestrator.graph.Graph
    resources : dict or None
        Module name or kind -> actor options, possibly with ``shards`` / ``sharded``.
    shards : int, optional
        ``--shards``: S for every shardable module.
    sharded : bool, optional
        Run the sharded algorithm even at S = 1.
    block : int, optional
        Points per block (default :data:`DEFAULT_BLOCK`).

    Raises
    ------
    ConfigError
        S not a positive integer, more shards than blocks, shards on a module that
        cannot be sharded (the VAE), two different S for the GMM and the MM, a block
        that is not a positive multiple of 256, or an MM that only runs unsharded.
    """
    if sharded is not None and not isinstance(sharded, bool):
        raise ConfigError(f"sharded should be True or False, got {sharded!r}")
    learnable = list(graph.learnable)
    wanted, forced = _from_resources(learnable, resources)
    forced = forced or bool(sharded)
    if shards is not None:
        count = _positive_int(shards, "shards (--shards)")
        for m in learnable:
            if m.kind in SHARDABLE:
                if wanted.get(m.name, count) != count:
                    raise ConfigError(
                        f"shards: --shards {count} but resources give {m.name} {wanted[m.name]}; give one number"
                    )
                wanted[m.name] = count
    counts = set(wanted.values())
    if len(counts) > 1:
        raise ConfigError(
            f"shards: the GMM and the MM of a run should have the same number of shards (MM shard i reads GMM "
            f"shard i's posteriors), got {dict(sorted(wanted.items()))}"
        )
    n_shards = counts.pop() if counts else 1
    if n_shards == 1 and not forced:
        if block is not None:
            _check_block(block)
        return None
    block = DEFAULT_BLOCK if block is None else _check_block(block)
    names = tuple(m.name for m in learnable if m.kind in SHARDABLE)
    _check_modules(learnable, names)
    n = int(graph.modules[0].n_points())
    n_blocks = -(-n // block)
    if n_shards > n_blocks:
        raise ConfigError(
            f"shards should be at most the number of {block}-point blocks of the data ({n} points: {n_blocks} "
            f"blocks), got {n_shards}; give fewer shards or a smaller --shard-block"
        )
    return ShardPlan(n_shards=n_shards, block=block, modules=names)


def _from_resources(learnable: list[Any], resources: dict[str, Any] | None) -> tuple[dict[str, int], bool]:
    """Module name -> S given in ``resources``, and whether one entry forces the sharded algorithm."""
    wanted: dict[str, int] = {}
    forced = False
    for key, value in (resources or {}).items():
        if not isinstance(value, dict):
            continue
        if "sharded" in value:
            if not isinstance(value["sharded"], bool):
                raise ConfigError(f"resources[{key!r}]['sharded'] should be true or false, got {value['sharded']!r}")
            forced = forced or value["sharded"]
        if "shards" not in value:
            continue
        count = _positive_int(value["shards"], f"resources[{key!r}]['shards']")
        for m in (m for m in learnable if key in (m.name, m.kind)):
            if m.kind == "vae":
                continue  # the VAE's data-parallel group (orchestrator.vae_group), not a sharded GMM/MM
            if m.kind not in SHARDABLE and count > 1:
                raise ConfigError(
                    f"resources[{key!r}]['shards']: the {m.kind.upper()} cannot be sharded yet (only "
                    f"{' and '.join(k.upper() for k in SHARDABLE)} and the VAE's data-parallel group), got {count}"
                )
            if m.kind in SHARDABLE:
                wanted[m.name] = count
    return wanted, forced


def _check_modules(learnable: list[Any], names: tuple[str, ...]) -> None:
    if not any(m.kind == "gmm" for m in learnable):
        raise ConfigError(f"shards: a sharded run needs a GMM (the MM's shards read the GMM's), got modules {names}")
    for m in learnable:
        if m.kind == "mm" and (m.config.counts == "sampled" or m.config.message != "forward-backward"):
            raise ConfigError(
                "shards: a sharded MarkovModel runs counts 'pairwise' or 'expected' with the 'forward-backward' "
                f"message, got counts={m.config.counts!r}, message={m.config.message!r}"
            )


def _check_block(block: Any) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or block < BLOCK_UNIT or block % BLOCK_UNIT:
        raise ConfigError(f"shard block should be a positive multiple of {BLOCK_UNIT} points, got {block!r}")
    return int(block)
