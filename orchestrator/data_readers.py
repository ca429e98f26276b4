"""Readers of the array formats: text tables, ``.npz`` archives and Arrow tables (Parquet, Feather).

Each raises :class:`messages.errors.DataError` with one line naming the file, what
was expected and what came.
"""

from __future__ import annotations

import gzip
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from messages.errors import DataError
from orchestrator.data_formats import DATA_KEYS, LABEL_KEYS, LABEL_LIKE_COLUMNS, one_line
from orchestrator.textread import read_plain_table

logger = logging.getLogger(__name__)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_text(p: Path, what: str) -> np.ndarray:
    """Numbers (N, D) or (N,) from a text file (gzipped too), skipping one header line of words."""
    opener: Any = gzip.open if p.name.lower().endswith(".gz") else open
    lines: list[tuple[int, str]] = []  # (line index, content) of the first two non-comment lines
    try:
        with opener(p, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                content = line.split("#", 1)[0].strip()
                if content:
                    lines.append((i, content))
                    if len(lines) == 2:
                        break
    except UnicodeDecodeError:
        raise DataError(
            f"{what} file {p} should be UTF-8 text (or .npy, .npz, Parquet, Feather, IDX), got undecodable bytes"
        ) from None
    if not lines:
        raise DataError(f"{what} file {p} should hold at least one row of numbers, got an empty text file")
    delimiter = "," if "," in lines[0][1] else None
    skiprows = 0
    tokens = [t for t in lines[0][1].split(delimiter) if t.strip()]
    if (
        not all(_is_number(t) for t in tokens)
        and len(lines) == 2
        and all(_is_number(t) for t in lines[1][1].split(delimiter) if t.strip())
    ):
        skiprows = lines[0][0] + 1
        logger.info("%s: skipping header line %r", p, lines[0][1][:80])
    # A plain table (one space or comma between numbers, nothing else) is parsed on
    # pyarrow's threads; anything else, and every error, goes through np.loadtxt.
    fast = read_plain_table(p, delimiter) if skiprows == 0 else None
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            arr = np.loadtxt(p, delimiter=delimiter, ndmin=1, skiprows=skiprows)
    except ValueError as exc:
        expected = (
            "integer labels separated by spaces, commas or newlines"
            if what == "labels"
            else "a table of numbers with the same count on every row"
        )
        detail = one_line(exc).split("; use `usecols`")[0]  # numpy's advice does not apply here
        raise DataError(f"{what} file {p} should hold {expected}, got: {detail}") from None
    if arr.size == 0:
        raise DataError(f"{what} file {p} should hold at least one row of numbers, got only a header or comments")
    return arr


def _pick(names: Sequence[str], prefs: Sequence[str]) -> str | None:
    """The first of ``prefs`` among ``names`` (case-insensitive), else the only name, else None."""
    lower = {n.lower(): n for n in names}
    found = next((lower[k] for k in prefs if k in lower), None)
    return found if found is not None else (names[0] if len(names) == 1 else None)


def read_npz(p: Path, what: str, key: str | None) -> np.ndarray:
    """The array ``key`` of an ``.npz`` (by default the first of the data / label names there, or its only one)."""
    flag = "--data-key" if what == "data" else "--labels-key"
    with np.load(p, allow_pickle=False) as z:
        names = list(z.keys())
        if not names:
            raise DataError(f"{what} file {p} should contain at least one array, got an empty .npz")
        choice = key if key is not None else _pick(names, DATA_KEYS if what == "data" else LABEL_KEYS)
        if choice is None:
            raise DataError(f"{what} file {p} holds several arrays {names}; choose one with key= ({flag})")
        if choice not in names:
            raise DataError(f"{what} file {p} should contain an array {choice!r}, got arrays {names}")
        return z[choice]


# --------------------------------------------------------------------------- Arrow tables


def read_table(p: Path, fmt: str) -> Any:
    """A ``pyarrow.Table`` from a Parquet (``fmt="parquet"``) or Arrow IPC file or stream (``"arrow"``) file."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.read_table(p)
    try:
        return feather.read_table(p, memory_map=False)  # Feather v1, v2 (= Arrow IPC file format)
    except pa.ArrowInvalid:
        with pa.OSFile(str(p), "rb") as source:  # Arrow IPC stream format
            return pa.ipc.open_stream(source).read_all()


def _is_list_type(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_tensor_type(t: Any) -> bool:
    import pyarrow as pa

    return isinstance(t, pa.FixedShapeTensorType)


def _list_to_numpy(arr: Any, p: Path, what: str, name: str) -> np.ndarray:
    """A (nested) list array of equal-length lists -> numpy (n, width, ...)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != lengths[0]) if n else np.empty(0, dtype=np.int64)
        if bad.size:
            raise DataError(
                f"{what} file {p} column {name!r} should hold lists of one length, "
                f"got ragged rows (row 0 has {lengths[0]} values, row {bad[0]} has {lengths[bad[0]]})"
            )
        width = int(lengths[0]) if n else 0
    values = arr.flatten()
    if values.null_count:
        raise DataError(
            f"{what} file {p} column {name!r} should have no missing values, "
            f"got {values.null_count} nulls inside its lists"
        )
    if _is_list_type(values.type):
        inner = _list_to_numpy(values, p, what, name)
    else:
        _check_numeric_type(values.type, p, what, name)
        inner = values.to_numpy(zero_copy_only=False)
    return inner.reshape((n, width) + inner.shape[1:])


