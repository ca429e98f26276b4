"""``orchestrator.data_readers``: text, ``.npz`` and Arrow table readers, called directly (milliseconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from messages.errors import DataError
from orchestrator.data_readers import read_npz, read_text, table_to_array


def test_text_with_a_header_line_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("# made by hand\na,b\n1,2.5\n3,4\n")
    np.testing.assert_array_equal(read_text(path, "data"), [[1.0, 2.5], [3.0, 4.0]])


def test_ragged_text_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("1 2 3\n4 5\n")
    with pytest.raises(DataError, match="should hold a table of numbers with the same count on every row") as info:
        read_text(path, "data")
    assert "\n" not in str(info.value)


def test_npz_takes_the_named_then_the_preferred_array(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, other=np.zeros(2), images=np.ones((2, 3)), y=np.arange(2))
    assert read_npz(path, "data", None).shape == (2, 3)
    np.testing.assert_array_equal(read_npz(path, "labels", None), [0, 1])
    np.testing.assert_array_equal(read_npz(path, "data", "other"), [0.0, 0.0])
    with pytest.raises(DataError, match=r"should contain an array 'nope', got arrays \['other', 'images', 'y'\]"):
        read_npz(path, "data", "nope")


def test_numeric_columns_form_the_matrix_without_label_like_ones(tmp_path: Path) -> None:
    table = pa.table({"a": [1.0, 2.0], "label": [0, 1], "b": [3, 4]})
    np.testing.assert_array_equal(table_to_array(table, tmp_path / "t.parquet", "data", None), [[1, 3], [2, 4]])
    np.testing.assert_array_equal(table_to_array(table, tmp_path / "t.parquet", "labels", None), [0, 1])
    lists = pa.table({"x": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64(), 2))})
    np.testing.assert_array_equal(table_to_array(lists, tmp_path / "t.arrow", "data", None), [[1, 2], [3, 4]])
