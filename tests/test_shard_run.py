"""A whole run with the GMM and MM as shard groups: S = 2 equals the one-shard sharded run byte for byte,
resume continues it exactly, a SIGKILLed shard is replaced and the run ends as an undisturbed one, bad
shard options are one line before anything starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main

#: 400 digits in 256-point blocks: two blocks, so two shards (the second holds 144 points).
SIZES = ["--rounds", "2", "--latent-dim", "6", "--epochs", "10", "--batch-size", "400", "--sweeps", "10"]
SHARDED = ["--threads", "1", "--shard-block", "256", "--backend", "local", "--quiet"]
#: What the whole-run comparison leaves out: timings (run.json) and the shards' own parts (cut differently per S).
PARTS = "/shards/"


def _data(directory: Path) -> list[str]:
    from orchestrator.data import default_digits

    images, labels = default_digits()
    path = directory / "small.npz"
    if not path.exists():
        np.savez(path, x=images[:400], y=labels[:400])
    return ["--data", str(path), "--data-key", "x", "--labels", str(path), "--labels-key", "y"]


def _files(out: Path) -> dict[str, bytes]:
    """Every file of a run but run.json, parts included."""
    return {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.json"
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The one-shard sharded reference and the two-shard run, both through the command line (in-process)."""
    base = tmp_path_factory.mktemp("shard_runs")
    data = _data(base)
    out = {"one": base / "one", "two": base / "two"}
    assert main(["run", *data, *SIZES, *SHARDED, "--shards", "1", "--sharded", "--out", str(out["one"])]) == 0
    assert main(["run", *data, *SIZES, *SHARDED, "--shards", "2", "--out", str(out["two"])]) == 0
    return out


def test_two_shards_equal_the_one_shard_reference_byte_for_byte(runs) -> None:
    import json

    one, two = _files(runs["one"]), _files(runs["two"])
    whole = sorted(k for k in one if PARTS not in f"/{k}")
    assert "module002_gmm/class_learn.txt" in whole and "module003_mm/trans_prob_learn.txt" in whole
    assert "module002_gmm/001/Pdz_learn.txt" in whole and "module003_mm/001/msg_learn.txt" in whole
    assert [k for k in whole if one[k] != two.get(k)] == []  # GMM classes, MM transitions, VAE: the same bytes
    # each shard wrote its own part; the shards' per-point files concatenate to the whole-run file
    parts = sorted(Path(runs["two"]).glob("module002_gmm/shards/001/shard*/class_learn.txt"))
    assert len(parts) == 2
    assert b"".join(p.read_bytes() for p in parts) == two["module002_gmm/001/class_learn.txt"]
    manifest = json.loads((runs["two"] / "run.json").read_text())
    assert manifest["shards"] == {"n_shards": 2, "block": 256, "modules": ["gmm", "mm"]}
    gmm_files = [u["files"] for u in manifest["updates"] if u["module"] == "module002_gmm"][-1]
    assert "module002_gmm/shards/001/shard001/part.arrow" in gmm_files  # parts are checksummed in run.json
    last = [u for u in manifest["updates"] if u["module"] == "module002_gmm"][-1]["scalars"]
    assert last["accuracy"] == float((runs["two"] / "module002_gmm/acc_learn.txt").read_text())


