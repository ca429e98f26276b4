"""``orchestrator.fingerprints``: the SHA-256 run.json records of the data, labels and lengths (milliseconds)."""

from __future__ import annotations

import hashlib

import numpy as np

from actors.gmm import GMM
from actors.module import Observation
from actors.vae import VAE
from orchestrator.fingerprints import array_sha256, data_fingerprint, labels_sha256, lengths_fingerprint
from orchestrator.graph import build_graph


def test_array_sha256_covers_dtype_shape_and_bytes() -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    want = hashlib.sha256(b"<f8(2, 3)" + x.tobytes()).hexdigest()
    assert array_sha256(x) == want
    assert array_sha256(x.T.copy().T) == want  # Fortran order: the same C-ordered bytes
    assert array_sha256(x.reshape(3, 2)) != want
    assert array_sha256(x.astype(np.float32)) != want


def test_labels_hash_as_int64_whatever_their_dtype() -> None:
    assert labels_sha256(np.array([0, 1, 2], dtype=np.int32)) == labels_sha256(np.array([0, 1, 2]))
    assert labels_sha256(np.array([0, 1, 2])) != labels_sha256(np.array([0, 2, 1]))


def test_lengths_fingerprint() -> None:
    fp = lengths_fingerprint(np.array([3, 1, 5]))
    assert {k: fp[k] for k in ("n_sequences", "min", "max")} == {"n_sequences": 3, "min": 1, "max": 5}
    assert fp["sha256"] == hashlib.sha256(np.array([3, 1, 5], dtype=np.int64).tobytes()).hexdigest()


def test_data_fingerprint_names_each_observation() -> None:
    data = np.linspace(0, 1, 24).reshape(6, 4)
    obs, vae, gmm = Observation(data), VAE(2, epochs=1), GMM(2)
    vae.connect(obs)
    gmm.connect(vae)
    graph = build_graph(obs)
    fp = data_fingerprint(graph, np.array([0, 1, 0, 1, 0, 1]))
    name = graph.name(obs)
    assert fp[name] == {"shape": [6, 4], "sha256": array_sha256(data)}
    assert fp["labels_sha256"] == labels_sha256(np.array([0, 1, 0, 1, 0, 1]))
    assert set(fp) == {name, "labels_sha256"}
