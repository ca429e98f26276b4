"""A run's storage as a ``pyarrow.fs`` URI (issue 12): ``file:///...`` and ``s3://bucket/run`` on an
S3-compatible server (moto's) started on 127.0.0.1 in the test.  The run, its resume, recognition and
the report go through :mod:`orchestrator.storage`; every checkpoint, text export and recognition file
equals a local run's byte for byte; so does a sharded run's (each shard writes its part there itself,
on Ray from its own actor).  Bad URIs are one line, exit 2, nothing written; the advisory lock object on
S3 is honoured."""

from __future__ import annotations

import hashlib
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


# --------------------------------------------------------------------------- sharded runs (issue 12)

#: The GMM and MM on 2 shards of 256-point blocks (the 400 points: 2 blocks), local backend.
SHARDED = ["--latent-dim", "6", "--epochs", "10", "--batch-size", "400", "--sweeps", "10", "--threads", "1"]
SHARDED += ["--shards", "2", "--shard-block", "256", "--backend", "local", "--quiet"]


@pytest.fixture(scope="module")
def sharded_reference(reference, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A sharded run of 2 rounds on a local path: its directory and every file but run.json (parts included)."""
    out = tmp_path_factory.mktemp("sharded") / "run"
    assert _run("run", *reference[0], *SHARDED, "--rounds", "2", "--out", str(out)) == 0
    files = snapshot(out)
    assert (
        "module002_gmm/shards/001/shard001/part.arrow" in files
        and "module003_mm/shards/000/shard000/part.arrow" in files
    )
    return out, files


def test_a_sharded_run_and_resume_on_a_file_uri_and_on_s3_equal_a_local_path_run(
    reference, sharded_reference, s3, tmp_path, monkeypatch, capsys
) -> None:
    """file://: run 1 round, resume to 2.  S3: run 2 rounds while the server refuses GMM shard 1's part of round 1
    (its first object): one line naming that object, round 0's parts unchanged; the resume restores every shard
    from its part on S3.  Both end with the local-path run's bytes, parts included."""
    import json

    data_args = reference[0]
    local, files = sharded_reference
    on_disk = tmp_path / "uri-run"
    assert _run("run", *data_args, *SHARDED, "--rounds", "1", "--storage", on_disk.as_uri()) == 0
    assert _run("resume", on_disk.as_uri(), "--rounds", "2", "--quiet") == 0
    assert snapshot(on_disk) == files

    uri = f"s3://{BUCKET}/sharded?{s3}"
    real_put, refused = storage.put, []

    def refuse_a_part(path, data):
        if "module002_gmm/shards/001/shard001/" in str(path) and not refused:
            refused.append(str(path))
            raise storage.StorageError(path, None, "Access Denied")
        return real_put(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(storage, "put", refuse_a_part)
        status, err = _quiet_main(capsys, "run", *data_args, *SHARDED, "--rounds", "2", "--storage", uri)
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"serket-ray: error: cannot write {refused[0]}: Access Denied"), err
    assert f"`serket-ray resume {uri}` continues" in err[0], err
    previous = {k: v for k, v in _objects(uri).items() if "/shards/000/" in k}
    assert len(previous) == 10 and previous == {k: files[k] for k in previous}  # round 0's parts: intact
    assert _quiet_main(capsys, "resume", uri, "--quiet")[0] == 0
    got = _objects(uri)
    assert got == files, f"{sorted(k for k in files if got.get(k) != files[k])} differ"

    manifest = json.loads((storage.resolve(uri) / "run.json").read_text())
    assert manifest["shards"] == {"n_shards": 2, "block": 256, "modules": ["gmm", "mm"]}
    parts = {k: v for u in manifest["updates"] for k, v in u["files"].items() if "/shards/" in k}
    assert len(parts) == 2 * 2 * 3 + 2 * 2 * 2  # rounds x shards x (part.arrow + class/Pdz, or + msg)
    assert parts == {k: hashlib.sha256(files[k]).hexdigest() for k in parts}  # checksummed as written

    # recognition reads the sharded run through the same layer (the report reads the same round directories as
    # an unsharded run's, tested above; its figures take ~10 s, so not again here)
    recog = ["--data", data_args[1], "--data-key", "x", "--labels", data_args[1], "--labels-key", "y", "--quiet"]
    assert _run("recog", "--model", str(local), *recog, "--out", str(tmp_path / "recog-local")) == 0
    assert _run("recog", "--model", uri, *recog, "--out", str(tmp_path / "recog-s3")) == 0
    want = {k: v for k, v in snapshot(tmp_path / "recog-local").items() if k != "recog.json"}
    assert want and {k: v for k, v in snapshot(tmp_path / "recog-s3").items() if k != "recog.json"} == want


def test_a_sharded_run_on_ray_writes_each_part_from_its_shard_actor_to_s3(s3, ray_session, tmp_path) -> None:
    """The GMM and MM shards as Ray actors: each gets its part's RemotePath pickled with its file system and
    writes it itself; the objects equal a local-backend run's files on a local path.  (Keys from the environment
    do not travel with a pickled file system, each actor reads its own; these travel in the URI.)"""
    from test_shard_run import _cycle_graph

    options = {"seed": 0, "threads": 1, "shards": 2, "shard_block": 256}
    local = tmp_path / "local"
    Orchestrator(_cycle_graph(), local, backend="local", **options).run(2)
    uri = f"s3://testing:testing@{BUCKET}/on-ray?{s3}"
    orch = Orchestrator(_cycle_graph(), uri, resources={"gmm": {"num_cpus": 0.5}, "mm": {"num_cpus": 0.5}}, **options)
    try:
        orch.run(2)
    finally:
        orch.close()
    got = _objects(uri)
    assert "module001_gmm/shards/001/shard001/part.arrow" in got, sorted(got)
    assert got == snapshot(local)
