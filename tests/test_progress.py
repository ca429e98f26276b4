"""What the CLI shows while it works: an epoch bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.progress import ProgressDisplay, bar_line

ROOT = Path(__file__).resolve().parents[1]


def _info(epoch: int, epochs: int = 200, rnd: int = 1, loss: float | None = 105.3125, seconds: float = 4.21) -> dict:
    return {"round": rnd, "epoch": epoch, "epochs": epochs, "loss": loss, "seconds": seconds}


def _bar(line: str) -> str:
    return re.search(r"\[([#.]+)\]", line).group(1)


def test_bar_line_fills_in_proportion_to_epochs_done() -> None:
    line = bar_line("vae", _info(100), rounds=5, columns=200)
    assert line == "vae      round 2/5 [####################....................] 100/200 epochs  loss 105.31     4.2 s"
    assert _bar(bar_line("vae", _info(0), 5, 200)) == "." * 40
    assert _bar(bar_line("vae", _info(200), 5, 200)) == "#" * 40
    assert "loss" not in bar_line("vae", _info(0, loss=None), 5, 200)


def test_bar_line_fits_a_narrow_terminal() -> None:
    line = bar_line("vae", _info(50), rounds=5, columns=70)
    assert len(line) <= 70
    bar = _bar(line)
    assert bar.count("#") == len(bar) // 4


def test_display_draws_in_place_and_clears_before_each_line() -> None:
    out = io.StringIO()
    shown = ProgressDisplay(5, stream=out, bar=True)
    shown.on_progress("vae", _info(10))
    shown.on_progress("vae", _info(20))
    shown.on_update(SimpleNamespace(round=1, module="vae", seconds=8.5, scalars={}))
    shown.on_update(SimpleNamespace(round=1, module="gmm", seconds=0.7, scalars={"accuracy": 0.98765}))
    text = out.getvalue()
    assert text.count("\r") == 3  # two redraws and one clear
    assert text.index("20/200 epochs") < text.index("\r\x1b[Kround 2/5  vae")
    assert text.split("\n")[-2].startswith("round 2/5  gmm") and text.endswith("accuracy 0.9877\n")


def test_no_bar_off_a_terminal_and_nothing_when_quiet() -> None:
    plain, quiet = io.StringIO(), io.StringIO()
    rec = SimpleNamespace(round=0, module="vae", seconds=1.0, scalars={})
    for stream, q in ((plain, False), (quiet, True)):
        shown = ProgressDisplay(2, quiet=q, stream=stream)  # StringIO is not a terminal
        shown.on_progress("vae", _info(5))
        shown.on_update(rec)
    assert "epochs" not in plain.getvalue() and "\r" not in plain.getvalue()
    assert plain.getvalue().startswith("round 1/2  vae")
    assert quiet.getvalue() == ""


def test_progress_is_asked_for_only_where_a_bar_is_drawn() -> None:
    """Off a terminal or quiet, the CLI asks no worker for progress (on Ray: no board actor started)."""
    assert ProgressDisplay(2, stream=io.StringIO()).progress_callback is None
    assert ProgressDisplay(2, quiet=True, stream=io.StringIO(), bar=True).progress_callback is None
    shown = ProgressDisplay(2, stream=io.StringIO(), bar=True)
    assert shown.progress_callback == shown.on_progress


def _cli(tmp_path: Path, tty: bool) -> str:
    """``serket-ray run`` on the embedded digits (in-process backend), stdout a terminal or a pipe."""
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        "--backend",
        "local",
        "--rounds",
        "1",
        "--epochs",
        "6",
        "--sweeps",
        "20",
        "--latent-dim",
        "8",
        "--out",
        str(tmp_path / ("tty" if tty else "pipe")),
    ]
    env = {**os.environ, "COLUMNS": "120"}
    if not tty:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300).stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode()


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_cli_shows_an_epoch_bar_only_on_a_terminal(tmp_path, tty) -> None:
    text = _cli(tmp_path, tty)
    bars = re.findall(r"\rmodule001_vae round 1/1 \[[#.]+\] (\d)/6 epochs", text)
    if tty:
        assert [int(b) for b in bars] == [1, 2, 3, 4, 5, 6]  # in-process: after every epoch
        assert "\r\x1b[Kround 1/1  module001_vae" in text
    else:
        assert bars == [] and "\r" not in text and "\x1b" not in text
    assert re.search(r"round 1/1  module002_gmm .* accuracy (0\.\d{4}|1\.0000)", text)
