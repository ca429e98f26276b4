"""Helpers of the fault tests that drive a real ``serket-ray`` process: small data,
the command line, waiting on its output and comparing run directories."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: A short run on ``small_data``: the VAE update (~0.5-1 s) is most of each round.
SMALL_ARGS = ["--rounds", "3", "--latent-dim", "6", "--epochs", "300", "--batch-size", "400", "--sweeps", "10"]


def small_data(directory: Path, n: int = 400) -> list[str]:
    """The first ``n`` embedded digits as one .npz; the ``run`` arguments that read them."""
    from orchestrator.data import default_digits

    images, labels = default_digits()
    path = directory / "small.npz"
    if not path.exists():
        np.savez(path, x=images[:n], y=labels[:n])
    return ["--data", str(path), "--data-key", "x", "--labels", str(path), "--labels-key", "y"]


def command(*args: str) -> list[str]:
    """``serket-ray ARGS`` as this interpreter runs it."""
    return [sys.executable, "-m", "orchestrator.cli", *args]


def env(**extra: str) -> dict[str, str]:
    """The test's environment, plus ``extra``."""
    return {**os.environ, **extra}


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 240.0) -> list[str]:
    """Read ``proc``'s stdout until a line contains ``needle``; the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the process ended before printing {needle!r}; it printed {lines}")
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no line with {needle!r} within {timeout} s; got {lines}")


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a run but run.json (which holds timings)."""
    return {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.json"
    }


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