def test_resume_of_a_sharded_run_is_byte_identical_and_another_shard_count_is_refused(runs, tmp_path, capsys) -> None:
    data = _data(tmp_path)
    out = tmp_path / "run"
    short = [a if a != "2" else "1" for a in SIZES[:2]] + SIZES[2:]  # --rounds 1
    assert main(["run", *data, *short, *SHARDED, "--shards", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["resume", str(out), "--rounds", "2", "--shards", "1", "--backend", "local", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "shards: recorded 2 shards of 256-point blocks" in err and len(err.splitlines()) == 1
    assert main(["resume", str(out), "--rounds", "2", "--backend", "local", "--quiet"]) == 0
    assert _files(out) == _files(runs["two"])


BAD = [
    (["--shards", "0"], "--shards: should be a positive integer, got 0"),
    (["--shards", "two"], "--shards: should be a positive integer, got 'two'"),
    (["--resources", '{"gmm": {"shards": 1.5}}'], "resources['gmm']['shards'] should be a positive integer, got 1.5"),
    (["--resources", '{"vae": {"shards": 2}}'], "['shards']: 2 needs the Ray backend, got backend 'local'"),
    (["--shards", "3"], "at most the number of 256-point blocks of the data (400 points: 2 blocks), got 3"),
    (["--shards", "2", "--resources", '{"mm": {"shards": 1}}'], "--shards 2 but resources give mm 1"),
    (["--shards", "2", "--mm-message", "serket"], "a sharded MarkovModel runs"),
    (["--shards", "2", "--shard-block", "300"], "shard block should be a positive multiple of 256"),
]


@pytest.mark.parametrize("extra,expected", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_shard_options_are_one_line_exit_2_before_anything_starts(tmp_path, capsys, extra, expected) -> None:
    data = _data(tmp_path)
    out = tmp_path / "out"
    args = ["run", *data, *SIZES, "--threads", "1", "--backend", "local", "--quiet", "--out", str(out)]
    if "--shard-block" not in extra:
        args += ["--shard-block", "256"]
    try:
        status = main([*args, *extra])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def _cycle_graph() -> list:
    """Observation -> GMM -> MM on 600 synthetic 4-d points cycling through 6 classes (no VAE: quick to start)."""
    from actors import GMM, MarkovModel, Observation

    rng = np.random.default_rng(0)
    labels = np.arange(600) % 6
    x = rng.normal(0.0, 4.0, (6, 4))[labels] + rng.normal(size=(600, 4))
    obs, gmm, mm = Observation(x), GMM(6, itr=8, category=labels), MarkovModel()
    gmm.connect(obs)
    mm.connect(gmm)
    return [obs, gmm, mm]


def test_a_sigkilled_shard_is_replaced_and_the_run_equals_an_undisturbed_one(ray_session, tmp_path, monkeypatch):
    """GMM shard 1 SIGKILLs itself (its own pid) at sweep 3 of round 2, MM shard 0 in its third forward-backward
    pass of round 2; each update is retried on a new shard."""
    import json

    from orchestrator import Orchestrator

    options = {"seed": 0, "threads": 1, "shards": 2, "shard_block": 256}
    undisturbed = tmp_path / "undisturbed"
    orch = Orchestrator(_cycle_graph(), undisturbed, backend="local", **options)
    orch.run(2)
    flag, flag_mm = tmp_path / "killed", tmp_path / "killed_mm"
    monkeypatch.setenv("SERKET_RAY_SHARD_FAULT", f"gmm:1:1:3:{flag},mm:0:1:2:{flag_mm}")
    out = tmp_path / "run"
    orch = Orchestrator(_cycle_graph(), out, resources={"gmm": {"num_cpus": 0.5}, "mm": {"num_cpus": 0.5}}, **options)
    try:
        orch.run(2)
    finally:
        orch.close()
    killed_pid = int(flag.read_text())
    manifest = json.loads((out / "run.json").read_text())
    gmm = next(name for name in manifest["modules"] if name.endswith("_gmm"))
    assert killed_pid not in [s["pid"] for s in manifest["modules"][gmm]["shards"]]  # shard 1: a new process
    assert [u["attempts"] for u in manifest["updates"] if u["module"] == gmm] == [1, 2]
    mm = next(name for name in manifest["modules"] if name.endswith("_mm"))
    assert int(flag_mm.read_text()) not in [s["pid"] for s in manifest["modules"][mm]["shards"]]
    assert [u["attempts"] for u in manifest["updates"] if u["module"] == mm] == [1, 2]
    assert _files(out) == _files(undisturbed)  # on Ray, a shard killed mid-update: the undisturbed run's bytes


def test_shards_per_module_in_resources_apply_to_the_gmm_and_the_mm() -> None:
    from messages.errors import ConfigError
    from orchestrator.graph import build_graph
    from orchestrator.shard_plan import shard_plan, without_shard_keys

    graph = build_graph(*_cycle_graph())
    plan = shard_plan(graph, {"gmm": {"shards": 2, "num_cpus": 1}}, block=256)
    assert plan is not None and (plan.n_shards, plan.block, plan.modules) == (2, 256, ("gmm", "mm"))
    assert shard_plan(graph, {"mm": {"sharded": True}}).as_dict() == {
        "n_shards": 1,
        "block": 4096,
        "modules": ["gmm", "mm"],
    }
    assert shard_plan(graph, {"gmm": {"shards": 1}}) is None  # today's path
    assert without_shard_keys({"gmm": {"shards": 2, "num_cpus": 1}, "mm": "auto"}) == {
        "gmm": {"num_cpus": 1},
        "mm": "auto",
    }
    with pytest.raises(ConfigError, match="same number of shards"):
        shard_plan(graph, {"gmm": {"shards": 2}, "mm": {"shards": 3}}, block=256)
    with pytest.raises(ConfigError, match="'sharded'] should be true or false"):
        shard_plan(graph, {"gmm": {"sharded": "yes"}})


def test_a_part_write_that_fails_midway_leaves_the_previous_round_intact(runs, tmp_path, monkeypatch, capsys) -> None:
    """GMM shard 1's part of round 1 fails half way through its text files (ENOSPC, as np.savetxt raises it,
    naming no file): one line naming that part's file, no temporary directory, round 0's parts and every
    recorded update unchanged; resume then ends with the undisturbed run's bytes."""
    import errno
    import os

    from orchestrator import shard_checkpoint

    data = _data(tmp_path)
    out = tmp_path / "run"
    real = shard_checkpoint.export_text

    def half_then_full(directory, mode, **texts):
        if directory.name.startswith(".shard001.tmp-") and directory.parent.name == "001" and "classes" in texts:
            real(directory, mode, **texts)
            target = directory / f"class_{mode}.txt"
            target.write_bytes(target.read_bytes()[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(directory, mode, **texts)

    monkeypatch.setattr(shard_checkpoint, "export_text", half_then_full)
    assert main(["run", *data, *SIZES, *SHARDED[:-1], "--shards", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    part = out / "module002_gmm" / "shards" / "001" / "shard001"
    assert len(err) == 1 and err[0].startswith(f"serket-ray: error: cannot write {part}/class_learn.txt: "), err
    assert "No space left on device (ENOSPC)" in err[0] and "resume" in err[0]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name], "a temporary part is left"
    assert not part.exists()
    reference = _files(runs["two"])
    previous = {k: v for k, v in _files(out).items() if "/shards/000/" in k}
    assert previous and previous == {k: reference[k] for k in previous}  # round 0's parts: intact
    monkeypatch.undo()
    assert main(["resume", str(out), "--rounds", "2", "--backend", "local", "--quiet"]) == 0
    assert _files(out) == reference


def test_a_failed_rewrite_of_a_part_keeps_the_old_part(tmp_path, monkeypatch) -> None:
    """Writing a part over an existing one: a failure in its files or in the rename into place leaves the
    old part as it was (put back if it was already moved aside) and no temporary directory."""
    import errno

    from messages.errors import StorageError
    from orchestrator import shard_checkpoint
    from orchestrator.shard_checkpoint import part_dir, read_part, write_part

    directory = part_dir(tmp_path, "gmm", 0, 1)
    old = {"labels": np.arange(5, dtype=np.int64)}
    sums = write_part(directory, old, {"shard": 1}, {"classes": old["labels"]})
    assert sorted(sums) == ["class_learn.txt", "part.arrow"]
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    new = {"labels": np.arange(5, dtype=np.int64)[::-1].copy()}

    def fail_texts(directory, mode, **texts):
        (directory / f"class_{mode}.txt").write_text("4\n3\n")
        raise OSError(errno.EROFS, "Read-only file system")

    real_rename = Path.rename

    def fail_rename(self, target):
        if ".tmp-" in self.name:
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real_rename(self, target)

    for name, owner, patch in (
        ("export_text", shard_checkpoint, fail_texts),
        ("rename", Path, fail_rename),
    ):
        with monkeypatch.context() as m:
            m.setattr(owner, name, patch)
            with pytest.raises(StorageError, match=f"cannot write {directory}") as got:
                write_part(directory, new, {"shard": 1}, {"classes": new["labels"]})
        assert "tmp-" not in str(got.value), got.value
        assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
        assert [p.name for p in directory.parent.iterdir()] == ["shard001"]  # no .tmp- or .old- directory
        np.testing.assert_array_equal(read_part(directory)[0]["labels"], old["labels"])
    write_part(directory, new, {"shard": 1}, {"classes": new["labels"]})
    np.testing.assert_array_equal(read_part(directory)[0]["labels"], new["labels"])


def test_a_part_write_refused_in_a_ray_shard_actor_raises_its_one_line_storage_error(ray_session) -> None:
    """A shard actor's StorageError reaches the driver as itself (not Ray's multi-line task error), so the CLI
    prints its one line and says how to resume."""
    from messages.errors import StorageError
    from orchestrator.shard_group import RayShards

    class RefusedWriter:  # defined here: pickled by value (the test module does not import on Ray's workers)
        """A stand-in shard actor whose part write is refused by its storage."""

        def write_part(self, directory: str, meta: dict) -> dict:
            import errno

            from messages.errors import StorageError

            raise StorageError(f"{directory}/part.arrow", errno.EACCES, "Permission denied")

    actor = ray_session.remote(num_cpus=0)(RefusedWriter).remote()
    try:
        with pytest.raises(StorageError) as got:
            RayShards([actor]).map("write_part", per_shard=[("s3://bucket/run/gmm/shards/000/shard000", {})])
        assert type(got.value) is StorageError
        assert (
            str(got.value)
            == "cannot write s3://bucket/run/gmm/shards/000/shard000/part.arrow: Permission denied (EACCES)"
        )
    finally:
        ray_session.kill(actor)
