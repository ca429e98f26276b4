"""Reading users' data files: round trips for every format, every bad input, and scaling."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from messages.errors import DataError
from orchestrator.data import (
    check_unit_range,
    choose_scale,
    detect_format,
    load_array,
    load_data,
    load_labels,
    read_idx,
    scale_data,
    write_idx,
)

RNG = np.random.default_rng(0)
X = RNG.random((6, 4))  # data, (N, D) in [0, 1)
Y = np.array([0, 1, 2, 0, 1, 2])
PIXELS = RNG.integers(0, 256, size=(6, 2, 2), dtype=np.uint8)  # IDX images (N, H, W)

Writer = Callable[[Path], object]


# --------------------------------------------------------------------------- writers


def _text(content: str) -> Writer:
    return lambda p: p.write_text(content)


def _bytes(content: bytes) -> Writer:
    return lambda p: p.write_bytes(content)


def _savetxt(arr: np.ndarray, **kw: object) -> Writer:
    return lambda p: np.savetxt(p, arr, **kw)


def _npy(arr: np.ndarray) -> Writer:
    return lambda p: p.write_bytes(_npy_bytes(arr))  # np.save(path) would add ".npy" to the name


def _npz(**arrays: np.ndarray) -> Writer:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)

    return write


def _write_table(p: Path, table: pa.Table) -> None:
    suffix = p.suffix
    if suffix == ".parquet":
        pq.write_table(table, p)
    elif suffix == ".feather":
        feather.write_feather(table, p)
    elif suffix == ".arrow":  # IPC file format
        with pa.OSFile(str(p), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    else:  # .ipc: IPC stream format
        with pa.OSFile(str(p), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)


def _table(**columns: object) -> Writer:
    return lambda p: _write_table(p, pa.table(columns))


def _list_column(rows: np.ndarray) -> pa.Array:
    return pa.array([list(r) for r in rows], pa.list_(pa.float64()))


def _fixed_list_column(rows: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])


def _tensor_column(stack: np.ndarray) -> pa.Array:
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(stack))


def _idx(arr: np.ndarray) -> Writer:
    return lambda p: write_idx(p, arr)


def _gzip_bytes(content: bytes) -> Writer:
    return lambda p: p.write_bytes(gzip.compress(content))


def _gzipped(write: Writer) -> Writer:
    def gz(p: Path) -> None:
        scratch = p.with_name("scratch-" + p.name.removesuffix(".gz"))
        write(scratch)
        p.write_bytes(gzip.compress(scratch.read_bytes()))
        scratch.unlink()

    return gz


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


# --------------------------------------------------------------------------- round trips

DATA_ROUND_TRIPS = [
    ("spaces.txt", _savetxt(X), None, X),
    ("commas.csv", _savetxt(X, delimiter=","), None, X),
    ("header.csv", _savetxt(X, delimiter=",", header="a,b,c,d", comments=""), None, X),
    ("tabs.tsv", _savetxt(X, delimiter="\t"), None, X),
    ("gzipped.txt.gz", _savetxt(X), None, X),
    ("no-suffix", _savetxt(X), None, X),
    ("array.npy", _npy(X), None, X),
    ("default-key.npz", _npz(images=X, labels=Y), None, X),
    ("chosen-key.npz", _npz(first=X[:2], second=X), "second", X),
    ("list.parquet", _table(images=_list_column(X), label=Y), None, X),
    ("fixed-list.parquet", _table(x=_fixed_list_column(X)), None, X),
    ("tensor.parquet", _table(img=_tensor_column(PIXELS)), None, PIXELS.reshape(6, -1)),
    ("columns.parquet", _table(a=X[:, 0], b=X[:, 1], c=X[:, 2], d=X[:, 3], label=Y), None, X),
    ("key.parquet", _table(a=_list_column(X[:, :2]), b=_list_column(X)), "b", X),
    ("columns.feather", _table(a=X[:, 0], b=X[:, 1], c=X[:, 2], d=X[:, 3]), None, X),
    ("tensor.feather", _table(img=_tensor_column(PIXELS)), None, PIXELS.reshape(6, -1)),
    ("file.arrow", _table(images=_list_column(X)), None, X),
    ("stream.ipc", _table(images=_fixed_list_column(X)), None, X),
    ("train-images-idx3-ubyte", _idx(PIXELS), None, PIXELS.reshape(6, -1)),
    ("train-images-idx3-ubyte.gz", _idx(PIXELS), None, PIXELS.reshape(6, -1)),
    ("floats-idx2-ubyte", _idx(X.astype(np.float32)), None, X.astype(np.float32)),
]


@pytest.mark.parametrize(("name", "write", "key", "expected"), DATA_ROUND_TRIPS, ids=[c[0] for c in DATA_ROUND_TRIPS])
def test_data_round_trip(tmp_path: Path, name: str, write: Writer, key: str | None, expected: np.ndarray) -> None:
    path = tmp_path / name
    write(path)
    data = load_data(path, key)
    assert data.shape == expected.shape
    assert data.dtype.kind == "f"
    np.testing.assert_array_equal(data, expected)


LABEL_ROUND_TRIPS = [
    ("one-per-line.txt", _savetxt(Y, fmt="%d"), None),
    ("one-line.csv", _text(",".join(map(str, Y)) + "\n"), None),
    ("whole-floats.txt", _savetxt(Y.astype(float)), None),
    ("labels.npy", _npy(Y), None),
    ("column-vector.npy", _npy(Y[:, None]), None),
    ("labels.npz", _npz(images=X, labels=Y), None),
    ("labels-key.npz", _npz(a=X, cats=Y), "cats"),
    ("labels.parquet", _table(images=_list_column(X), label=Y), None),
    ("labels-key.feather", _table(digit=Y, other=Y + 1), "digit"),
    ("labels.ipc", _table(y=pa.array(Y, pa.int8())), None),
    ("train-labels-idx1-ubyte.gz", _idx(Y.astype(np.uint8)), None),
]


@pytest.mark.parametrize(("name", "write", "key"), LABEL_ROUND_TRIPS, ids=[c[0] for c in LABEL_ROUND_TRIPS])
def test_labels_round_trip(tmp_path: Path, name: str, write: Writer, key: str | None) -> None:
    path = tmp_path / name
    write(path)
    labels = load_labels(path, len(Y), key)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, Y)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_every_type(tmp_path: Path, dtype: str, suffix: str) -> None:
    arr = (RNG.random((3, 4, 5)) * 100).astype(dtype)
    back = read_idx(write_idx(tmp_path / f"a-idx3-ubyte{suffix}", arr))
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, arr)


def test_idx_header_is_big_endian(tmp_path: Path) -> None:
    raw = write_idx(tmp_path / "l-idx1-ubyte", np.arange(3, dtype=np.uint8)).read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])


@pytest.mark.parametrize(
    ("name", "write", "fmt"),
    [
        ("blob", _idx(PIXELS), "idx"),
        ("blob", _npy(X), "npy"),
        ("blob", _npz(images=X), "npz"),
        ("blob", _table(x=X[:, 0]), "arrow"),  # IPC stream
        ("blob", _savetxt(X), "text"),
        ("data.bin.gz", _gzipped(_idx(PIXELS)), "idx"),
        ("data.gz", _gzipped(_savetxt(X)), "text"),
    ],
)
def test_format_sniffed_from_content(tmp_path: Path, name: str, write: Writer, fmt: str) -> None:
    path = tmp_path / name
    write(path)
    assert detect_format(path) == fmt
    assert load_array(path).shape[0] == 6


# --------------------------------------------------------------------------- bad inputs


def _pickled_npy(p: Path) -> None:
    np.save(p, np.array([[1, "a"]], dtype=object), allow_pickle=True)


BAD_DATA = [
    # (id, file name, writer (None: no file), key, fragment of the message)
    ("missing", "absent.txt", None, None, "missing path"),
    ("directory", "folder.txt", lambda p: p.mkdir(), None, "directory"),
    ("unknown-format", "photo.png", _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), None, "unknown format"),
    ("gzipped-npy", "array.npy.gz", _gzip_bytes(_npy_bytes(X)), None, "unknown format"),
    ("damaged-npy", "bad.npy", _bytes(b"\x93NUMPY\x01\x00garbage"), None, "readable as .npy"),
    ("pickled-npy", "objects.npy", _pickled_npy, None, "readable as .npy"),
    ("damaged-gzip", "data.txt.gz", _bytes(b"\x1f\x8b\x08\x00garbage"), None, "readable"),
    ("damaged-parquet", "table.parquet", _bytes(b"PAR1 not really"), None, "readable parquet"),
    ("not-utf8", "data.txt", _bytes(b"\xff\xfe\xfa 1 2\n"), None, "UTF-8"),
    ("nan-text", "nan.txt", _text("0.1 0.2\nnan 0.4\n"), None, "finite"),
    ("inf-npy", "inf.npy", _npy(np.array([[0.1, np.inf]])), None, "finite"),
    ("nan-list-column", "nan.parquet", _table(x=pa.array([[0.1, float("nan")], [0.2, 0.3]])), None, "finite"),
    ("null-column", "null.parquet", _table(a=pa.array([0.1, None]), b=[0.2, 0.3]), None, "missing values"),
    ("null-in-list", "null-in-list.feather", _table(x=pa.array([[0.1, None], [0.2, 0.3]])), None, "missing values"),
    ("empty-text", "empty.txt", _text(""), None, "empty text file"),
    ("comments-only", "comments.csv", _text("# nothing here\n\n"), None, "empty text file"),
    ("empty-npy", "empty.npy", _npy(np.zeros((0, 4))), None, "at least one point"),
    ("empty-parquet", "empty.parquet", _table(x=pa.array([], pa.list_(pa.float64()))), None, "at least one point"),
    ("empty-idx", "empty-idx3-ubyte", _idx(np.zeros((0, 28, 28), np.uint8)), None, "at least one point"),
    ("no-columns", "none.feather", lambda p: _write_table(p, pa.table({})), None, "at least one column"),
    ("1d-npy", "vector.npy", _npy(np.arange(5.0)), None, "2-D"),
    ("1d-text", "row.txt", _text("0.1 0.2 0.3\n"), None, "2-D"),
    ("1d-idx-labels-as-data", "train-labels-idx1-ubyte", _idx(Y.astype(np.uint8)), None, "2-D"),
    ("ragged-text", "ragged.txt", _text("0.1 0.2 0.3\n0.4 0.5\n"), None, "same count on every row"),
    ("ragged-list-column", "ragged.parquet", _table(x=pa.array([[0.1, 0.2], [0.3]])), None, "ragged rows"),
    ("ragged-nested", "nested.feather", _table(x=pa.array([[[0.1], [0.2]], [[0.3, 0.4], [0.5]]])), None, "ragged rows"),
    ("npz-missing-key", "arrays.npz", _npz(images=X), "nope", "should contain an array 'nope'"),
    ("npz-ambiguous", "arrays.npz", _npz(a=X, b=X), None, "several arrays"),
    ("parquet-missing-key", "table.parquet", _table(a=X[:, 0]), "nope", "should have a column 'nope'"),
    ("parquet-ambiguous", "table.parquet", _table(a=_list_column(X), b=_list_column(X)), None, "several array columns"),
    ("string-column", "table.parquet", _table(a=X[:, 0], name=["x"] * 6), None, "should be numeric"),
    ("only-label-columns", "table.feather", _table(label=Y), None, "label-like"),
    ("key-on-npy", "array.npy", _npy(X), "images", "applies only to"),
    ("idx-bad-magic", "bad-idx3-ubyte", _bytes(b"\x01\x02\x03\x04rest"), None, "magic number"),
    ("idx-short-header", "short-idx3-ubyte", _bytes(b"\x00\x00\x08\x03\x00\x00"), None, "header"),
    (
        "idx-truncated",
        "cut-idx3-ubyte.gz",
        _gzipped(lambda p: p.write_bytes(_idx_bytes(PIXELS)[:-5])),
        None,
        "truncated",
    ),
]


@pytest.mark.parametrize(("name", "write", "key", "fragment"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_one_clear_line(
    tmp_path: Path, name: str, write: Writer | None, key: str | None, fragment: str
) -> None:
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(DataError) as info:
        load_data(path, key)
    message = str(info.value)
    assert "\n" not in message
    assert name in message, message
    assert fragment in message, message


BAD_LABELS = [
    # (id, file name, writer, number of data points, key, fragment)
    ("missing", "absent.txt", None, 6, None, "missing path"),
    ("count-differs", "labels.txt", _savetxt(Y, fmt="%d"), 5, None, "should have 5 entries"),
    ("count-differs-idx", "l-idx1-ubyte.gz", _idx(Y.astype(np.uint8)), 7, None, "should have 7 entries"),
    ("fractions", "labels.txt", _text("0 0.5 1\n"), 3, None, "should be integers"),
    ("nan", "labels.npy", _npy(np.array([0.0, np.nan, 1.0])), 3, None, "should be integers"),
    ("words", "labels.txt", _text("cat\ndog\n"), 2, None, "integer labels"),
    ("string-column", "labels.parquet", _table(label=["cat", "dog"]), 2, None, "should hold integers"),
    ("float-column", "labels.feather", _table(label=[0.0, 1.5]), 2, None, "should be integers"),
    ("two-d", "labels.npy", _npy(np.zeros((3, 2), dtype=int)), 3, None, "1-D"),
    ("ambiguous-columns", "labels.parquet", _table(a=Y, b=Y), 6, None, "several columns"),
    ("empty", "labels.txt", _text(""), 6, None, "empty text file"),
]


@pytest.mark.parametrize(
    ("name", "write", "n", "key", "fragment"), [c[1:] for c in BAD_LABELS], ids=[c[0] for c in BAD_LABELS]
)
def test_bad_labels_are_one_clear_line(
    tmp_path: Path, name: str, write: Writer | None, n: int, key: str | None, fragment: str
) -> None:
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(DataError) as info:
        load_labels(path, n, key)
    message = str(info.value)
    assert "\n" not in message
    assert name in message, message
    assert fragment in message, message


def test_data_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing path"):
        load_array(tmp_path / "nothing.npy")


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize(
    ("data", "mode"),
    [
        (np.array([[0.0, 0.5], [1.0, 0.25]]), "none"),
        (np.array([[0, 128], [255, 3]], dtype=np.uint8), "255"),
        (np.array([[0.0, 128.0], [200.0, 3.0]]), "255"),
        (np.array([[0.0, 1.5], [1000.0, 3.0]]), "max"),
        (np.array([[0.5, 1.5], [2.5, 3.25]]), "max"),
        (np.array([[-1.0, 0.5], [2.0, 3.0]]), "minmax"),
    ],
)
def test_auto_scale_choice(data: np.ndarray, mode: str) -> None:
    assert choose_scale(data) == mode
    scaled = scale_data(data, "auto")
    np.testing.assert_allclose(scaled, scale_data(data, mode))
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0
    check_unit_range(scaled)


def test_scale_modes_values() -> None:
    data = np.array([[0.0, 51.0], [255.0, 102.0]])
    np.testing.assert_allclose(scale_data(data, "255"), [[0.0, 0.2], [1.0, 0.4]])
    np.testing.assert_allclose(scale_data(data, "max"), [[0.0, 0.2], [1.0, 0.4]])
    np.testing.assert_allclose(scale_data(data + 10, "minmax"), [[0.0, 0.2], [1.0, 0.4]])
    assert scale_data(data, "none") is data


def test_scale_keeps_float32_and_converts_integers() -> None:
    assert scale_data(np.full((2, 2), 10.0, np.float32), "255").dtype == np.float32
    assert scale_data(np.full((2, 2), 10, np.uint8), "255").dtype == np.float64


def test_scale_constant_data_becomes_zeros() -> None:
    np.testing.assert_array_equal(scale_data(np.full((2, 3), 7.0), "minmax"), np.zeros((2, 3)))
    np.testing.assert_array_equal(scale_data(np.zeros((2, 3)), "max"), np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("data", "mode", "fragment"),
    [
        (np.array([[0.0, 300.0]]), "255", "[0, 255]"),
        (np.array([[-1.0, 3.0]]), "255", "[0, 255]"),
        (np.array([[-1.0, 3.0]]), "max", "non-negative"),
        (np.array([[0.0, 3.0]]), "log", "should be one of"),
    ],
)
def test_scale_refuses(data: np.ndarray, mode: str, fragment: str) -> None:
    with pytest.raises(DataError, match=r".*") as info:
        scale_data(data, mode)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "suggestion"),
    [
        (np.array([[0, 255]], dtype=np.uint8), "--scale 255"),
        (np.array([[0.0, 1000.5]]), "--scale max"),
        (np.array([[-0.5, 0.5]]), "--scale minmax"),
    ],
)
def test_check_unit_range_suggests_scale(data: np.ndarray, suggestion: str) -> None:
    with pytest.raises(DataError) as info:
        check_unit_range(data, "data (pixels.csv)")
    message = str(info.value)
    assert message.startswith("data (pixels.csv) should lie in [0, 1]")
    assert suggestion in message and "\n" not in message


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
def test_check_unit_range_accepts_0_and_1_and_refuses_a_hair_outside(dtype) -> None:
    data = np.array([[0, 1], [1, 0]], dtype=dtype)
    before = data.copy()
    assert check_unit_range(data) is None
    np.testing.assert_array_equal(data, before)  # checked, not rescaled
    if dtype is np.uint8:
        return
    for value in (np.nextafter(dtype(1), dtype(2)), -np.finfo(dtype).tiny):
        outside = data.copy()
        outside[0, 0] = value
        with pytest.raises(DataError) as info:
            check_unit_range(outside)
        lo, hi = min(float(value), 0.0), max(float(value), 1.0)
        assert str(info.value).startswith(
            f"data should lie in [0, 1] for the VAE's BCE loss, got values in [{lo:.4g}, {hi:.4g}]; rescale it with"
        )
