"""A real two-node Ray cluster on this machine: the VAE goes to the node with ``vae_node``.

The cluster is two ``ray start --block`` processes (a head with ``head_role``
and a second node with ``vae_node``, standing in for the GPU machine).  The
pipeline runs in a separate Python process (``scripts/two_node_driver.py``) so
this test never touches the in-process Ray that other tests share.  The
processes are stopped by pid at the end, also on failure: never ``ray stop``,
which would kill every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "scripts" / "two_node_driver.py"
RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")

pytestmark = [pytest.mark.ray, pytest.mark.skipif(RAY is None, reason="the ray CLI is not installed")]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _descendants(pids: list[int]) -> list[int]:
    """Every live process below ``pids`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class TwoNodeCluster:
    """Head (2 CPUs, ``head_role``) + second node (1 CPU, ``vae_node``) on 127.0.0.1."""

    def __init__(self) -> None:
        # Short path: Ray's unix sockets live under it (107-byte limit).
        self.tmp = Path(tempfile.mkdtemp(prefix="s2n.", dir="/tmp"))
        token = self.tmp / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = dict(
            os.environ,
            RAY_AUTH_MODE="token",  # this cluster's own token, not ~/.ray/auth_token
            RAY_AUTH_TOKEN_PATH=str(token),
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
            RAY_USAGE_STATS_ENABLED="0",
        )
        self.env.pop("RAY_ADDRESS", None)
        self.port, client_port, dashboard, head_agent, worker_agent = _free_ports(5)
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        try:
            self._start(
                "head",
                [
                    "--head",
                    f"--port={self.port}",
                    "--num-cpus=2",
                    '--resources={"head_role": 1}',
                    "--include-dashboard=false",
                    f"--ray-client-server-port={client_port}",
                    f"--dashboard-port={dashboard}",
                    f"--dashboard-agent-listen-port={head_agent}",
                ],
            )
            self._start(
                "worker",
                [
                    f"--address={self.address}",
                    "--num-cpus=1",
                    '--resources={"vae_node": 1}',
                    f"--dashboard-agent-listen-port={worker_agent}",
                ],
            )
        except BaseException:
            self.stop(keep_logs=True)
            raise

    def _start(self, name: str, args: list[str]) -> None:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        cmd = [
            RAY,
            "start",
            "--node-ip-address=127.0.0.1",
            "--num-gpus=0",
            f"--temp-dir={self.tmp}",
            "--disable-usage-stats",
            "--block",
            *args,
        ]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({name}) did not come up (logs in {self.tmp}):\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, n: int = 4000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in self.logs if p.exists())

    def stop(self, keep_logs: bool = False) -> None:
        """SIGTERM the ``ray start --block`` processes (they stop their node), then SIGKILL leftovers by pid."""
        pids = [p.pid for p in self.procs]
        everything = _descendants(pids)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in everything:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def two_node_cluster():
    """A running two-node cluster; always stopped afterwards."""
    cluster = TwoNodeCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_vae_runs_on_second_node_and_matches_single_node_run(two_node_cluster, tmp_path):
    cluster = two_node_cluster
    try:
        proc = subprocess.run(
            [sys.executable, str(DRIVER), "--address", cluster.address, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            env=cluster.env,
            timeout=240,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the driver took over {exc.timeout} s\n{exc.stdout}\n{exc.stderr}\n{cluster.log_tail()}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"driver printed no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-6000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["failures"] == [], result
    assert proc.returncode == 0, proc.stderr[-6000:]

    # Two nodes, the second one carries vae_node, and run.json puts the VAE there.
    assert len(result["nodes"]) == 2
    assert result["vae_node_id"] and result["vae_node_id"] != result["head_node_id"]
    manifest = json.loads((tmp_path / "cluster" / "run.json").read_text())
    vae_entry = manifest["modules"]["module001_vae"]
    assert vae_entry["node_id"] == result["vae_node_id"]
    assert vae_entry["resources"].get("vae_node") == 1.0
    assert manifest["modules"]["module002_gmm"]["node_id"] == result["head_node_id"]
    assert manifest["modules"]["module003_mm"]["node_id"] == result["head_node_id"]
    assert manifest["address"] == cluster.address

    # Same seed, same class labels as the single-process run, round by round.
    assert result["class_files_equal"] is True
    for rel in (
        "module002_gmm/000/class_learn.txt",
        "module002_gmm/001/class_learn.txt",
        "module002_gmm/class_learn.txt",
    ):
        assert (tmp_path / "cluster" / rel).read_text() == (tmp_path / "local" / rel).read_text(), rel
    assert len(result["accuracy"]) == 2


def test_demo_script_is_valid_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    check = subprocess.run([bash, "-n", str(ROOT / "scripts" / "two_node_demo.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
