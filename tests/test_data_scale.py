"""``orchestrator.data_scale``: rescaling data into [0, 1] and the one-line refusal of data outside it."""

from __future__ import annotations

import numpy as np
import pytest

from messages.errors import DataError
from orchestrator.data_scale import check_unit_range, choose_scale, scale_data


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
