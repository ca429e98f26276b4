"""One writer per run directory: a second live process is refused at once, a dead one's lock is
taken over with a warning, another host's lock needs --force-unlock."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from cli_runs import SMALL_ARGS, command, env, snapshot, wait_for_line

from messages.errors import LockError
from orchestrator.cli import main
from orchestrator.runlock import LOCK_NAME, RunLock, hold


def test_a_second_process_on_a_running_directory_is_refused_and_the_first_is_unharmed(small_run, tmp_path) -> None:
    data_args, _, reference = small_run
    out = tmp_path / "run"
    first = subprocess.Popen(
        command("run", *data_args, *SMALL_ARGS, "--out", str(out), "--backend", "local"),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(first, "round 1/3  module001_vae")
        first.send_signal(signal.SIGSTOP)  # alive and holding the directory while the second one tries
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        for cmd in (
            ["run", *data_args, *SMALL_ARGS, "--out", str(out), "--backend", "local", "--overwrite"],
            ["resume", str(out), "--backend", "local"],
        ):
            second = subprocess.run(command(*cmd), env=env(), capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            host = socket.gethostname()
            lines = second.stderr.splitlines()
            assert len(lines) == 1, second.stderr
            assert lines[0].startswith(
                f"serket-ray: error: {out} is in use by pid {first.pid} on host {host} (serket-ray run, started "
            )
            assert lines[0].endswith("wait for it to end or stop it first")
            assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert snapshot(out) == reference
    assert not (out / LOCK_NAME).exists()


def _dead_holder(out) -> int:
    """A real process that took the lock and died by SIGKILL (its lock file stays)."""
    code = (
        "import os; from orchestrator.runlock import RunLock; "
        f"RunLock({str(out)!r}, 'serket-ray run'); os.kill(os.getpid(), 9)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env())
    assert proc.wait(timeout=120) == -signal.SIGKILL
    return proc.pid


def test_a_dead_process_lock_is_taken_over_with_a_warning(small_run, tmp_path, caplog) -> None:
    _, done, reference = small_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    pid = _dead_holder(out)
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == pid
    with caplog.at_level("WARNING"):
        assert main(["resume", str(out), "--backend", "local", "--quiet"]) == 0  # complete already: changes nothing
    assert (
        f"taking over the lock of pid {pid} on host {socket.gethostname()}" in caplog.text
        and "that process is gone" in caplog.text
    )
    assert not (out / LOCK_NAME).exists()
    assert snapshot(out) == reference


def test_another_hosts_lock_is_refused_unless_forced(small_run, tmp_path, capsys) -> None:
    _, done, reference = small_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    lock = {"pid": 4242, "host": "elsewhere.example", "started": time.time(), "command": "serket-ray run"}
    (out / LOCK_NAME).write_text(json.dumps(lock))
    assert main(["resume", str(out), "--backend", "local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "locked by pid 4242 on host elsewhere.example" in err and "--force-unlock" in err
    assert json.loads((out / LOCK_NAME).read_text()) == lock  # left as it was
    assert main(["resume", str(out), "--backend", "local", "--force-unlock", "--quiet"]) == 0
    assert not (out / LOCK_NAME).exists()
    assert snapshot(out) == reference


def test_the_lock_is_exclusive_within_a_process_too_and_reentrant_through_hold(tmp_path) -> None:
    out = tmp_path / "run"
    first = RunLock(out, "test")
    try:
        with pytest.raises(LockError, match=rf"in use by pid \d+ on host {socket.gethostname()} \(test"):
            RunLock(out, "another")
    finally:
        first.release()
    with hold(out, "outer"), hold(out, "inner"):  # the CLI holds it, then the orchestrator it calls
        assert json.loads((out / LOCK_NAME).read_text())["command"] == "outer"
    assert not out.exists()  # created for the lock, left empty: removed again


def test_a_refused_run_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "cluttered"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["run", "--out", str(out), "--backend", "local", "--epochs", "1", "--rounds", "1"]) == 2
    assert "not a serket-ray run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
