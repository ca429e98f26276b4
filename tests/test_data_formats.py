"""``orchestrator.data_formats``: IDX files and telling formats apart by name (milliseconds)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from messages.errors import DataError
from orchestrator.data_formats import detect_format, fmt_name, one_line, read_idx, write_idx

RNG = np.random.default_rng(0)


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
    ("name", "fmt"),
    [
        ("train-images-idx3-ubyte.gz", "idx"),
        ("x.npy", "npy"),
        ("x.NPZ", "npz"),
        ("x.pq", "parquet"),
        ("x.feather", "arrow"),
        ("x.tsv", "text"),
    ],
)
def test_format_from_the_name_without_reading(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 not what the name says")
    assert detect_format(path) == fmt


def test_unknown_and_damaged_files_are_one_line(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\xff\x00\xfe" * 10)
    with pytest.raises(DataError, match=r"data file .*blob should be text .* got an unknown format \(binary data"):
        detect_format(blob)
    damaged = tmp_path / "d.gz"
    damaged.write_bytes(gzip.compress(b"1 2 3\n" * 100)[:30])
    with pytest.raises(DataError, match="should be a readable gzip file, got a damaged one"):
        detect_format(damaged, "labels")


def test_format_names_and_one_line_messages() -> None:
    assert [fmt_name(n) for n in ("a.NPY", "a.csv", "a", "a.parquet")] == [".npy", "text", "text", ".parquet"]
    assert one_line(ValueError("two\n  lines")) == "two lines"
    assert one_line(KeyError()) == "KeyError"
