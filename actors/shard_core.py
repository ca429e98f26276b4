"""What every sharded module shares: fixed blocks, counter-based draws, an exact reduction, the shard group.

A module that runs on S shards cuts its N points (in their global order) into
fixed-size **blocks** of :data:`BLOCK` points; a shard owns a contiguous run of
whole blocks (:func:`shard_ranges`).  Everything that touches points is computed
block by block with the same shapes whatever S is, so each block's result is
the same bytes on any shard.  Two more pieces make the whole result independent
of S:

* **Draws keyed by position.**  A block's random numbers come from a Philox
  generator whose key is the run's and whose counter names the round, the sweep
  and the block (:func:`block_uniforms`), so any shard draws the same numbers
  for the same block.
* **An exact, order-free reduction.**  A block's float statistics are rounded
  once to a fixed-point grid ``2**-e`` (:func:`to_fixed`) and summed as int64:
  integer addition is associative, so the totals are the same bits whichever
  shard added which blocks, and only S small arrays (not one per block) reach
  the coordinator.  The grid is chosen from a bound on the total
  (:func:`grid_exponent`) so that the total stays below 2**62; the rounding
  then costs at most ``n_blocks * 2**-(e+1)`` per entry, ``n_blocks * 2**-61``
  of the bound (1e-16 at a million points).

:class:`LocalShards` runs S shard objects in this process (tests, and S = 1
without Ray); ``orchestrator/shard_group.py`` runs the same objects as Ray
actors behind the same two calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

#: Points per block: the unit of every per-point computation, of the draws' keys and of the reduction.
BLOCK = 4096


def shard_ranges(n: int, n_shards: int, block: int = BLOCK) -> list[tuple[int, int]]:
    """Global point ranges [start, stop) of ``n_shards`` shards owning contiguous runs of whole blocks.

    Parameters
    ----------
    n : int
        Number of points N.
    n_shards : int
        S, at least 1.  More shards than blocks leave the last shards empty: refused.
    block : int

    Returns
    -------
    list of (int, int), length S
    """
    n_blocks = -(-n // block)
    if n_shards < 1 or n_shards > max(n_blocks, 1):
        raise ValueError(
            f"shards should be between 1 and the number of {block}-point blocks {n_blocks}, got {n_shards}"
        )
    cuts = [len(part) for part in np.array_split(np.arange(n_blocks), n_shards)]
    bounds = np.concatenate(([0], np.cumsum(cuts))) * block
    return [(int(bounds[i]), int(min(bounds[i + 1], n))) for i in range(n_shards)]


def philox_key(seed: np.random.SeedSequence) -> np.ndarray:
    """The two 64-bit words of a Philox key, from a module's SeedSequence."""
    return seed.generate_state(2, np.uint64)


def block_uniforms(key: np.ndarray, round: int, sweep: int, first: int, size: int) -> np.ndarray:
    """``size`` uniforms in [0, 1) for the block that begins at global point ``first``.

    Philox's counter is (0, first, sweep, round): the draws use only the lowest
    word, so no two blocks, sweeps or rounds share a number.

    Returns
    -------
    numpy.ndarray, shape (size,)
    """
    counter = np.array([0, first, sweep, round], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=counter)).random(size)


def grid_exponent(bound: float) -> int:
    """The exponent e such that totals of magnitude up to ``bound`` fit 2**62 on the grid 2**-e."""
    _, top = math.frexp(max(float(bound), 1e-300))  # bound < 2**top
    return 61 - top


def to_fixed(values: np.ndarray, exponent: int) -> np.ndarray:
    """Round float64 ``values`` to the grid ``2**-exponent`` as int64 (any shape)."""
    return np.rint(np.ldexp(values, exponent)).astype(np.int64)


def from_fixed(ints: np.ndarray, exponent: int) -> np.ndarray:
    """The float64 values of int64 grid counts (any shape)."""
    return np.ldexp(np.asarray(ints, dtype=np.int64).astype(np.float64), -exponent)


def fixed_sum(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Sum int64 arrays (any order gives the same bits)."""
    total = np.zeros_like(parts[0])
    for part in parts:
        total = total + part
    return total


class Shards(Protocol):
    """S shard objects of one module, called all at once or one at a time.

    ``map`` calls ``method`` on every shard, with ``args`` the same for all and
    ``per_shard[i]`` (a tuple) appended for shard i, and returns the results in
    shard order; ``call`` calls one shard.  A result must be small: it is what
    reaches the coordinator.
    """

    n_shards: int

    def map(self, method: str, *args: Any, per_shard: Sequence[tuple[Any, ...]] | None = None) -> list[Any]: ...

    def call(self, index: int, method: str, *args: Any) -> Any: ...


class LocalShards:
    """:class:`Shards` over plain objects in this process.

    Parameters
    ----------
    shards : sequence of objects
        One per shard, in global order.
    """

    def __init__(self, shards: Sequence[Any]) -> None:
        self.shards = list(shards)
        self.n_shards = len(self.shards)

    def map(self, method: str, *args: Any, per_shard: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        extra = per_shard or [()] * self.n_shards
        return [getattr(s, method)(*args, *e) for s, e in zip(self.shards, extra, strict=True)]

    def call(self, index: int, method: str, *args: Any) -> Any:
        return getattr(self.shards[index], method)(*args)
