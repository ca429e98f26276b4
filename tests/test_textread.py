"""The multithreaded text reader gives np.loadtxt's values exactly, and declines what it does not read alike."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from orchestrator.data import load_array
from orchestrator.textread import read_plain_table


def _write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_plain_tables_equal_loadtxt_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.random((50, 7)) * 10.0 ** rng.integers(-8, 8, size=(50, 7))
    np.savetxt(tmp_path / "a.txt", values)  # '%.18e', one space
    np.savetxt(tmp_path / "b.csv", values, delimiter=",", fmt="%.17g")
    np.savetxt(tmp_path / "c.txt.gz", values[:, :1], fmt="%.6f")
    _write(tmp_path / "d.txt", "1 2.5 -3\r\n4 5e-3 6\r\n\n7 8 9\n")
    _write(tmp_path / "e.txt", "0 1 2 3\n")  # one row: 1-D, as np.loadtxt(ndmin=1) gives
    for name, delim in (("a.txt", None), ("b.csv", ","), ("c.txt.gz", None), ("d.txt", None), ("e.txt", None)):
        got = read_plain_table(tmp_path / name, delim)
        want = np.loadtxt(tmp_path / name, delimiter=delim, ndmin=1)
        assert got is not None, name
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), name
        assert np.array_equal(load_array(tmp_path / name), want), name


@pytest.mark.parametrize(
    "text",
    [
        "1 2\n3  4\n",  # two spaces: np.loadtxt's whitespace split
        "1 2 \n3 4\n",  # trailing blank
        " 1 2\n3 4\n",  # leading blank
        "1\t2\n3\t4\n",  # tab
        "1 2 # note\n3 4\n",  # comment
        '"1" 2\n3 4\n',  # quotes
        "1 2\n3\n",  # ragged
        "1 2\nx 4\n",  # not a number
    ],
)
def test_other_layouts_are_left_to_loadtxt(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "t.txt", text)
    assert read_plain_table(path, None) is None


def test_comma_files_with_blanks_are_left_to_loadtxt(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "1, 2\n3, 4\n")
    assert read_plain_table(path, ",") is None
    assert np.array_equal(load_array(path), np.loadtxt(path, delimiter=",", ndmin=1))
