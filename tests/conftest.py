"""Shared fixtures: the tutorial's data and one Ray session for the whole test run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_seq3000.npz"


def mnist_path() -> Path:
    """The tutorial's data; ``SERKET_RAY_MNIST_NPZ`` overrides the path."""
    return Path(os.environ.get("SERKET_RAY_MNIST_NPZ", DEFAULT_NPZ))


def digits_graph(n: int, epochs: int, batch_size: int, sweeps: int, latent_dim: int = 8) -> list:
    """The tutorial's graph (Observation -> VAE -> GMM -> MM) on the first ``n`` embedded digits."""
    from orchestrator.data import default_digits
    from orchestrator.recipe import TutorialRecipe

    images, labels = default_digits()
    return TutorialRecipe(latent_dim=latent_dim, epochs=epochs, batch_size=batch_size, sweeps=sweeps).build(
        images[:n], labels[:n]
    )


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """(images in [0, 1] (3000, 784), labels (3000,)) ordered 0,1,...,9,0,..."""
    path = mnist_path()
    if not path.exists():
        pytest.fail(f"the tutorial's data should be at {path} (set SERKET_RAY_MNIST_NPZ), got nothing there")
    with np.load(path) as d:
        return d["images"] / 255.0, d["labels"].astype(np.int64)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every integration test (ray.init takes seconds here)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> tuple[list[str], Path, dict[str, bytes]]:
    """An undisturbed short run on 400 digits: (its data arguments, its directory, its files)."""
    from cli_runs import SMALL_ARGS, small_data, snapshot

    from orchestrator.cli import main

    base = tmp_path_factory.mktemp("small_run")
    data_args = small_data(base)
    out = base / "run"
    assert main(["run", *data_args, *SMALL_ARGS, "--out", str(out), "--backend", "local", "--quiet"]) == 0
    return data_args, out, snapshot(out)
