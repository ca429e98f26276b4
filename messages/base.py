"""Base class of every message, with validation helpers and Arrow conversion.

A message is a frozen dataclass holding one or more numpy arrays plus routing
metadata (sender, receiver, round) and the sequence lengths of its points.  It
is validated when built, so a message that exists is a message that is well
formed.  ``to_table`` / ``from_table`` convert it to a :class:`pyarrow.Table`
and back without loss: arrays are stored as fixed-size-list columns (one row per
data point) and their dtype and shape, and the lengths, travel in the schema
metadata.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from messages.errors import MessageError

SCHEMA_VERSION = 1

_REGISTRY: dict[str, type[Message]] = {}


def check_array(
    name: str,
    value: Any,
    *,
    ndim: int,
    dtype_kind: str = "f",
    rows: int | None = None,
    cols: int | None = None,
) -> np.ndarray:
    """Check one array field and return it as a read-only numpy array.

    Parameters
    ----------
    name : str
        Field name used in error messages.
    value : array_like
        The candidate array.
    ndim : int
        Required number of dimensions.
    dtype_kind : str
        Allowed numpy dtype kinds, e.g. ``"f"`` for floats, ``"iu"`` for integers.
    rows, cols : int, optional
        Required sizes of the first and second dimension.

    Returns
    -------
    numpy.ndarray
        The validated array (not copied when already an ndarray).
    """
    if not isinstance(value, np.ndarray):
        raise MessageError(f"{name} should be a numpy array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise MessageError(f"{name} should have {ndim} dimensions, got shape {value.shape}")
    if value.dtype.kind not in dtype_kind:
        raise MessageError(f"{name} should have a dtype of kind {dtype_kind!r}, got {value.dtype}")
    if rows is not None and value.shape[0] != rows:
        expected = (rows,) + value.shape[1:]
        raise MessageError(f"{name} should have shape {expected}, got {value.shape}")
    if cols is not None and value.shape[1] != cols:
        expected = value.shape[:1] + (cols,)
        raise MessageError(f"{name} should have shape {expected}, got {value.shape}")
    if value.shape[0] == 0:
        raise MessageError(f"{name} should have at least one row, got shape {value.shape}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = int(np.size(value) - np.isfinite(value).sum())
        raise MessageError(f"{name} should be finite, got {bad} NaN or infinite values")
    return value


def as_lengths(
    value: Any, n_points: int, what: str = "lengths", error: type[Exception] = MessageError
) -> np.ndarray | None:
    """Validate sequence lengths (hmmlearn's convention) and return them in canonical form.

    Parameters
    ----------
    value : array_like of int, shape (S,), or None
        One positive integer per sequence, in order, summing to ``n_points``;
        None means the points form one sequence.
    n_points : int
        N, the number of points the sequences cut.
    what : str
        Names the lengths in error messages.
    error : type
        Exception raised (a :class:`~messages.errors.SerketRayError` subclass).

    Returns
    -------
    numpy.ndarray, shape (S,), int64, read-only, or None
        None when there is one sequence (``[N]`` and None mean the same).
    """
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise error(f"{what} should be 1-D with one integer per sequence, got shape {arr.shape}")
    if arr.size == 0:
        raise error(f"{what} should hold at least one sequence length, got none")
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(np.where(np.isfinite(arr), arr, 0))))
        if bad.size:
            raise error(f"{what} should be integers, got {arr[bad[0]].item()!r} at entry {int(bad[0])}")
    elif arr.dtype.kind not in "iu":
        raise error(f"{what} should be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero(arr < 1)
    if bad.size:
        raise error(
            f"{what} should be positive integers (one per sequence), got {int(arr[bad[0]])} at entry {int(bad[0])}"
        )
    total = int(arr.sum())
    if total != n_points:
        raise error(f"{what} should sum to the number of points {n_points}, got {total} over {arr.size} sequences")
    if arr.size == 1:
        return None
    arr.flags.writeable = False
    return arr


def check_probabilities(name: str, value: np.ndarray, atol: float = 1e-6) -> None:
    """Check that ``value`` (N, K) holds probabilities with rows summing to one."""
    lo, hi = float(value.min()), float(value.max())
    if lo < 0.0 or hi > 1.0 + atol:
        raise MessageError(f"{name} should lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    sums = value.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > atol * value.shape[1] + 1e-9:
        raise MessageError(f"{name} rows should sum to 1, got row {worst} summing to {sums[worst]:.6g}")


@dataclasses.dataclass(frozen=True)
class Message:
    """Common routing fields; subclasses add array fields and ``_validate``.

    Attributes
    ----------
    sender, receiver : str
        Directory-style module names, e.g. ``"module001_vae"``.
    round : int
        The round (0-based update count of the sender) that produced it.
    lengths : numpy.ndarray, shape (S,), int64, optional
        The points form S consecutive sequences of these lengths (summing to N);
        None: one sequence.  Every message of a run carries the observation's.
    """

    sender: str
    receiver: str
    round: int
    lengths: np.ndarray | None = None
    kind: ClassVar[str] = "message"
    array_fields: ClassVar[tuple[str, ...]] = ()
    optional_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.kind] = cls

    def __post_init__(self) -> None:
        for field in ("sender", "receiver"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise MessageError(f"{field} should be a non-empty string, got {value!r}")
        if not isinstance(self.round, (int, np.integer)) or isinstance(self.round, bool):
            raise MessageError(f"round should be an int, got {type(self.round).__name__}")
        if self.round < 0:
            raise MessageError(f"round should be >= 0, got {self.round}")
        object.__setattr__(self, "round", int(self.round))
        self._validate()
        object.__setattr__(self, "lengths", as_lengths(self.lengths, self.n_points))
        for field in self.array_fields:
            arr = getattr(self, field)
            if isinstance(arr, np.ndarray) and arr.flags.writeable:
                arr = arr.view()
                arr.flags.writeable = False
                object.__setattr__(self, field, arr)

    def _validate(self) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def n_points(self) -> int:
        """Number of data points (rows) the message describes."""
        return int(getattr(self, self.array_fields[0]).shape[0])

    def to_table(self) -> pa.Table:
        """Convert to an Arrow table: one fixed-size-list column per array field."""
        columns: dict[str, pa.Array] = {}
        shapes: dict[str, Any] = {}
        for field in self.array_fields:
            arr = getattr(self, field)
            if arr is None:
                continue
            flat = np.ascontiguousarray(arr).reshape(arr.shape[0], -1)
            values = pa.array(flat.reshape(-1))
            columns[field] = pa.FixedSizeListArray.from_arrays(values, flat.shape[1])
            shapes[field] = {"shape": list(arr.shape), "dtype": arr.dtype.str}
        meta = {
            "kind": self.kind,
            "sender": self.sender,
            "receiver": self.receiver,
            "round": self.round,
            "schema_version": SCHEMA_VERSION,
            "arrays": shapes,
        }
        if self.lengths is not None:
            meta["lengths"] = self.lengths.tolist()
        table = pa.table(columns)
        return table.replace_schema_metadata({"serket_ray.message": json.dumps(meta)})

    @staticmethod
    def from_table(table: pa.Table) -> Message:
        """Rebuild the message stored by :meth:`to_table` (any registered kind)."""
        raw = (table.schema.metadata or {}).get(b"serket_ray.message")
        if raw is None:
            raise MessageError("table has no 'serket_ray.message' metadata: not a message table")
        meta = json.loads(raw)
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise MessageError(f"message schema_version should be {SCHEMA_VERSION}, got {meta.get('schema_version')}")
        cls = _REGISTRY.get(meta["kind"])
        if cls is None:
            raise MessageError(f"unknown message kind {meta['kind']!r}; known: {sorted(_REGISTRY)}")
        arrays: dict[str, np.ndarray | None] = {f: None for f in cls.optional_fields}
        for field, info in meta["arrays"].items():
            col = table.column(field).combine_chunks()
            flat = col.values.to_numpy(zero_copy_only=False)
            arrays[field] = flat.astype(np.dtype(info["dtype"]), copy=False).reshape(info["shape"])
        lengths = None if meta.get("lengths") is None else np.asarray(meta["lengths"], dtype=np.int64)
        return cls(sender=meta["sender"], receiver=meta["receiver"], round=meta["round"], lengths=lengths, **arrays)

    def same_as(self, other: Message) -> bool:
        """Exact equality of routing fields and array contents."""
        if type(self) is not type(other):
            return False
        if (self.sender, self.receiver, self.round) != (other.sender, other.receiver, other.round):
            return False
        if (self.lengths is None) != (other.lengths is None) or (
            self.lengths is not None and not np.array_equal(self.lengths, other.lengths)
        ):
            return False
        for field in self.array_fields:
            a, b = getattr(self, field), getattr(other, field)
            if (a is None) != (b is None):
                return False
            if a is not None and (a.dtype != b.dtype or not np.array_equal(a, b)):
                return False
        return True
