"""What identifies a run's inputs and code in its ``run.json``: SHA-256 of the data, labels and lengths.

Resume refuses other data by these (:mod:`orchestrator.resume`); the report
recognises the data a run used by them (:mod:`orchestrator.report_inputs`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from orchestrator.graph import Graph


def array_sha256(data: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-ordered bytes (hex)."""
    arr = np.ascontiguousarray(data)
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def labels_sha256(labels: np.ndarray) -> str:
    """SHA-256 of labels (N,) as int64 bytes (hex)."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def lengths_fingerprint(lengths: np.ndarray) -> dict[str, Any]:
    """Number of sequences, shortest and longest, and the SHA-256 of the lengths (S,)."""
    arr = np.ascontiguousarray(lengths, dtype=np.int64)
    return {
        "n_sequences": int(arr.size),
        "min": int(arr.min()),
        "max": int(arr.max()),
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
    }


def data_fingerprint(graph: Graph, labels: np.ndarray | None) -> dict[str, Any]:
    """SHA-256 of every observation's array (and the labels), to refuse resuming on other data.

    An observation made of many sequences also records their number and the
    SHA-256 of its lengths (``lengths``); one sequence records nothing more.
    """
    out: dict[str, Any] = {}
    for obs in graph.observations:
        arr = np.ascontiguousarray(obs.data)
        out[graph.name(obs)] = {"shape": list(arr.shape), "sha256": array_sha256(arr)}
        lengths = getattr(obs, "lengths", None)
        if lengths is not None:
            out[graph.name(obs)]["lengths"] = lengths_fingerprint(lengths)
    if labels is not None:
        out["labels_sha256"] = labels_sha256(labels)
    return out


def code_version() -> str:
    """The installed package version."""
    try:
        from importlib.metadata import version

        return version("serket-ray")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"
