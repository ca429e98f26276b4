"""A worker's state: what ``get_state`` returns and ``set_state`` takes back.

The checkpoint writer stores it as ``state.arrow`` (the arrays, one row each, and
``meta`` in the schema metadata) plus one file per blob (the VAE's ``weights.pt``);
the run-directory reader builds the same record back from those files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from messages.errors import CheckpointError

#: Blob file names: plain names ending in ``.pt`` (the reader collects ``*.pt`` beside ``state.arrow``).
_BLOB_NAME = re.compile(r"[A-Za-z0-9_.-]+\.pt")


@dataclasses.dataclass(frozen=True)
class WorkerState:
    """Everything a worker needs to continue exactly where it stopped.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        Named arrays of any shape and dtype (labels (N,), transitions (K, K), RNG state words).
    meta : dict of str to JSON-ready values
        Small values (a numpy generator's state, the device, the input size).
    blobs : dict of str to bytes
        File name (``*.pt``) -> bytes, written beside ``state.arrow`` (the VAE's weights).

    Raises
    ------
    CheckpointError
        A field of the wrong type, an array that is not a numpy array, or a blob
        name that is not a plain ``*.pt`` file name.
    """

    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for field in ("arrays", "meta", "blobs"):
            value = getattr(self, field)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise CheckpointError(f"worker state {field} should be a dict with str keys, got {value!r:.80}")
            object.__setattr__(self, field, dict(value))  # the record's own dict: later changes to the caller's miss it
        for name, arr in self.arrays.items():
            if not isinstance(arr, np.ndarray):
                raise CheckpointError(f"worker state array {name!r} should be a numpy array, got {type(arr).__name__}")
        for name, blob in self.blobs.items():
            if not _BLOB_NAME.fullmatch(name):
                raise CheckpointError(f"worker state blob name should be a plain file name ending in .pt, got {name!r}")
            if not isinstance(blob, bytes):
                raise CheckpointError(f"worker state blob {name!r} should be bytes, got {type(blob).__name__}")

    def require(self, who: str, arrays: Iterable[str] = (), meta: Iterable[str] = ()) -> None:
        """Check that the state holds the ``arrays`` and ``meta`` entries ``who`` restores from.

        Raises
        ------
        CheckpointError
            One is missing (the message names ``who``, the entry and what the state holds).
        """
        for field, wanted in (("arrays", arrays), ("meta", meta)):
            have = getattr(self, field)
            missing = [k for k in wanted if k not in have]
            if missing:
                raise CheckpointError(
                    f"{who}'s saved state should hold {field} {missing}, got only {sorted(have)} (not its checkpoint?)"
                )