def _check_numeric_type(t: Any, p: Path, what: str, name: str) -> None:
    import pyarrow as pa

    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        if what == "labels" and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise DataError(f"{what} file {p} column {name!r} should hold integers, got type {t}")
        raise DataError(f"{what} file {p} column {name!r} should be numeric, got type {t}")


def _column_to_numpy(col: Any, p: Path, what: str, name: str) -> np.ndarray:
    if col.null_count:
        raise DataError(f"{what} file {p} column {name!r} should have no missing values, got {col.null_count} nulls")
    arr = col.combine_chunks()
    if _is_tensor_type(arr.type):
        return arr.to_numpy_ndarray()
    if _is_list_type(arr.type):
        return _list_to_numpy(arr, p, what, name)
    _check_numeric_type(arr.type, p, what, name)
    return arr.to_numpy(zero_copy_only=False)


def table_to_array(table: Any, p: Path, what: str, key: str | None) -> np.ndarray:
    """Data (N, D...) or labels (N,) from an Arrow table (see :func:`load_array`)."""
    flag = "--data-key" if what == "data" else "--labels-key"
    names = list(table.column_names)
    if not names:
        raise DataError(f"{what} file {p} should hold at least one column, got none")
    if key is not None:
        if key not in names:
            raise DataError(f"{what} file {p} should have a column {key!r}, got columns {names}")
        return _column_to_numpy(table.column(key), p, what, key)
    if what != "data":
        choice = _pick(names, LABEL_KEYS)
        if choice is None:
            raise DataError(f"{what} file {p} holds several columns {names}; choose one with key= ({flag})")
        return _column_to_numpy(table.column(choice), p, what, choice)
    arrays = [
        n for n in names if _is_list_type(table.schema.field(n).type) or _is_tensor_type(table.schema.field(n).type)
    ]
    if arrays:
        choice = _pick(arrays, DATA_KEYS)
        if choice is None:
            raise DataError(f"{what} file {p} holds several array columns {arrays}; choose one with key= ({flag})")
        return _column_to_numpy(table.column(choice), p, what, choice)
    cols = [n for n in names if n.lower() not in LABEL_LIKE_COLUMNS]
    if not cols:
        raise DataError(
            f"{what} file {p} should hold feature columns, "
            f"got only label-like columns {names}; choose one with key= ({flag})"
        )
    if len(cols) < len(names):
        logger.info("%s: leaving label-like column(s) %s out of the data matrix", p, sorted(set(names) - set(cols)))
    return np.column_stack([_column_to_numpy(table.column(n), p, what, n) for n in cols])
