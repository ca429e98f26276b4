"""A multithreaded reader for plain numeric text tables (pyarrow's CSV reader).

``np.loadtxt`` parses on one thread; pyarrow's CSV reader parses blocks of the
file on its thread pool.  :func:`read_plain_table` takes only files whose
layout both readers agree on bit for bit -- one delimiter character (one space,
or one comma) between fields, no comments, no quotes, no tabs, no leading or
trailing blanks, no header -- and gives up (returns ``None``) on anything
else, so that :func:`orchestrator.data.load_array` then reads the file with
``np.loadtxt`` as before: same values, same errors for bad input.  Both parse
decimal numbers with correct rounding to float64.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Bytes that send a file to ``np.loadtxt``: comments, quotes, tabs and other
#: whitespace that ``np.loadtxt`` treats as (part of) a separator.
_UNPLAIN = (b"#", b'"', b"\t", b"\v", b"\f")


def read_plain_table(path: str | Path, delimiter: str | None) -> np.ndarray | None:
    """Read a plain numeric text table with pyarrow, or say it is not plain.

    Parameters
    ----------
    path : str or Path
        A text file, gzipped when its name ends in ``.gz``.
    delimiter : {None, ","}
        As ``np.loadtxt`` would be called: ``None`` (whitespace) or ``","``.

    Returns
    -------
    numpy.ndarray or None
        float64, shaped as ``np.loadtxt(path, delimiter=delimiter, ndmin=1)``
        would return it: (N, D), or 1-D for a single column or a single row.
        ``None`` when the file is not plain (see the module docstring) or
        pyarrow cannot parse it; the caller then uses ``np.loadtxt``.
    """
    import pyarrow as pa
    from pyarrow import csv

    p = Path(path)
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    try:
        with opener(p, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError):
        return None
    if any(b in raw for b in _UNPLAIN):
        return None
    first = raw.split(b"\n", 1)[0].rstrip(b"\r")
    sep = b"," if delimiter == "," else b" "
    if not first or first != first.strip() or (sep == b"," and b" " in raw):
        return None
    n_cols = first.count(sep) + 1
    names = [f"c{i}" for i in range(n_cols)]
    try:
        table = csv.read_csv(
            pa.py_buffer(raw),
            read_options=csv.ReadOptions(column_names=names, block_size=4 << 20),
            parse_options=csv.ParseOptions(
                delimiter=sep.decode(), quote_char=False, double_quote=False, escape_char=False
            ),
            convert_options=csv.ConvertOptions(
                column_types={n: pa.float64() for n in names},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, ValueError) as exc:  # ragged rows, a blank inside a row, a non-number...
        log.debug("%s: not a plain table for pyarrow (%s); using np.loadtxt", p, exc)
        return None
    if table.num_rows == 0:
        return None
    arr = np.empty((table.num_rows, n_cols), dtype=np.float64)
    for j, column in enumerate(table.columns):
        arr[:, j] = column.to_numpy()
    if arr.shape[0] == 1 or arr.shape[1] == 1:  # np.loadtxt(ndmin=1) squeezes a single row or column
        arr = arr.reshape(-1)
    return arr
