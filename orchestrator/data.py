"""Loading the user's data and the embedded default data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from actors.module import as_data_matrix, as_labels
from messages.errors import DataError


def load_array(path: str | Path, what: str = "data", key: str | None = None) -> np.ndarray:
    """Read an array from text (``np.loadtxt``: spaces or commas), ``.npy`` or ``.npz``.

    Parameters
    ----------
    path : path
    what : str
        "data" or "labels", for error messages.
    key : str, optional
        Array name inside an ``.npz`` (default: ``images``/``data``/``x`` for data,
        ``labels``/``y`` for labels, else the only array).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} file should exist, got a missing path: {p}")
    if not p.is_file():
        raise DataError(f"{what} file should be a regular file, got {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                names = list(z.keys())
                prefs = ("images", "data", "x", "X") if what == "data" else ("labels", "y", "category")
                choice = key or next((n for n in prefs if n in names), names[0] if len(names) == 1 else None)
                if choice not in names:
                    raise DataError(f"{what}: {p} should contain array {key or 'one of ' + str(prefs)!r}, got arrays {names}")
                return z[choice]
        return _load_text(p)
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{what} file {p} could not be read as {suffix or 'text'}: {exc}") from None


def _load_text(p: Path) -> np.ndarray:
    with open(p, encoding="utf-8", errors="strict") as fh:
        head = fh.readline()
    delimiter = "," if "," in head else None
    return np.loadtxt(p, delimiter=delimiter, ndmin=1)


def load_data(path: str | Path, key: str | None = None) -> np.ndarray:
    """Data (N, D) from a file, validated."""
    arr = load_array(path, "data", key)
    return as_data_matrix(arr, f"data ({path})")


def load_labels(path: str | Path, n_points: int, key: str | None = None) -> np.ndarray:
    """Labels (N,) from a file, validated against the data's point count."""
    return as_labels(load_array(path, "labels", key), n_points, f"labels ({path})")


def cyclic_order(labels: np.ndarray, per_class: int | None = None) -> np.ndarray:
    """Indices ordering points by class cyclically (0,1,...,9,0,1,...).

    Takes ``per_class`` points of each class (default: the smallest class's
    count), in their original order within each class.

    Returns
    -------
    numpy.ndarray, shape (per_class * n_classes,)
    """
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    n = min(len(m) for m in members) if per_class is None else per_class
    if any(len(m) < n for m in members):
        raise DataError(f"every class should have at least {n} points, got {min(len(m) for m in members)}")
    return np.stack([m[:n] for m in members], axis=1).reshape(-1)


def default_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (8x8, shipped with the package: no download),
    ordered 0,1,...,9,0,... like the tutorial.

    Returns
    -------
    data : numpy.ndarray, shape (1740, 64), pixel values in [0, 1]
    labels : numpy.ndarray, shape (1740,)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = cyclic_order(digits.target)
    return digits.data[order] / 16.0, digits.target[order].astype(np.int64)


def describe(data: np.ndarray, labels: Any) -> str:
    """One line describing a data set."""
    extra = "" if labels is None else f", {len(np.unique(labels))} label values"
    return f"{data.shape[0]} points x {data.shape[1]} features, values in [{data.min():.3g}, {data.max():.3g}]{extra}"
