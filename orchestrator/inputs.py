"""Loading a run's inputs: data, labels and sequence lengths, all checked before any actor starts.

The library's loader of a :class:`DataSource`, used by the command line, the
tutorial recipe (:mod:`orchestrator.recipe`) and the report.  Error messages
name the command-line options, which is where the sources usually come from.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from messages.errors import SerketRayError


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a run's data, labels and sequence lengths come from.

    Parameters
    ----------
    data, labels : str, optional
        Files (any format :func:`orchestrator.data.load_data` reads); without
        ``data``, the built-in ``dataset``.
    data_key, labels_key : str, optional
        Array (.npz) or column (Parquet/Feather) holding them.
    scale : str
        How the data are rescaled into [0, 1] (:data:`orchestrator.data.SCALE_MODES`).
    dataset : {"digits", "mnist"}, optional
        Built-in data when ``data`` is absent (default: the embedded digits).
    cache_dir : str, optional
        Download cache of the built-in MNIST.
    lengths : str, optional
        File with one positive length per sequence, in order, summing to N.
    sequence_key : str, optional
        Column of ``data`` holding each row's sequence id.
    """

    data: str | None = None
    labels: str | None = None
    data_key: str | None = None
    labels_key: str | None = None
    scale: str = "none"
    dataset: str | None = None
    cache_dir: str | None = None
    lengths: str | None = None
    sequence_key: str | None = None


class RunInputs(NamedTuple):
    """What :func:`load_run_inputs` read: data (N, D), labels (N,) or None, lengths (S,) or None, a description."""

    data: np.ndarray
    labels: np.ndarray | None
    lengths: np.ndarray | None
    source: str


def load_run_inputs(src: DataSource) -> RunInputs:
    """Data, labels, sequence lengths and a description of the source, all checked before any actor starts.

    Raises
    ------
    SerketRayError
        Conflicting or incomplete options, or unreadable or out-of-range data (one line saying which).
    """
    from orchestrator.data import check_unit_range, default_digits, load_data, load_labels, scale_data
    from orchestrator.lengths import load_lengths, load_sequence_table

    lengths_file, sequence_key = src.lengths, src.sequence_key
    if lengths_file and sequence_key:
        raise SerketRayError(f"give --lengths or --sequence-key, not both (got --sequence-key {sequence_key})")
    lengths = None
    if src.data:
        if src.dataset:
            raise SerketRayError(f"give --data or --dataset, not both (got --dataset {src.dataset})")
        if sequence_key:
            data, lengths = load_sequence_table(src.data, sequence_key, src.data_key)
        else:
            data = load_data(src.data, src.data_key)
        labels = load_labels(src.labels, data.shape[0], src.labels_key) if src.labels else None
        source = str(src.data)
    else:
        if src.labels or src.data_key or src.labels_key or sequence_key:
            raise SerketRayError(
                "--labels, --data-key, --labels-key and --sequence-key should come with --data, got them without --data"
            )
        if src.dataset == "mnist":
            from orchestrator.mnist import mnist_dir, tutorial_mnist

            data, labels = tutorial_mnist(src.cache_dir)
            source = f"MNIST, the tutorial's 3000 images ({mnist_dir(src.cache_dir)})"
        else:
            data, labels = default_digits()
            source = "scikit-learn digits (embedded default)"
    if lengths_file:
        lengths = load_lengths(lengths_file, data.shape[0])
    data = scale_data(data, src.scale)
    check_unit_range(data, f"data ({source})")
    if lengths is not None:
        source += f", {lengths.size} sequences of {int(lengths.min())} to {int(lengths.max())} points"
    return RunInputs(data, labels, lengths, source)
