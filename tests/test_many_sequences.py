"""Many sequences end to end: the Python API, the files, the command line, resume and recognition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from actors import Observation
from messages import ClassPosteriors, DataError, Latents, Message, MessageError
from orchestrator.checkpoint import read_message, read_table, table_arrays
from orchestrator.cli import main
from orchestrator.lengths import load_sequence_table

RNG = np.random.default_rng(0)


def test_observation_takes_lengths_or_a_list_of_sequences() -> None:
    seqs = [RNG.random((3, 4)), RNG.random((1, 4)), RNG.random((5, 2, 2))]  # images are flattened too
    obs = Observation(seqs)
    assert obs.data.shape == (9, 4) and obs.lengths.tolist() == [3, 1, 5]
    np.testing.assert_array_equal(obs.data[3], seqs[1][0])
    again = Observation(obs.data, lengths=[3, 1, 5])
    np.testing.assert_array_equal(again.lengths, obs.lengths)
    assert Observation(obs.data, lengths=[9]).lengths is None  # one sequence is no lengths
    assert Observation(obs.data).lengths is None


@pytest.mark.parametrize(
    "make,expected",
    [
        (
            lambda: Observation(np.zeros((9, 2)), lengths=[3, 3]),
            "lengths should sum to the number of points 9, got 6 over 2 sequences",
        ),
        (
            lambda: Observation(np.zeros((9, 2)), lengths=[9, 0]),
            "lengths should be positive integers (one per sequence), got 0 at entry 1",
        ),
        (
            lambda: Observation(np.zeros((9, 2)), lengths=[10, -1]),
            "should be positive integers (one per sequence), got -1 at entry 1",
        ),
        (lambda: Observation(np.zeros((9, 2)), lengths=[4.5, 4.5]), "lengths should be integers, got 4.5 at entry 0"),
        (
            lambda: Observation(np.zeros((9, 2)), lengths=[]),
            "lengths should hold at least one sequence length, got none",
        ),
        (
            lambda: Observation([np.zeros((3, 2)), np.zeros((2, 3))]),
            "data sequence 1 should have 2 features like sequence 0, got 3",
        ),
        (lambda: Observation([np.zeros((3, 2)), np.zeros((0, 2))]), "data sequence 1 should hold at least one point"),
        (lambda: Observation([np.zeros((3, 2))], lengths=[3]), "not both"),
    ],
)
def test_bad_lengths_in_python_are_one_clear_error(make, expected) -> None:
    with pytest.raises(DataError, match=None) as info:
        make()
    assert expected in str(info.value)


def test_messages_carry_lengths_through_arrow_and_check_them() -> None:
    probs = RNG.dirichlet(np.ones(3), size=6)
    msg = ClassPosteriors(sender="g", receiver="m", round=1, probs=probs, lengths=np.array([2, 4]))
    back = Message.from_table(msg.to_table())
    assert back.same_as(msg) and back.lengths.tolist() == [2, 4]
    assert not back.same_as(ClassPosteriors(sender="g", receiver="m", round=1, probs=probs))
    with pytest.raises(MessageError, match="lengths should sum to the number of points 6, got 5"):
        Latents(sender="v", receiver="g", round=0, z=np.zeros((6, 2)), lengths=[2, 3])


def _table(ids: list, n_features: int = 3) -> pa.Table:
    x = RNG.random((len(ids), n_features))
    return pa.table({"session": ids, **{f"f{j}": x[:, j] for j in range(n_features)}}), x


@pytest.mark.parametrize("fmt", ["parquet", "feather", "csv"])
def test_a_sequence_id_column_gives_the_lengths_and_leaves_the_data(tmp_path, fmt) -> None:
    ids = ["a"] * 4 + ["b"] + ["c"] * 3
    table, x = _table(ids)
    path = tmp_path / f"d.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "feather":
        feather.write_feather(table, path)
    else:
        path.write_text(
            "session,f0,f1,f2\n"
            + "".join(f"{s},{a!r},{b!r},{c!r}\n" for s, (a, b, c) in zip(ids, x.tolist(), strict=True))
        )
    data, lengths = load_sequence_table(path, "session")
    assert lengths.tolist() == [4, 1, 3]
    np.testing.assert_allclose(data, x)


def _write_run_inputs(tmp: Path) -> dict[str, Path]:
    """300 embedded digits as 40 sequences, single points and sequences shorter than the batch among them."""
    from orchestrator.data import default_digits

    images, labels = default_digits()
    lengths = np.array([1, 1, 2] + [8] * 36 + [8])
    assert lengths.sum() == 300
    paths = {"x": tmp / "x.npy", "y": tmp / "y.npy", "lengths": tmp / "lengths.txt"}
    np.save(paths["x"], images[:300])
    np.save(paths["y"], labels[:300])
    np.savetxt(paths["lengths"], lengths, fmt="%d")
    return paths


SMALL = ["--epochs", "2", "--sweeps", "10", "--latent-dim", "4", "--batch-size", "100", "--backend", "local", "--quiet"]


@pytest.fixture(scope="module")
def many_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("many")
    paths = _write_run_inputs(tmp)
    out = tmp / "out"
    argv = [
        "run",
        "--data",
        str(paths["x"]),
        "--labels",
        str(paths["y"]),
        "--lengths",
        str(paths["lengths"]),
        "--rounds",
        "1",
        "--out",
        str(out),
        *SMALL,
    ]
    assert main(argv) == 0
    return paths, out


def test_a_run_on_many_sequences_keeps_its_lengths_everywhere(many_run) -> None:
    paths, out = many_run
    lengths = np.loadtxt(paths["lengths"], dtype=np.int64)
    for rel in (
        "module001_vae/000/latents.arrow",
        "module002_gmm/000/posteriors.arrow",
        "module003_mm/000/class_prior.arrow",
    ):
        np.testing.assert_array_equal(read_message(out / rel).lengths, lengths)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["data"]["module000_obs"]["lengths"]["n_sequences"] == 40
    state, _ = table_arrays(read_table(out / "module003_mm/000/state.arrow"))
    initial = np.loadtxt(out / "module003_mm/init_prob_learn.txt")
    np.testing.assert_allclose(state["initial"], initial)
    assert initial.sum() == pytest.approx(1.0)


def test_resume_with_other_lengths_is_refused_naming_the_difference(many_run, tmp_path, capsys) -> None:
    import shutil

    paths, out = many_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    np.savetxt(paths["lengths"], [150, 150], fmt="%d")
    try:
        assert main(["resume", str(copy), "--rounds", "2", "--backend", "local", "--quiet"]) == 2
    finally:
        np.savetxt(paths["lengths"], [1, 1, 2] + [8] * 37, fmt="%d")
    err = capsys.readouterr().err
    assert (
        "lengths of module000_obs: recorded 40 sequences of 1 to 8 points" in err
        and "given 2 sequences of 150 to 150 points" in err
    )
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_recognition_runs_per_sequence(many_run, tmp_path) -> None:
    """Recognising two sequences together (with --lengths) equals recognising each on its own."""
    paths, out = many_run
    x = np.load(paths["x"])
    np.save(tmp_path / "a.npy", x[:120])
    np.save(tmp_path / "b.npy", x[120:200])
    np.save(tmp_path / "ab.npy", x[:200])
    np.savetxt(tmp_path / "ab.txt", [120, 80], fmt="%d")
    base = ["recog", "--model", str(out), "--quiet"]
    assert (
        main(
            [
                *base,
                "--data",
                str(tmp_path / "ab.npy"),
                "--lengths",
                str(tmp_path / "ab.txt"),
                "--out",
                str(tmp_path / "ab"),
            ]
        )
        == 0
    )
    for part in ("a", "b"):
        assert main([*base, "--data", str(tmp_path / f"{part}.npy"), "--out", str(tmp_path / part)]) == 0
    joint = np.loadtxt(tmp_path / "ab/module002_gmm/Pdz_recog.txt")
    apart = np.vstack([np.loadtxt(tmp_path / f"{p}/module002_gmm/Pdz_recog.txt") for p in ("a", "b")])
    np.testing.assert_allclose(joint, apart, atol=1e-9)
    assert json.loads((tmp_path / "ab/recog.json").read_text())["n_sequences"] == 2
    one = np.loadtxt(tmp_path / "ab/module003_mm/msg_recog.txt")
    assert main([*base, "--data", str(tmp_path / "ab.npy"), "--out", str(tmp_path / "ab1")]) == 0
    assert not np.allclose(
        one[120], np.loadtxt(tmp_path / "ab1/module003_mm/msg_recog.txt")[120], atol=1e-6
    )  # linked when one sequence
