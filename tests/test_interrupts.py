"""SIGINT / SIGTERM to a real ``serket-ray`` process: it stops within seconds in the middle of
an update, says in one line what was kept, exits 130 / 143 without a traceback, leaves no actor
behind, and the resumed run ends byte-identical to an undisturbed one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_runs import SMALL_ARGS, alive, command, env, snapshot, wait_for_line

from orchestrator.cli import main


def _start(out: Path, data_args: list[str], *extra: str, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        command("run", *data_args, *SMALL_ARGS, "--out", str(out), *extra),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def _no_leftovers(out: Path) -> None:
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def _resume_matches(out: Path, reference: dict[str, bytes]) -> None:
    assert main(["resume", str(out), "--backend", "local", "--quiet"]) == 0
    assert snapshot(out) == reference
    assert not (out / ".serket-ray.lock").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_update_stops_it_and_resume_is_byte_identical(small_run, tmp_path, sig) -> None:
    data_args, _, reference = small_run
    out = tmp_path / "run"
    proc = _start(out, data_args, "--backend", "local")
    wait_for_line(proc, "round 1/3  module003_mm")  # the VAE's second update starts now (about a second of work)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + sig, err
    name = signal.Signals(sig).name
    assert err.splitlines() == [
        f"serket-ray: stopped by {name} in round 2, module001_vae; 3 of 9 updates are kept; `serket-ray resume "
        f"{out}` continues"
    ], err
    print(f"{name}: exited {took:.2f} s after the signal")
    _no_leftovers(out)
    assert (out / ".serket-ray.lock").exists() is False  # released on the way out
    _resume_matches(out, reference)


def test_a_second_signal_while_stopping_ends_at_once_and_the_last_update_is_intact(small_run, tmp_path) -> None:
    data_args, _, reference = small_run
    out = tmp_path / "run"
    proc = _start(out, data_args, "--backend", "local")
    wait_for_line(proc, "round 2/3  module001_vae")
    # Both signals are delivered together: the first starts the stop, the second arrives while stopping.
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"serket-ray: stopped at once (SIGTERM); the last complete update is kept; `serket-ray resume {out}` continues"
    ), err
    _resume_matches(out, reference)


@pytest.mark.ray
def test_ctrl_c_on_ray_kills_the_actors_and_resume_is_byte_identical(small_run, tmp_path) -> None:
    """Ctrl-C in a terminal signals the whole process group: the driver and every process it started."""
    data_args, _, reference = small_run
    out = tmp_path / "run"
    proc = _start(out, data_args, new_session=True)
    try:
        wait_for_line(proc, "round 1/3  module003_mm")
        manifest = json.loads((out / "run.json").read_text())
        pids = [m["pid"] for m in manifest["modules"].values() if "pid" in m]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.splitlines() == [
        "serket-ray: stopped by SIGINT in round 2, module001_vae; 3 of 9 updates are kept; `serket-ray resume "
        f"{out}` continues"
    ], err  # one line: no traceback and no Ray warnings
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)], "actor processes are left"
    _resume_matches(out, reference)
