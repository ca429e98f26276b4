"""A run's storage as a ``pyarrow.fs`` URI (issue 12): ``file:///...`` and ``s3://bucket/run`` on an
S3-compatible server (moto's) started on 127.0.0.1 in the test.  The run, its resume, recognition and
the report go through :mod:`orchestrator.storage`; every checkpoint, text export and recognition file
equals a local run's byte for byte.  Bad URIs are one line, exit 2, nothing written; the advisory lock
object on S3 is honoured."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from cli_runs import small_data, snapshot

from messages.errors import LockError
from orchestrator import Orchestrator, runlock, storage
from orchestrator.cli import main
from orchestrator.report import FIGURES

TINY = ["--latent-dim", "6", "--epochs", "20", "--batch-size", "400", "--sweeps", "10", "--backend", "local"]
BUCKET = "serket-test"


def _run(*args: str) -> int:
    return main([*args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[list[str], Path, dict[str, bytes]]:
    """A local-path run of 2 rounds: the data arguments, its directory and every file but run.json."""
    base = tmp_path_factory.mktemp("local")
    data_args = small_data(base)
    out = base / "run"
    assert _run("run", *data_args, *TINY, "--rounds", "2", "--out", str(out), "--quiet") == 0
    return data_args, out, snapshot(out)


def test_a_file_uri_run_and_resume_equal_a_local_run(reference, tmp_path) -> None:
    data_args, _, files = reference
    out = tmp_path / "uri-run"
    uri = out.as_uri()  # file:///tmp/.../uri-run
    assert _run("run", *data_args, *TINY, "--rounds", "1", "--storage", uri, "--quiet") == 0
    assert _run("resume", uri, "--rounds", "2", "--quiet") == 0
    assert snapshot(out) == files


# --------------------------------------------------------------------------- S3 on 127.0.0.1 (moto)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """moto's S3 server on ``port``; its buckets and objects outlive a stop (they are moto's, in this process)."""

    def __init__(self, port: int) -> None:
        from moto.server import ThreadedMotoServer  # the test extra's moto[server]

        self.port, self.cls, self.running = port, ThreadedMotoServer, None
        self.start()

    def start(self) -> None:
        self.running = self.cls(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.running.start()

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


_SERVER: list[Server] = []


@pytest.fixture(scope="module")
def s3() -> str:
    """A moto S3 server on a free 127.0.0.1 port with one bucket; the URI query that reaches it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its request log
    keys = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    port = _free_port()
    server = Server(port)
    _SERVER.append(server)
    try:
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http"
        fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}?{query}&allow_bucket_creation=true")
        fs.create_dir(BUCKET)
        yield query
    finally:
        server.stop()
        _SERVER.clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _objects(uri: str) -> dict[str, bytes]:
    """Every object below ``uri`` but run.json, by its path below it (as :func:`snapshot` names files)."""
    root = storage.resolve(uri)
    assert isinstance(root, storage.RemotePath)
    return {p.relative_to(root): p.read_bytes() for p in root.walk() if p.name != "run.json"}


def test_an_s3_run_resume_recog_and_report_equal_a_local_run(reference, s3, tmp_path) -> None:
    data_args, local, files = reference
    uri = f"s3://{BUCKET}/run?{s3}"
    assert _run("run", *data_args, *TINY, "--rounds", "1", "--storage", uri, "--quiet") == 0
    assert _run("resume", uri, "--rounds", "2", "--quiet") == 0
    assert _objects(uri) == files, "the S3 run's objects differ from the local run's files"
    assert not (storage.resolve(uri) / runlock.LOCK_NAME).exists()
    done = Orchestrator.resume(uri, backend="local")  # the Python API takes the URI as it is
    assert done.already_complete and done.out_dir == storage.resolve(uri) and len(done.accuracy) == 2

    # recognition from the S3 model equals recognition from the local one (into a local and an S3 output)
    recog = ["--data", data_args[1], "--data-key", "x", "--labels", data_args[1], "--labels-key", "y", "--quiet"]
    assert _run("recog", "--model", str(local), *recog, "--out", str(tmp_path / "recog-local")) == 0
    assert _run("recog", "--model", uri, *recog, "--out", str(tmp_path / "recog-s3")) == 0
    assert _run("recog", "--model", uri, *recog, "--out", f"s3://{BUCKET}/recog?{s3}") == 0
    want = {k: v for k, v in snapshot(tmp_path / "recog-local").items() if k != "recog.json"}
    assert want and {k: v for k, v in snapshot(tmp_path / "recog-s3").items() if k != "recog.json"} == want
    got = _objects(f"s3://{BUCKET}/recog?{s3}")
    assert "recog.json" in got and {k: v for k, v in got.items() if k != "recog.json"} == want

    # the report, drawn from S3 into s3://.../run/report/ (drawing takes seconds: one report, not two; its
    # inputs are the objects compared above)
    assert _run("report", uri, "--quiet") == 0
    report = _objects(f"s3://{BUCKET}/run/report?{s3}")
    assert sorted(report) == sorted([f"{name}.png" for name in FIGURES] + ["index.html"])
    assert all(png.startswith(b"\x89PNG") for name, png in report.items() if name.endswith(".png"))
    assert f"<code>s3://{BUCKET}/run</code>" in report["index.html"].decode()


