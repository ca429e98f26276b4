"""The tutorial recipe: run.json's "cli" entry round-trips, and the graph it builds is the tutorial's."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from messages.errors import SerketRayError
from orchestrator.cli import build_parser
from orchestrator.inputs import DataSource
from orchestrator.recipe import RECORDED_KEYS, TutorialRecipe


def test_recorded_round_trips(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--data",
            "x.npy",
            "--labels",
            "y.npy",
            "--epochs",
            "7",
            "--clusters",
            "4",
            "--no-mm",
            "--mm-message",
            "serket",
            "--precision",
            "fp32",
            "--scale",
            "255",
        ]
    )
    recipe = TutorialRecipe.from_options(args)
    recorded = recipe.recorded()
    assert list(recorded) == list(RECORDED_KEYS)
    assert recorded["data"] == str(Path("x.npy").resolve()) and recorded["lengths"] is None
    assert (recorded["epochs"], recorded["clusters"], recorded["no_mm"], recorded["mm_message"]) == (
        7,
        4,
        True,
        "serket",
    )
    again = TutorialRecipe.from_recorded(recorded)
    assert again.recorded() == recorded
    assert again.source.scale == "255" and again.precision == "fp32"


def test_older_run_without_new_keys_takes_defaults() -> None:
    recorded = {
        k: v for k, v in TutorialRecipe().recorded().items() if k not in ("lengths", "sequence_key", "precision")
    }
    recipe = TutorialRecipe.from_recorded(recorded)
    assert recipe == TutorialRecipe()


def test_builds_the_tutorial_graph() -> None:
    data, labels = np.full((30, 4), 0.5), np.arange(30) % 3
    obs, vae, gmm, mm = TutorialRecipe(
        source=DataSource(), latent_dim=3, epochs=2, batch_size=10, clusters=3, sweeps=5
    ).build(data, labels)
    assert (vae.config.latent_dim, vae.config.epochs, vae.config.batch_size) == (3, 2, 10)
    assert (gmm.config.n_components, gmm.config.n_sweeps, mm.config.message) == (3, 5, "forward-backward")
    assert np.array_equal(gmm.category, labels)
    assert len(TutorialRecipe(no_mm=True, clusters=3).build(data, labels)) == 3
    with pytest.raises(SerketRayError, match="--clusters should be at most the number of points 30, got 31"):
        TutorialRecipe(clusters=31).build(data, labels)


def test_options_namespace_without_some_keys() -> None:
    recipe = TutorialRecipe.from_options(argparse.Namespace(data=None, epochs=3))
    assert recipe.epochs == 3 and recipe.source == DataSource()
