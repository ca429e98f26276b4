"""``orchestrator.cli_commands``: the checks a sub-command makes before anything starts (milliseconds)."""

from __future__ import annotations

import pytest

from messages.errors import SerketRayError
from orchestrator.cli_commands import check_out_dir
from orchestrator.runlock import LOCK_NAME


def test_an_output_directory_holding_files_is_refused_unless_overwrite(tmp_path) -> None:
    check_out_dir(tmp_path / "new", overwrite=False)  # not there yet: fine
    (tmp_path / LOCK_NAME).write_text("")
    check_out_dir(tmp_path, overwrite=False)  # only a lock: fine
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(SerketRayError, match="already holds an earlier run; choose another directory or pass"):
        check_out_dir(tmp_path, overwrite=False)
    check_out_dir(tmp_path, overwrite=True)
    (tmp_path / "run.json").unlink()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SerketRayError, match="already holds files that are not a serket-ray run"):
        check_out_dir(tmp_path, overwrite=False)


def test_an_output_path_that_is_a_file_is_refused(tmp_path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(SerketRayError, match="--out should be a directory, got an existing file"):
        check_out_dir(tmp_path / "f", overwrite=True)
