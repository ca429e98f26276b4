"""The NIW posterior of every class from reduced fixed-point statistics (shared by the sharded sweeps and moves)."""

from __future__ import annotations

import numpy as np

from actors import gmm_core
from actors.shard_core import from_fixed


def posterior_from_stats(
    prior: gmm_core.NIWPrior,
    stats: tuple[np.ndarray, np.ndarray, np.ndarray],
    reference: np.ndarray,
    e1: int,
    e2: int,
    e0: int | None = None,
) -> gmm_core.ClassPosterior:
    """NIW posterior from reduced int64 statistics about ``reference`` (K, d).

    The counts are whole numbers, or soft counts on the grid ``2**-e0`` when ``e0`` is given
    (then, as :func:`actors.gmm_core.weighted_moments`, a count below one still divides).
    """
    counts = stats[0].astype(np.float64) if e0 is None else from_fixed(stats[0], e0)
    s1, s2 = from_fixed(stats[1], e1), from_fixed(stats[2], e2)
    safe = np.maximum(counts, 1.0 if e0 is None else 1e-12)[:, None]
    sums = s1 + counts[:, None] * reference
    xbar = np.where(counts[:, None] > 0, sums / safe, 0.0)
    scatter = s2 - np.einsum("kd,ke->kde", s1, s1) / safe[:, :, None]
    return gmm_core._niw_update(prior, counts, sums, xbar, scatter)
