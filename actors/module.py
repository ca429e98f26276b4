"""User-facing module objects: Serket-style ``connect()`` and ``update()``.

A module object is a *specification*: its configuration and its place in the
graph.  The numbers are computed by a plain worker object (``make_worker``) that
the orchestrator turns into a Ray actor late, with resources chosen then.
Modules never hold each other's actors; the orchestrator routes messages.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from messages import as_lengths
from messages.errors import DataError, GraphError

_CREATION = itertools.count()

#: A named edge into a module's update: (the module that sends, the name of its output).
Edge = tuple["Module", str]


class Module:
    """Base of every module.

    Parameters
    ----------
    name : str
        Short name used in the module's directory, ``module%03d_<name>``.
    mode : {"learn", "recog"}
        Serket's mode; output files carry it (``class_learn.txt``).
    """

    kind: ClassVar[str] = "module"
    learnable: ClassVar[bool] = True
    below_kinds: ClassVar[tuple[str, ...]] = ()
    #: Whether the worker has a ``progress()`` method to poll during an update.
    reports_progress: ClassVar[bool] = False

    def __init__(self, name: str, mode: str = "learn") -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise GraphError(f"module name should be an identifier like 'vae', got {name!r}")
        if mode not in ("learn", "recog"):
            raise GraphError(f"mode should be 'learn' or 'recog', got {mode!r}")
        self.name = name
        self.mode = mode
        self.below: list[Module] = []
        self.above: list[Module] = []
        self.created = next(_CREATION)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def connect(self, *modules: Module) -> None:
        """Connect ``modules`` below this one (Serket's ``b.connect(a)``: a is below b)."""
        for module in modules:
            if not isinstance(module, Module):
                raise GraphError(f"connect() takes modules, got {type(module).__name__}")
            if module.kind not in self.below_kinds:
                raise GraphError(
                    f"{type(self).__name__} can be connected to {self.below_kinds} below it, "
                    f"got {type(module).__name__}"
                )
            if self.below:
                raise GraphError(f"{self!r} is already connected to {self.below[0]!r}")
            if module.above:
                raise GraphError(f"{module!r} already has {module.above[0]!r} above it")
            self.below.append(module)
            module.above.append(self)

    def update(self) -> None:
        """Run one update of this module on Ray (Serket's loop calls this).

        The first call builds the graph this module belongs to and starts a
        local Ray (or joins ``RAY_ADDRESS``); outputs go to the current directory.
        In ``mode="recog"`` the first call classifies the observation with the
        model learned earlier in the current directory (no training) and writes
        ``*_recog.txt`` files; later calls do nothing more.
        """
        from orchestrator import serket  # the one upward import: Serket's API has a module update itself

        serket.update(self)

    # -- what the orchestrator needs to know -------------------------------
    def n_points(self) -> int:
        """Number of data points flowing through this module."""
        return self.below[0].n_points()

    def config_dict(self) -> dict[str, Any]:
        """JSON-ready configuration, recorded in ``run.json``."""
        return {}

    def worker_spec(
        self, name: str, above: str | None, below: str | None, seed: np.random.SeedSequence, num_threads: int | None
    ) -> tuple[type, tuple[Any, ...]]:
        """The plain (Ray-free) worker class computing this module's updates and its arguments."""
        raise NotImplementedError

    def make_worker(
        self,
        name: str,
        above: str | None,
        below: str | None,
        seed: np.random.SeedSequence,
        num_threads: int | None = None,
    ) -> Any:
        """Build the worker in this process (tests, benchmarks)."""
        cls, args = self.worker_spec(name, above, below, seed, num_threads)
        return cls(*args)

    def inputs(self) -> dict[str, Edge]:
        """The named edges into this module's update: keyword of ``update`` -> (source module, output name).

        ``{"prior_means": (gmm, "prior_means")}`` hands the GMM's latest
        ``prior_means`` output to ``update(prior_means=...)``.  An input whose source
        has not sent anything yet is left out (the keyword's default applies).
        """
        return {}

    def output_names(self) -> tuple[str, ...]:
        """The update's outputs, in the order ``update`` returns them; a learnable module's last is ``report``."""
        raise NotImplementedError

    def message_names(self) -> tuple[str, ...]:
        """The outputs that are messages to other modules (all but ``report``)."""
        return tuple(n for n in self.output_names() if n != "report")

    def export(self, directory: Path, outputs: dict[str, Any], labels: np.ndarray | None) -> dict[str, Any]:
        """Write Serket's text files for people; return scalars for ``run.json``."""
        return {}


class Observation(Module):
    """Observed data at the bottom of the graph (module 000).

    Parameters
    ----------
    data : array_like, shape (N, D), or list of arrays (T_s, D)
        One row per data point; images are flattened.  A list (or tuple) of
        numpy arrays of two or more dimensions is a list of sequences, stacked in
        order (their lengths become ``lengths``).
    lengths : array_like of int, shape (S,), optional
        The points form S consecutive sequences of these lengths (positive,
        summing to N; hmmlearn's convention).  None: one sequence.  No
        transition is learned or used across a boundary.
    name : str

    Attributes
    ----------
    data : numpy.ndarray, shape (N, D)
    lengths : numpy.ndarray, shape (S,), int64, or None (one sequence)
    """

    kind = "observation"
    learnable = False

    def __init__(self, data: Any, lengths: Any = None, name: str = "obs") -> None:
        super().__init__(name)
        if is_sequence_list(data):
            if lengths is not None:
                raise DataError(
                    "give the sequences as a list or as data with lengths, not both (got a list of arrays and lengths)"
                )
            data, lengths = stack_sequences(data, "data")
        self.data = as_data_matrix(data, "data")
        self.lengths = as_lengths(lengths, int(self.data.shape[0]), "lengths", DataError)

    def n_points(self) -> int:
        return int(self.data.shape[0])

    def output_names(self) -> tuple[str, ...]:
        return ("data",)


def is_sequence_list(value: Any) -> bool:
    """Whether ``value`` is a non-empty list or tuple of numpy arrays with two or more dimensions (sequences)."""
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, np.ndarray) and v.ndim >= 2 for v in value)
    )


