"""Loading the user's data, rescaling it for the VAE, and the embedded default data set.

Formats :func:`load_array` reads (chosen by the file name, else by the file's first bytes):

========================  ==========================================================
text                      anything ``np.loadtxt`` reads: numbers separated by spaces,
                          tabs or commas, ``#`` comments, one optional header line;
                          gzipped (``.gz``) too
``.npy``                  one array
``.npz``                  several arrays; ``key`` chooses one
``.parquet``, ``.pq``     a list / fixed-size-list / fixed-shape-tensor column, or
``.feather``, ``.arrow``, several numeric columns forming the matrix; ``key`` chooses
``.ipc``, ``.arrows``     a column (Arrow IPC file or stream format)
IDX (MNIST)               ``*-idx3-ubyte``, ``*-idx1-ubyte`` (any ``idxN``), gzipped
                          (``.gz``) or not
========================  ==========================================================

Every failure raises :class:`messages.errors.DataError` with one line naming the file,
what was expected and what came.  The formats are told apart in
:mod:`orchestrator.data_formats`, read in :mod:`orchestrator.data_readers`, and
rescaled in :mod:`orchestrator.data_scale`; this module's names are the way in.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from actors.module import as_data_matrix, as_labels
from messages.errors import DataError
from orchestrator.data_formats import SUPPORTED, detect_format, fmt_name, one_line, read_idx, write_idx
from orchestrator.data_readers import read_npz, read_table, read_text, table_to_array
from orchestrator.data_scale import SCALE_MODES, check_unit_range, choose_scale, scale_data

__all__ = [
    "SCALE_MODES",
    "SUPPORTED",
    "check_unit_range",
    "choose_scale",
    "cyclic_order",
    "default_digits",
    "describe",
    "detect_format",
    "fmt_name",
    "load_array",
    "load_data",
    "load_labels",
    "read_idx",
    "scale_data",
    "write_idx",
]

# --------------------------------------------------------------------------- public API


def load_array(path: str | Path, what: str = "data", key: str | None = None) -> np.ndarray:
    """Read an array from any supported file (see the module docstring), unvalidated.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        ``"data"`` or ``"labels"``: names the file in error messages and picks the
        default array / column names.
    key : str, optional
        Array name inside an ``.npz``, or column name in a Parquet / Feather file.
        Default: the first of ``images``/``image``/``data``/``x``/``features`` (data)
        or ``labels``/``label``/``y``/``category``/``target``/``class`` (labels) that
        exists, else the only array. Without a key, a Parquet / Feather data file
        gives its only list / tensor column, or else all its numeric columns side by
        side (except label-like ones named ``label(s)``, ``category``, ``target``,
        ``class``).

    Returns
    -------
    numpy.ndarray, shape (N, ...)
        As stored: e.g. (N, D) from text, (N, 28, 28) from an IDX image file.

    Raises
    ------
    DataError
        Missing or unreadable file, unknown format, missing key or column,
        non-numeric column, ragged rows.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} file should exist, got a missing path: {p}")
    if not p.is_file():
        raise DataError(
            f"{what} file should be a regular file, got {'a directory' if p.is_dir() else 'something else'}: {p}"
        )
    try:
        fmt = detect_format(p, what)
        if key is not None and fmt not in ("npz", "parquet", "arrow"):
            raise DataError(
                f"{what} file {p} is {fmt}, which holds one array: "
                f"key {key!r} applies only to .npz, Parquet and Feather files"
            )
        if fmt == "npy":
            return np.load(p, allow_pickle=False)
        if fmt == "npz":
            return read_npz(p, what, key)
        if fmt == "idx":
            return read_idx(p)
        if fmt in ("parquet", "arrow"):
            import pyarrow as pa

            try:
                table = read_table(p, fmt)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(
                    f"{what} file {p} should be a readable {fmt} file, got an error: {one_line(exc)}"
                ) from None
            return table_to_array(table, p, what, key)
        return read_text(p, what)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{what} file {p} should be readable as {fmt_name(p)}, got an error: {one_line(exc)}") from None


def load_data(path: str | Path, key: str | None = None) -> np.ndarray:
    """Data from a file, validated: finite, non-empty, 2-D (images are flattened).

    Parameters
    ----------
    path : str or Path
        Any format of :func:`load_array`.
    key : str, optional
        Array (``.npz``) or column (Parquet / Feather) to read.

    Returns
    -------
    numpy.ndarray, shape (N, D)
        float (float32 stays float32; integers become float64).

    Raises
    ------
    DataError
        As :func:`load_array`, and for NaN/inf, empty, 1-D or ragged data.
    """
    arr = load_array(path, "data", key)
    if arr.ndim > 2 and arr.size == 0:  # as_data_matrix cannot flatten an empty (0, H, W) stack
        raise DataError(f"data ({path}) should hold at least one point and one feature, got shape {arr.shape}")
    return as_data_matrix(arr, f"data ({path})")


def load_labels(path: str | Path, n_points: int, key: str | None = None) -> np.ndarray:
    """Labels from a file, validated against the data's point count.

    Parameters
    ----------
    path : str or Path
        Any format of :func:`load_array`.
    n_points : int
        The data's number of points N.
    key : str, optional
        Array (``.npz``) or column (Parquet / Feather) to read.

    Returns
    -------
    numpy.ndarray, shape (N,), int64

    Raises
    ------
    DataError
        As :func:`load_array`, and for a count other than N or non-integer labels.
    """
    return as_labels(load_array(path, "labels", key), n_points, f"labels ({path})")


# --------------------------------------------------------------------------- default data


def cyclic_order(labels: np.ndarray, per_class: int | None = None) -> np.ndarray:
    """Indices ordering points by class cyclically (0,1,...,9,0,1,...).

    Takes ``per_class`` points of each class (default: the smallest class's
    count), in their original order within each class.

    Parameters
    ----------
    labels : numpy.ndarray, shape (N,)
        Class of each point.
    per_class : int, optional
        Points taken from each class.

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
