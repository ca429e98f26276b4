"""``orchestrator.run_json``: the per-round summary and the atomic run.json (no workers: milliseconds)."""

from __future__ import annotations

import json

from orchestrator.run_dir import UpdateRecord
from orchestrator.run_json import rounds_summary, write_run_json


def test_rounds_gather_each_modules_seconds_and_the_accuracy() -> None:
    records = [
        UpdateRecord("vae", 0, 1.23456, 1.0, {}),
        UpdateRecord("gmm", 0, 0.5, 0.25, {"accuracy": 0.75}),
        UpdateRecord("vae", 1, 2.0, 1.5, {}),
    ]
    assert rounds_summary(records) == [
        {
            "round": 0,
            "seconds": {"vae": 1.2346, "gmm": 0.5},
            "compute_seconds": {"vae": 1.0, "gmm": 0.25},
            "accuracy": 0.75,
        },
        {"round": 1, "seconds": {"vae": 2.0}, "compute_seconds": {"vae": 1.5}},
    ]


def test_run_json_is_written_whole_into_a_new_directory(tmp_path) -> None:
    out = tmp_path / "a" / "run"
    write_run_json(out, {"seed": 1, "rounds": []})
    assert json.loads((out / "run.json").read_text()) == {"seed": 1, "rounds": []}
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # no temporary file left
