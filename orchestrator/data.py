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
what was expected and what came.
"""

from __future__ import annotations

import gzip
import logging
import re
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actors.module import as_data_matrix, as_labels
from messages.errors import DataError
from orchestrator.textread import read_plain_table

logger = logging.getLogger(__name__)

#: Array or column names tried, in order, when no key is given.
DATA_KEYS: tuple[str, ...] = ("images", "image", "data", "x", "features")
LABEL_KEYS: tuple[str, ...] = ("labels", "label", "y", "category", "target", "class")
#: Columns left out of a data matrix built from several numeric columns (they look like labels).
LABEL_LIKE_COLUMNS: frozenset[str] = frozenset({"labels", "label", "category", "target", "class"})

TEXT_SUFFIXES = frozenset({"", ".txt", ".csv", ".tsv", ".dat", ".data", ".text"})
_SUFFIX_FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "arrow",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrow",
}
_IDX_NAME = re.compile(r"idx\d+-ubyte$|\.idx\d*$", re.IGNORECASE)
#: IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
SUPPORTED = "text (np.loadtxt), .npy, .npz, .parquet, .feather/.arrow/.ipc or IDX (*-idx3-ubyte[.gz])"

#: Scaling modes of :func:`scale_data`.
SCALE_MODES: tuple[str, ...] = ("auto", "none", "255", "max", "minmax")


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- format detection


def _read_head(p: Path, what: str, n: int = 4096) -> bytes:
    with open(p, "rb") as fh:
        head = fh.read(n)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(p, "rb") as fh:
                return fh.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{what} file {p} should be a readable gzip file, got a damaged one ({_one_line(exc)})"
            ) from None
    return head


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the sample is fine
        return exc.start >= len(head) - 3
    return True


def _sniff(head: bytes) -> str | None:
    """The format of a file from its first (decompressed) bytes, or None."""
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff") or head.startswith(b"FEA1"):
        return "arrow"
    if len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_DTYPES and head[3] > 0:
        return "idx"
    if _looks_like_text(head):
        return "text"
    return None


def detect_format(path: str | Path, what: str = "data") -> str:
    """The format :func:`load_array` will read a file as.

    Parameters
    ----------
    path : str or Path
        An existing regular file.
    what : str
        Names the file in error messages (``"data"``, ``"labels"``).

    Returns
    -------
    str
        One of ``"text"``, ``"npy"``, ``"npz"``, ``"parquet"``, ``"arrow"``, ``"idx"``.
    """
    p = Path(path)
    name = p.name.lower()
    gz = name.endswith(".gz")
    inner = name[:-3] if gz else name
    if _IDX_NAME.search(inner):
        return "idx"
    suffix = Path(inner).suffix
    if not gz and suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    if suffix in TEXT_SUFFIXES and suffix:
        return "text"
    fmt = _sniff(_read_head(p, what))
    if fmt is None or (gz and fmt not in ("text", "idx")):
        kind = "binary data" if fmt is None else f"a gzipped {fmt} file"
        raise DataError(
            f"{what} file {p} should be {SUPPORTED}, got an unknown format ({kind} with suffix {p.suffix or 'none'!r})"
        )
    return fmt


# --------------------------------------------------------------------------- readers


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not.

    The header is a magic number ``00 00 TT NN`` (``TT`` the type code: 0x08 ubyte,
    0x09 byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64; ``NN`` the number
    of dimensions), then ``NN`` big-endian uint32 sizes, then the values, big-endian,
    row-major.

    Parameters
    ----------
    path : str or Path
        ``*-idx3-ubyte`` (images), ``*-idx1-ubyte`` (labels), optionally ``.gz``.

    Returns
    -------
    numpy.ndarray, shape (d0, d1, ...)
        Native byte order; e.g. (60000, 28, 28) uint8 for MNIST's training images.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"IDX file {p} should be readable (gzipped or not), got an error: {_one_line(exc)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        got = raw[:4].hex(" ") or "an empty file"
        raise DataError(f"IDX file {p} should start with the magic number 00 00 <type> <ndim>, got {got}")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"IDX file {p} should have a {header}-byte header for {ndim} dimensions, got {len(raw)} bytes in all"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {p} should hold {expected} data bytes for shape {shape}, "
            f"got {len(raw) - header} (truncated or damaged)"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write an array as an IDX file (gzipped when the name ends with ``.gz``).

    Parameters
    ----------
    path : str or Path
        Where to write.
    array : numpy.ndarray, shape (d0, d1, ...)
        dtype uint8, int8, int16, int32, float32 or float64; at most 255 dimensions.

    Returns
    -------
    Path
        The file written.
    """
    arr = np.asarray(array)
    code = _IDX_CODES.get(arr.dtype.newbyteorder("="))
    if code is None or not 1 <= arr.ndim <= 255:
        dtypes = sorted(str(d) for d in _IDX_CODES)
        raise DataError(
            f"IDX file {path} should get an array of dtype {dtypes} with 1-255 dimensions, "
            f"got {arr.dtype} with {arr.ndim}"
        )
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    p = Path(path)
    if p.name.lower().endswith(".gz"):
        with gzip.open(p, "wb", compresslevel=6) as fh:
            fh.write(header + body)
    else:
        p.write_bytes(header + body)
    return p


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _load_text(p: Path, what: str) -> np.ndarray:
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
        detail = _one_line(exc).split("; use `usecols`")[0]  # numpy's advice does not apply here
        raise DataError(f"{what} file {p} should hold {expected}, got: {detail}") from None
    if arr.size == 0:
        raise DataError(f"{what} file {p} should hold at least one row of numbers, got only a header or comments")
    return arr


def _pick(names: Sequence[str], prefs: Sequence[str]) -> str | None:
    """The first of ``prefs`` among ``names`` (case-insensitive), else the only name, else None."""
    lower = {n.lower(): n for n in names}
    found = next((lower[k] for k in prefs if k in lower), None)
    return found if found is not None else (names[0] if len(names) == 1 else None)


def _load_npz(p: Path, what: str, key: str | None) -> np.ndarray:
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


def _read_table(p: Path, fmt: str) -> Any:
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


def _table_to_array(table: Any, p: Path, what: str, key: str | None) -> np.ndarray:
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
            return _load_npz(p, what, key)
        if fmt == "idx":
            return read_idx(p)
        if fmt in ("parquet", "arrow"):
            import pyarrow as pa

            try:
                table = _read_table(p, fmt)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(
                    f"{what} file {p} should be a readable {fmt} file, got an error: {_one_line(exc)}"
                ) from None
            return _table_to_array(table, p, what, key)
        return _load_text(p, what)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{what} file {p} should be readable as {fmt_name(p)}, got an error: {_one_line(exc)}"
        ) from None


def fmt_name(path: str | Path) -> str:
    """A short name of a file's format for messages (``".npy"``, ``"text"``, ...)."""
    suffix = Path(path).suffix.lower()
    return suffix if suffix and suffix not in TEXT_SUFFIXES else "text"


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


# --------------------------------------------------------------------------- scaling


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
