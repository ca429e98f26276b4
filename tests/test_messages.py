"""Message validation (both ways) and lossless Arrow round trips; no Ray."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from messages import (
    ClassPosteriors,
    ClassPrior,
    Latents,
    Message,
    MessageError,
    ObservationData,
    PriorMeans,
    Reconstruction,
)

RNG = np.random.default_rng(0)
PROBS = RNG.dirichlet(np.ones(4), size=6)


def _all_messages() -> list[Message]:
    route = {"sender": "module001_a", "receiver": "module002_b", "round": 3}
    return [
        ObservationData(**route, data=RNG.random((6, 5))),
        Latents(**route, z=RNG.normal(size=(6, 2))),
        ClassPosteriors(**route, probs=PROBS, log_likelihood=RNG.normal(size=(6, 4))),
        ClassPosteriors(**route, probs=PROBS),
        ClassPrior(**route, probs=PROBS),
        PriorMeans(**route, means=RNG.normal(size=(6, 2))),
        Reconstruction(**route, x_hat=RNG.random((6, 5)).astype(np.float32)),
    ]


@pytest.mark.parametrize("msg", _all_messages(), ids=lambda m: type(m).__name__)
def test_arrow_round_trip_is_lossless(msg: Message) -> None:
    back = Message.from_table(msg.to_table())
    assert type(back) is type(msg)
    assert back.same_as(msg)
    for field in msg.array_fields:
        a, b = getattr(msg, field), getattr(back, field)
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape


def test_messages_are_frozen_and_read_only() -> None:
    msg = Latents(sender="a", receiver="b", round=0, z=np.zeros((2, 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.round = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        msg.z[0, 0] = 1.0


def _route() -> dict:
    return {"sender": "a", "receiver": "b", "round": 0}


BAD = [
    ("probs should have 2 dimensions, got shape (4,)", lambda: ClassPrior(**_route(), probs=np.full(4, 0.25))),
    (
        "probs rows should sum to 1, got row 0 summing to 0.8",
        lambda: ClassPrior(**_route(), probs=np.full((3, 2), 0.4)),
    ),
    ("probs should lie in [0, 1]", lambda: ClassPrior(**_route(), probs=np.array([[1.5, -0.5]]))),
    ("z should be finite, got 1 NaN or infinite values", lambda: Latents(**_route(), z=np.array([[0.0, np.nan]]))),
    ("z should have a dtype of kind 'f', got int64", lambda: Latents(**_route(), z=np.zeros((2, 2), dtype=np.int64))),
    ("z should be a numpy array, got list", lambda: Latents(**_route(), z=[[0.0]])),
    ("data should have at least one row, got shape (0, 3)", lambda: ObservationData(**_route(), data=np.zeros((0, 3)))),
    (
        "log_likelihood should have shape (6, 4) like probs, got (6, 3)",
        lambda: ClassPosteriors(**_route(), probs=PROBS, log_likelihood=np.zeros((6, 3))),
    ),
    ("round should be >= 0, got -1", lambda: PriorMeans(sender="a", receiver="b", round=-1, means=np.zeros((1, 1)))),
    (
        "sender should be a non-empty string, got ''",
        lambda: PriorMeans(sender="", receiver="b", round=0, means=np.zeros((1, 1))),
    ),
]


@pytest.mark.parametrize("expected,build", BAD, ids=[b[0][:30] for b in BAD])
def test_bad_messages_name_field_expected_and_got(expected: str, build) -> None:
    with pytest.raises(MessageError) as info:
        build()
    assert expected in str(info.value)


def test_valid_probabilities_pass_and_rows_sum_to_one() -> None:
    msg = ClassPosteriors(**_route(), probs=PROBS)
    np.testing.assert_allclose(msg.probs.sum(axis=1), 1.0)
    assert msg.n_classes == 4 and msg.n_points == 6


def test_from_table_rejects_foreign_tables() -> None:
    import pyarrow as pa

    with pytest.raises(MessageError, match="not a message table"):
        Message.from_table(pa.table({"x": [1, 2]}))