def stack_sequences(sequences: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences (T_s, D) (or (T_s, H, W...) images) into one matrix and their lengths.

    Returns
    -------
    data : numpy.ndarray, shape (N, D), N = sum_s T_s
    lengths : numpy.ndarray, shape (S,), int64
    """
    mats = []
    for i, seq in enumerate(sequences):
        if seq.shape[0] == 0:
            raise DataError(f"{what} sequence {i} should hold at least one point, got shape {seq.shape}")
        mat = as_data_matrix(seq, f"{what} sequence {i}")
        if mats and mat.shape[1] != mats[0].shape[1]:
            raise DataError(
                f"{what} sequence {i} should have {mats[0].shape[1]} features like sequence 0, got {mat.shape[1]}"
            )
        mats.append(mat)
    dtype = np.result_type(*[m.dtype for m in mats])
    return np.concatenate(mats).astype(dtype, copy=False), np.array([m.shape[0] for m in mats], dtype=np.int64)


def as_data_matrix(value: Any, what: str) -> np.ndarray:
    """Validate observed data: a finite, non-empty, 2-D float array (images are flattened).

    Returns
    -------
    numpy.ndarray, shape (N, D), float64 or float32
    """
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise DataError(f"{what} should be a rectangular array, got ragged rows ({exc})") from None
    if arr.dtype == object:
        raise DataError(f"{what} should be a rectangular numeric array, got ragged or mixed rows")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} should be numeric, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise DataError(f"{what} should be 2-D (points x features), got shape {arr.shape}")
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{what} should hold at least one point and one feature, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise DataError(
            f"{what} should be finite, got {int((~finite).sum())} NaN or infinite values (first in row {row})"
        )
    return arr


def as_labels(value: Any, n_points: int, what: str = "labels") -> np.ndarray:
    """Validate labels: N integers (floats that are whole numbers are accepted).

    Returns
    -------
    numpy.ndarray, shape (N,), int64
    """
    arr = np.asarray(value)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{what} should be 1-D with one label per point, got shape {arr.shape}")
    if arr.shape[0] != n_points:
        raise DataError(f"{what} should have {n_points} entries (one per data point), got {arr.shape[0]}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise DataError(
                f"{what} should be integers, got non-integer values such as {arr[~np.isclose(arr, np.round(arr))][:1]}"
            )
    elif arr.dtype.kind not in "biu":
        raise DataError(f"{what} should be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)
