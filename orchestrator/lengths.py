"""Reading how the data's points form sequences: a lengths file, or a sequence id column.

Two ways in, both giving hmmlearn's ``lengths`` (one positive integer per sequence,
in order, summing to N):

* ``--lengths FILE``: text or ``.npy`` with one integer per sequence
  (:func:`load_lengths`);
* ``--sequence-key COLUMN``: a Parquet, Feather or CSV (with a header line) data
  file whose column holds a sequence id per row; the rows of one id are
  contiguous and in order, and the column is left out of the data matrix
  (:func:`load_sequence_table`).

Every failure raises :class:`messages.errors.DataError` with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from actors.module import as_data_matrix
from messages import as_lengths
from messages.errors import DataError
from orchestrator.data import load_array
from orchestrator.data_formats import detect_format, one_line
from orchestrator.data_readers import read_table, table_to_array


def load_lengths(path: str | Path, n_points: int) -> np.ndarray | None:
    """Sequence lengths from a file, validated against the data's point count.

    Parameters
    ----------
    path : str or Path
        Text (one integer per sequence, separated by spaces, commas or newlines) or ``.npy``.
    n_points : int
        The data's number of points N.

    Returns
    -------
    numpy.ndarray, shape (S,), int64, or None when the file gives one sequence.

    Raises
    ------
    DataError
        Unreadable file; entries that are not positive integers; a sum other than N.
    """
    return as_lengths(load_array(path, "lengths"), n_points, f"lengths ({path})", DataError)


def lengths_from_ids(ids: np.ndarray, what: str) -> np.ndarray:
    """Lengths of the runs of equal ids, in order.

    Parameters
    ----------
    ids : numpy.ndarray, shape (N,)
        A sequence id per row (numbers or strings).
    what : str
        Names the column in error messages.

    Returns
    -------
    numpy.ndarray, shape (S,), int64

    Raises
    ------
    DataError
        An id comes back after rows of another id (a sequence's rows should be contiguous).
    """
    n = ids.shape[0]
    if n == 0:
        raise DataError(f"{what} should hold one sequence id per row, got no rows")
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1])
    first_row: dict[Any, int] = {}
    for row in starts.tolist():
        key = ids[row].item() if hasattr(ids[row], "item") else ids[row]
        if key in first_row:
            raise DataError(
                f"{what} should keep the rows of one sequence together, in order, got id {key!r} coming back at "
                f"row {row} "
                f"after other ids (its rows began at row {first_row[key]})"
            )
        first_row[key] = row
    return np.diff(np.append(starts, n)).astype(np.int64)


def _csv_table(p: Path) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        return pcsv.read_csv(p)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"data file {p} should be a CSV file with a header line naming its columns, got an error: {one_line(exc)}"
        ) from None


def load_sequence_table(
    path: str | Path, sequence_key: str, data_key: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Data and the lengths of its sequences from a table file with a sequence id column.

    Parameters
    ----------
    path : str or Path
        Parquet, Feather/Arrow IPC, or CSV with a header line.
    sequence_key : str
        The column holding each row's sequence id; left out of the data.
    data_key : str, optional
        The column holding the data (as for :func:`orchestrator.data.load_data`);
        default: the only list column, else every other numeric column.

    Returns
    -------
    data : numpy.ndarray, shape (N, D)
    lengths : numpy.ndarray, shape (S,), int64, or None (one sequence)

    Raises
    ------
    DataError
        Not a table file, no such column, missing ids, an id that comes back, bad data.
    """
    import pyarrow as pa

    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file should exist, got a missing path: {p}")
    fmt = detect_format(p, "data")
    if fmt in ("parquet", "arrow"):
        try:
            table = read_table(p, fmt)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"data file {p} should be a readable {fmt} file, got an error: {one_line(exc)}") from None
    elif fmt == "text":
        table = _csv_table(p)
    else:
        raise DataError(
            f"--sequence-key applies to Parquet, Feather and CSV files, got a {fmt} file {p}; give --lengths "
            "FILE instead"
        )
    names = list(table.column_names)
    what = f"data file {p} sequence column {sequence_key!r}"
    if sequence_key not in names:
        raise DataError(f"data file {p} should have a sequence column {sequence_key!r}, got columns {names}")
    if data_key == sequence_key:
        raise DataError(f"--data-key and --sequence-key should name different columns, got {sequence_key!r} for both")
    col = table.column(sequence_key)
    if col.null_count:
        raise DataError(f"{what} should have an id on every row, got {col.null_count} missing")
    ids = col.combine_chunks().to_numpy(zero_copy_only=False)
    if ids.ndim != 1:
        raise DataError(f"{what} should hold one id per row, got a list column")
    lengths = lengths_from_ids(ids, what)
    data = as_data_matrix(table_to_array(table.drop_columns([sequence_key]), p, "data", data_key), f"data ({p})")
    return data, as_lengths(lengths, int(data.shape[0]), what, DataError)