def _quiet_main(capsys, *args: str) -> tuple[int, list[str]]:
    status = main([*args])
    return status, capsys.readouterr().err.splitlines()


def test_bad_storage_uris_are_one_line_and_write_nothing(reference, s3, tmp_path, capsys) -> None:
    data_args = reference[0]
    closed = _free_port()  # nothing listens there
    cases = {
        "foo://bucket/run": "should be a local path or a pyarrow.fs URI",
        f"s3://{BUCKET}/run?endpoint_override=127.0.0.1:{closed}&scheme=http": "should be reachable",
        f"s3://no-such-bucket/run?{s3}": "should name an existing bucket, got no bucket 'no-such-bucket'",
        f"s3://{BUCKET}?{s3}": "should name a directory inside a bucket",
    }
    fs = storage.resolve(f"s3://{BUCKET}/run?{s3}").fs
    listed = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(BUCKET, recursive=True)))
    for uri, says in cases.items():
        t0 = time.perf_counter()
        status, err = _quiet_main(capsys, "run", *data_args, *TINY, "--rounds", "1", "--storage", uri)
        assert status == 2 and len(err) == 1 and says in err[0], (uri, err)
        assert "secret" not in err[0] and "endpoint_override" not in err[0]
        assert time.perf_counter() - t0 < 30, f"{uri} took {time.perf_counter() - t0:.0f} s to refuse"
        if "reachable" in says:  # (pyarrow's own retries take seconds there: run only)
            continue
        recog = ["recog", "--model", uri, "--data", data_args[1], "--data-key", "x", "--out", str(tmp_path / "r")]
        for args in (["resume", uri], ["report", uri], recog):
            status, err = _quiet_main(capsys, *args)
            assert status == 2 and len(err) == 1 and says in err[0], (args, err)
    # a sharded GMM + MM writes its parts to a path: refused on an object store, before anything is written
    uri = f"s3://{BUCKET}/sharded?{s3}"
    status, err = _quiet_main(capsys, "run", *data_args, *TINY, "--rounds", "1", "--storage", uri, "--shards", "1",
                              "--sharded", "--shard-block", "256", "--backend", "local")  # fmt: skip
    assert status == 2 and len(err) == 1 and "a sharded run's parts are written to a local" in err[0], err
    assert sorted(i.path for i in fs.get_file_info(pafs.FileSelector(BUCKET, recursive=True))) == listed
    assert not Path("foo:").exists() and not (tmp_path / "foo:").exists() and not (tmp_path / "r").exists()


def test_the_s3_lock_object_is_honoured(reference, s3, capsys) -> None:
    out = storage.resolve(f"s3://{BUCKET}/locked?{s3}")
    lock_path = out / runlock.LOCK_NAME
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process on this host holds it: refused, whatever --force-unlock says
        storage.put(lock_path, f'{{"pid": {sleeper.pid}, "host": "{socket.gethostname()}", "started": 0}}\n'.encode())
        with pytest.raises(LockError, match=f"in use by pid {sleeper.pid}"):
            runlock.ObjectLock(out, force=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    # ... once it is gone, the lock is taken over
    lock = runlock.ObjectLock(out)
    assert lock.held and f'"pid": {os.getpid()}' in lock_path.read_text()
    lock.release()
    assert not lock_path.exists()
    # a lock written on another host cannot be checked from here: refused unless forced
    storage.put(lock_path, b'{"pid": 1, "host": "elsewhere", "started": 0, "command": "serket-ray run"}\n')
    with pytest.raises(LockError, match="locked by pid 1 on host elsewhere .*--force-unlock"):
        runlock.ObjectLock(out)
    status, err = _quiet_main(capsys, "run", *reference[0], *TINY, "--storage", f"s3://{BUCKET}/locked?{s3}")
    assert status == 2 and len(err) == 1 and "locked by pid 1 on host elsewhere" in err[0], err
    assert [p.name for p in out.walk()] == [runlock.LOCK_NAME], "a refused run wrote something"
    with runlock.hold(out, "test", force=True) as held:
        assert held.held and socket.gethostname() in lock_path.read_text()
    assert not lock_path.exists()


def test_an_s3_server_lost_mid_run_stops_with_one_line_and_resume_is_byte_identical(
    reference, s3, monkeypatch, capsys
) -> None:
    data_args, _, files = reference
    uri = f"s3://{BUCKET}/lost?{s3}"
    real_put, calls = storage.put, []

    def put_then_lose_the_server(path, data):
        calls.append(str(path))
        if len(calls) == 14:  # an object of round 0's GMM update: the server goes away before its upload
            _SERVER[0].stop()
        return real_put(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(storage, "put", put_then_lose_the_server)
        status, err = _quiet_main(capsys, "run", *data_args, *TINY, "--rounds", "2", "--storage", uri)
    _SERVER[0].start()
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"serket-ray: error: cannot write {calls[-1]}: ") and "connect" in err[0], err
    assert "module002_gmm/000/" in calls[-1]
    assert err[0].endswith(
        "; stopped where its run.json could not be read back (the storage does not answer); once it answers, "
        f"`serket-ray resume {uri}` continues from the last update run.json records"
    ), err
    assert (storage.resolve(uri) / runlock.LOCK_NAME).exists()  # its delete failed too: the next run takes it over
    assert _quiet_main(capsys, "resume", uri, "--quiet")[0] == 0
    assert _objects(uri) == files
