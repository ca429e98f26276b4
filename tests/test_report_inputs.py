"""``orchestrator.report_inputs``: finding a run's modules and recovering the data it used (no run, milliseconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from messages.errors import CheckpointError
from orchestrator.data import default_digits
from orchestrator.fingerprints import labels_sha256
from orchestrator.report_inputs import ReportRun, data_sha256, open_run, recover_inputs


def _manifest(**data) -> dict:
    return {"seed": 0, "modules": {"module001_vae": {"kind": "vae"}}, "updates": [], "data": data, "n_points": 0}


def test_a_run_without_a_completed_update_is_refused(tmp_path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(_manifest()))
    with pytest.raises(CheckpointError, match="no completed update"):
        open_run(tmp_path)
    with pytest.raises(CheckpointError, match="got nothing there"):
        open_run(tmp_path / "missing")


def test_the_embedded_digits_are_recognised_by_their_sha256(tmp_path) -> None:
    digits, digit_labels = default_digits()
    run = ReportRun(tmp_path, _manifest(obs={"sha256": data_sha256(digits)}), {}, {})
    data, labels, source, notes = recover_inputs(run, None, None, None)
    assert source == "scikit-learn digits (embedded default)" and notes == []
    np.testing.assert_array_equal(data, digits)
    np.testing.assert_array_equal(labels, digit_labels)


def test_data_of_another_sha256_are_not_shown(tmp_path) -> None:
    digits, _ = default_digits()
    fingerprint = {"obs": {"sha256": data_sha256(digits)}, "labels_sha256": labels_sha256(np.zeros(3, dtype=int))}
    run = ReportRun(tmp_path, _manifest(**fingerprint), {}, {})
    data, labels, source, notes = recover_inputs(run, digits[:10], None, None)
    assert data is None and labels is None and source == "not available"
    assert len(notes) == 1 and "SHA-256 mismatch" in notes[0]
    # labels given by the caller are kept, checked against the run's number of points
    data, labels, _, _ = recover_inputs(run, digits, np.arange(len(digits)) % 10, None)
    assert data is digits and labels.dtype == np.int64 and labels[:3].tolist() == [0, 1, 2]
