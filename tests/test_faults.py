"""Fault injection: SIGKILL the driver at many points and resume; damage checkpoint files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors import GMM, VAE, MarkovModel, Observation
from messages.errors import CheckpointError
from orchestrator import Orchestrator
from orchestrator.cli import main
from orchestrator.data import default_digits

RUN_ARGS = ["--epochs", "3", "--rounds", "3", "--latent-dim", "8", "--sweeps", "20", "--backend", "local", "--quiet"]


def _cli(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "--out", str(out), *RUN_ARGS, *extra]
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a run but run.json (which holds timings)."""
    return {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.json"
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _cli(out)
    assert done.returncode == 0, done.stderr
    return out, snapshot(out)


# Every write phase once, and the first and last of the 9 updates (a round's first, middle and last module).
KILL_POINTS = [
    ("before-rename", 1),
    ("before-rename", 9),
    ("after-rename", 6),
    ("after-copy", 3),
    ("after-copy", 8),
]


@pytest.mark.parametrize("phase,n", KILL_POINTS, ids=[f"{p}-{n}" for p, n in KILL_POINTS])
def test_sigkill_at_a_write_phase_then_resume_is_byte_identical(reference, tmp_path, phase: str, n: int) -> None:
    out = tmp_path / "run"
    killed = _cli(out, env={"SERKET_RAY_FAULT": f"{phase}:{n}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert main(["resume", str(out), "--backend", "local", "--quiet"]) == 0
    assert snapshot(out) == reference[1]


@pytest.mark.parametrize("delay", [0.2, 1.5])
def test_sigkill_at_a_random_moment_then_resume_is_byte_identical(reference, tmp_path, delay: float) -> None:
    """SIGKILL ``delay`` seconds after the run wrote its first run.json (before that there is nothing to resume),
    wherever the run then is; the resumed run equals the undisturbed one byte for byte."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "--out", str(out), *RUN_ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120.0
    while not (out / "run.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (out / "run.json").exists(), f"the run wrote no run.json (exit status {proc.poll()})"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert main(["resume", str(out), "--backend", "local", "--quiet"]) == 0
    assert snapshot(out) == reference[1]


def test_resuming_a_finished_run_changes_nothing(reference, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(["resume", str(out), "--backend", "local"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def _interrupted(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    killed = _cli(out, env={"SERKET_RAY_FAULT": "after-copy:7"})
    assert killed.returncode == -signal.SIGKILL
    return out


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_named_and_never_loaded(reference, tmp_path, capsys, damage: str) -> None:
    out = _interrupted(tmp_path)
    victim = out / "module002_gmm" / "000" / "posteriors.arrow"
    blob = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(blob[: len(blob) // 2])
    else:
        blob[len(blob) // 2] ^= 0xFF
        victim.write_bytes(bytes(blob))
    manifest_before = (out / "run.json").read_bytes()
    assert main(["resume", str(out), "--backend", "local", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and "checksum mismatch" in err and "--from-last-intact" in err
    assert (out / "run.json").read_bytes() == manifest_before  # nothing changed
    # the user chooses to go back to the last intact update: results are still exact
    assert main(["resume", str(out), "--backend", "local", "--quiet", "--from-last-intact"]) == 0
    assert snapshot(out) == reference[1]


def test_resume_refuses_a_different_config_or_data(tmp_path) -> None:
    out = _interrupted(tmp_path)
    recorded = json.loads((out / "run.json").read_text())["cli"]
    data, labels = default_digits()

    def graph(epochs: int, images):
        obs, vae, gmm, mm = (
            Observation(images),
            VAE(8, itr=epochs, batch_size=500),
            GMM(10, itr=20, category=labels),
            MarkovModel(),
        )
        vae.connect(obs)
        gmm.connect(vae)
        mm.connect(gmm)
        return [vae]

    assert recorded["epochs"] == 3
    with pytest.raises(CheckpointError, match=r"module001_vae\.epochs: recorded 3, given 4"):
        Orchestrator.resume(out, graph(4, data), backend="local")
    other = data.copy()
    other[0, 0] = 1.0 - other[0, 0]
    with pytest.raises(CheckpointError, match=r"data: recorded"):
        Orchestrator.resume(out, graph(3, other), backend="local")
