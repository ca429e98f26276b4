"""Failing storage: a write that fails (no space left, read-only, over quota) stops the run with one
line naming the file and the cause, leaves nothing half written where resume reads, and the resumed
run ends byte-identical to an undisturbed one.  Injected failures at each write site, and a real
full tmpfs."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cli_runs import command, env, small_data, snapshot

from actors import serket_text
from orchestrator import checkpoint
from orchestrator.cli import main

TINY_ARGS = [
    "--rounds",
    "3",
    "--latent-dim",
    "6",
    "--epochs",
    "20",
    "--batch-size",
    "400",
    "--sweeps",
    "10",
    "--backend",
    "local",
]
CAUSES = {
    errno.ENOSPC: "No space left on device (ENOSPC)",
    errno.EROFS: "Read-only file system (EROFS)",
    errno.EDQUOT: "Disk quota exceeded (EDQUOT)",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[list[str], dict[str, bytes]]:
    base = tmp_path_factory.mktemp("tiny")
    data_args = small_data(base)
    out = base / "run"
    assert main(["run", *data_args, *TINY_ARGS, "--out", str(out), "--quiet"]) == 0
    return data_args, snapshot(out)


class Fail:
    """Call ``real`` until its ``n``-th call, which fails with ``OSError(code)`` -- after ``partial``
    wrote what a full disk would have let through."""

    def __init__(self, real, n: int, code: int, partial=None, only=None) -> None:
        self.real, self.n, self.code, self.partial, self.only, self.calls = real, n, code, partial, only, 0
        self.failed_on: str | None = None

    def __call__(self, *args, **kwargs):
        if self.only is None or self.only(*args):
            self.calls += 1
            if self.calls == self.n:
                self.failed_on = str(args[0]) if args else "?"
                if self.partial is not None:
                    self.partial(*args, **kwargs)
                raise OSError(self.code, os.strerror(self.code))
        return self.real(*args, **kwargs)


def _half_text(fname, x, *a, **k) -> None:
    serket_text.write_text(fname, x, *a, **k)
    data = Path(fname).read_bytes()
    Path(fname).write_bytes(data[: len(data) // 2])


def _sites():
    write_text = serket_text.write_text
    return {
        # Arrow files: the n-th table (4 per VAE update, 4 per GMM, 3 per MM), an empty file left by the failure
        "arrow-1": lambda c: ("new_file", checkpoint.ipc, Fail(checkpoint.ipc.new_file, 1, c)),
        "arrow-17": lambda c: ("new_file", checkpoint.ipc, Fail(checkpoint.ipc.new_file, 17, c)),
        # text exports (serket_text.write_text in VAE/GMM/MM.export), half written: z_learn.txt of round 1 is the 2nd
        "text-2": lambda c: ("write_text", serket_text, Fail(write_text, 2, c, partial=_half_text)),
        "text-13": lambda c: ("write_text", serket_text, Fail(write_text, 13, c, partial=_half_text)),
        # fsync (a full disk often shows only here): Arrow files, weights.pt, text files, the directory
        "fsync-6": lambda c: ("fsync", os, Fail(os.fsync, 6, c)),
        "fsync-40": lambda c: ("fsync", os, Fail(os.fsync, 40, c)),
        # the rename that puts weights.pt, a text copy or run.json in place
        "replace-3": lambda c: ("replace", os, Fail(os.replace, 3, c)),
        # run.json itself: before the first update and after the fourth
        "run.json-1": lambda c: (
            "replace",
            os,
            Fail(os.replace, 1, c, only=lambda src, *a: ".run.json.tmp-" in str(src)),
        ),
        "run.json-5": lambda c: (
            "replace",
            os,
            Fail(os.replace, 5, c, only=lambda src, *a: ".run.json.tmp-" in str(src)),
        ),
    }


CASES = [(site, errno.ENOSPC) for site in _sites()] + [("text-2", errno.EROFS), ("arrow-17", errno.EDQUOT)]


@pytest.mark.parametrize("site,code", CASES, ids=[f"{s}-{errno.errorcode[c]}" for s, c in CASES])
def test_a_failed_write_stops_with_one_line_and_resume_is_byte_identical(
    tiny, tmp_path, monkeypatch, capsys, site: str, code: int
) -> None:
    data_args, reference = tiny
    out = tmp_path / "run"
    name, owner, fail = _sites()[site](code)
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, fail)
        status = main(["run", *data_args, *TINY_ARGS, "--out", str(out)])
    assert fail.failed_on is not None, f"{site} was reached only {fail.calls} times"
    err = capsys.readouterr().err
    assert status == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"serket-ray: error: cannot write {out}"), err
    assert CAUSES[code] in lines[0]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "a temporary file is left"
    assert not (out / ".serket-ray.lock").exists()
    if "nothing to resume" in lines[0]:  # failed before run.json existed: nothing was kept, start again
        assert not (out / "run.json").exists()
        assert main(["run", *data_args, *TINY_ARGS, "--out", str(out), "--overwrite", "--quiet"]) == 0
    else:
        assert f"make room, then `serket-ray resume {out}` continues" in lines[0]
        assert main(["resume", str(out), "--quiet"]) == 0
    assert snapshot(out) == reference


def test_a_failed_report_figure_leaves_no_half_file(tiny, tmp_path, monkeypatch, capsys) -> None:
    from matplotlib.figure import Figure

    data_args, reference = tiny
    out = tmp_path / "run"

    def half_png(self, fname, *a, **k):
        Path(fname).write_bytes(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", half_png)
    assert main(["run", *data_args, *TINY_ARGS, "--out", str(out), "--report"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"serket-ray: error: cannot write {out / 'report' / 'accuracy.png'}: No space left on device (ENOSPC); "
        "stopped after the run's last update (9 of 9 updates are kept); the run itself is complete"
    ], err
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert snapshot(out) == reference | {k: v for k, v in snapshot(out).items() if k.startswith("report")}


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 6 MiB tmpfs (root only; skipped where mounting is not permitted)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = Path("/tmp") / f"serket-tmpfs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


def test_a_full_tmpfs_stops_the_run_and_resume_after_making_room_is_byte_identical(small_tmpfs, tmp_path) -> None:
    args = ["--rounds", "3", "--latent-dim", "8", "--epochs", "3", "--sweeps", "20", "--backend", "local", "--quiet"]
    reference = tmp_path / "reference"
    assert main(["run", *args, "--out", str(reference)]) == 0  # the embedded digits: ~9 MB of outputs
    out = small_tmpfs / "run"
    done = subprocess.run(
        command("run", *args, "--out", str(out)), env=env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"serket-ray: error: cannot write {out}/"), done.stderr
    assert "No space left on device (ENOSPC)" in lines[0] and f"`serket-ray resume {out}` continues" in lines[0]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    assert main(["resume", str(out), "--quiet"]) == 0
    assert snapshot(out) == snapshot(reference)
