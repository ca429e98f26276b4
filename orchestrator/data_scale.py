"""Rescaling the user's data into [0, 1] for the VAE's Bernoulli likelihood, and checking that it is there."""

from __future__ import annotations

import logging

import numpy as np

from messages.errors import DataError

logger = logging.getLogger(__name__)

#: Scaling modes of :func:`scale_data`.
SCALE_MODES: tuple[str, ...] = ("auto", "none", "255", "max", "minmax")


def _is_integer_valued(data: np.ndarray) -> bool:
    return bool(data.dtype.kind in "biu" or np.array_equal(data, np.round(data)))


def choose_scale(data: np.ndarray) -> str:
    """The mode ``scale_data(data, "auto")`` applies.

    Rules, first match wins:

    1. values already in [0, 1] -> ``"none"``;
    2. whole numbers in [0, 255] (8-bit pixels) -> ``"255"``;
    3. non-negative values -> ``"max"`` (divide by the maximum: zero stays zero);
    4. otherwise (negative values) -> ``"minmax"``.

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D)
        Finite values.

    Returns
    -------
    str
        ``"none"``, ``"255"``, ``"max"`` or ``"minmax"``.
    """
    lo, hi = float(np.min(data)), float(np.max(data))
    if lo >= 0.0 and hi <= 1.0:
        return "none"
    if lo >= 0.0 and hi <= 255.0 and _is_integer_valued(data):
        return "255"
    if lo >= 0.0:
        return "max"
    return "minmax"


def scale_data(data: np.ndarray, mode: str = "auto") -> np.ndarray:
    """Rescale data into [0, 1] for the VAE's Bernoulli (BCE) loss.

    One scale for the whole array (not per feature), so relative feature scales
    and image contrast are kept.

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D)
        Finite values (as :func:`load_data` returns).
    mode : str
        ``"none"``: unchanged. ``"255"``: divide by 255 (values must be in [0, 255]).
        ``"max"``: divide by the maximum (values must be non-negative; an all-zero
        array stays zero). ``"minmax"``: ``(x - min) / (max - min)`` (a constant
        array becomes zeros). ``"auto"``: the mode :func:`choose_scale` picks.

    Returns
    -------
    numpy.ndarray, shape (N, D)
        float; the input's float dtype is kept, integers become float64. ``"none"``
        returns the input as it is.

    Raises
    ------
    DataError
        Unknown mode, or data outside the range a mode requires.
    """
    if mode not in SCALE_MODES:
        raise DataError(f"scale mode should be one of {', '.join(SCALE_MODES)}, got {mode!r}")
    arr = np.asarray(data)
    if mode == "auto":
        mode = choose_scale(arr)
        logger.info("scale auto: using %r for values in [%.4g, %.4g]", mode, float(np.min(arr)), float(np.max(arr)))
    if mode == "none":
        return arr
    x = arr if arr.dtype.kind == "f" else arr.astype(np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    if mode == "255":
        if lo < 0.0 or hi > 255.0:
            raise DataError(
                f"data should lie in [0, 255] to be scaled with 255, "
                f"got values in [{lo:.4g}, {hi:.4g}]; use minmax or auto"
            )
        return x / x.dtype.type(255.0)
    if mode == "max":
        if lo < 0.0:
            raise DataError(
                f"data should be non-negative to be scaled by its maximum, got a minimum of {lo:.4g}; use minmax"
            )
        return x / x.dtype.type(hi) if hi > 0.0 else np.zeros_like(x)
    if hi == lo:
        logger.warning("data is constant (%.4g): minmax scaling makes it all zeros", lo)
        return np.zeros_like(x)
    return (x - x.dtype.type(lo)) / x.dtype.type(hi - lo)


def check_unit_range(data: np.ndarray, what: str = "data") -> None:
    """Refuse data outside [0, 1] (the VAE's BCE loss needs pixel-like values).

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D)
        Values to check.
    what : str
        Names the data in the message (e.g. ``"data (pixels.csv)"``).

    Raises
    ------
    DataError
        With the range found and the ``--scale`` value that would fix it.
    """
    lo, hi = float(np.min(data)), float(np.max(data))
    if lo >= 0.0 and hi <= 1.0:
        return
    raise DataError(
        f"{what} should lie in [0, 1] for the VAE's BCE loss, got values in [{lo:.4g}, {hi:.4g}]; "
        f"rescale it with --scale {choose_scale(data)} (or --scale auto / minmax)"
    )
