"""The file formats of the user's data: telling them apart by name or first bytes, and IDX (MNIST) files.

:func:`detect_format` names the format :func:`orchestrator.data.load_array` will
read a file as; :func:`read_idx` / :func:`write_idx` read and write IDX files.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from messages.errors import DataError

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


def one_line(exc: BaseException) -> str:
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
                f"{what} file {p} should be a readable gzip file, got a damaged one ({one_line(exc)})"
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
        raise DataError(f"IDX file {p} should be readable (gzipped or not), got an error: {one_line(exc)}") from None
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


def fmt_name(path: str | Path) -> str:
    """A short name of a file's format for messages (``".npy"``, ``"text"``, ...)."""
    suffix = Path(path).suffix.lower()
    return suffix if suffix and suffix not in TEXT_SUFFIXES else "text"
