"""Every bad input is one plain line, exit status 2, before any actor starts, nothing on disk changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main


def _files(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    good = rng.random((30, 4))
    paths = {"good": tmp / "good.npy", "labels": tmp / "labels.npy"}
    np.save(paths["good"], good)
    np.save(paths["labels"], np.arange(30) % 3)
    specs = {
        "nan": np.where(np.arange(120).reshape(30, 4) == 7, np.nan, good),
        "inf": np.where(np.arange(120).reshape(30, 4) == 7, np.inf, good),
        "oned": good[:, 0],
        "big": good * 255,
        "short_labels": np.arange(29) % 3,
        "float_labels": np.linspace(0, 1, 30),
    }
    for name, arr in specs.items():
        paths[name] = tmp / f"{name}.npy"
        np.save(paths[name], arr)
    paths["empty"] = tmp / "empty.txt"
    paths["empty"].write_text("")
    paths["ragged"] = tmp / "ragged.txt"
    paths["ragged"].write_text("0.1 0.2 0.3\n0.4 0.5\n")
    paths["unknown"] = tmp / "data.xyz"
    paths["unknown"].write_bytes(bytes(range(256)) * 4)
    paths["missing"] = tmp / "missing.npy"
    for name, text in (
        ("lengths_sum", "10 10 5\n"),
        ("lengths_zero", "10\n0\n20\n"),
        ("lengths_negative", "40 -10\n"),
        ("lengths_float", "10.5 19.5\n"),
        ("lengths_empty", "# no sequences\n"),
    ):
        paths[name] = tmp / f"{name}.txt"
        paths[name].write_text(text)
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.repeat([0, 1, 0], 10)  # sequence 0 comes back after sequence 1
    table = pa.table({"episode": ids, **{f"f{j}": good[:, j] for j in range(4)}})
    paths["ids_back"] = tmp / "ids_back.parquet"
    pq.write_table(table, paths["ids_back"])
    paths["ids_csv_back"] = tmp / "ids_back.csv"
    paths["ids_csv_back"].write_text(
        "f0,f1,episode\n"
        + "".join(
            f"{a:.3f},{b:.3f},{e}\n"
            for a, b, e in zip(good[:, 0], good[:, 1], ["a"] * 5 + ["b"] * 20 + ["a"] * 5, strict=True)
        )
    )
    paths["cluttered"] = tmp / "cluttered"
    paths["cluttered"].mkdir()
    (paths["cluttered"] / "thesis.tex").write_text("precious")
    return paths


# (case id, arguments after "run", text the one-line error must contain)
CASES = [
    ("missing file", ["--data", "{missing}"], "missing"),
    ("unknown format", ["--data", "{unknown}"], "data"),
    ("NaN", ["--data", "{nan}"], "NaN"),
    ("infinity", ["--data", "{inf}"], "infinite"),
    ("empty file", ["--data", "{empty}"], "empty"),
    ("1-D data", ["--data", "{oned}"], "2-D"),
    ("ragged rows", ["--data", "{ragged}"], "data"),
    ("labels count", ["--data", "{good}", "--labels", "{short_labels}"], "should have 30"),
    ("labels not integers", ["--data", "{good}", "--labels", "{float_labels}"], "integers"),
    ("labels without data", ["--labels", "{labels}"], "should come with --data"),
    ("more clusters than points", ["--data", "{good}", "--clusters", "31"], "at most the number of points 30"),
    (
        "zero latent size",
        ["--data", "{good}", "--latent-dim", "0"],
        "--latent-dim: should be a positive integer, got 0",
    ),
    ("negative epochs", ["--data", "{good}", "--epochs", "-3"], "--epochs: should be a positive integer, got -3"),
    ("zero batch size", ["--data", "{good}", "--batch-size", "0"], "--batch-size: should be a positive integer, got 0"),
    ("pixels outside [0, 1]", ["--data", "{big}"], "should lie in [0, 1]"),
    ("output dir with other files", ["--data", "{good}", "--out", "{cluttered}"], "not a serket-ray run"),
    ("unreachable address", ["--data", "{good}", "--address", "127.0.0.1:1"], "nothing answers there"),
    ("malformed address", ["--data", "{good}", "--address", "nowhere"], "host:port"),
    ("data and dataset", ["--data", "{good}", "--dataset", "mnist"], "not both"),
    (
        "lengths not summing to N",
        ["--data", "{good}", "--lengths", "{lengths_sum}"],
        "should sum to the number of points 30, got 25 over 3 sequences",
    ),
    (
        "zero length",
        ["--data", "{good}", "--lengths", "{lengths_zero}"],
        "should be positive integers (one per sequence), got 0 at entry 1",
    ),
    (
        "negative length",
        ["--data", "{good}", "--lengths", "{lengths_negative}"],
        "should be positive integers (one per sequence), got -10 at entry 1",
    ),
    (
        "lengths not integers",
        ["--data", "{good}", "--lengths", "{lengths_float}"],
        "should be integers, got 10.5 at entry 0",
    ),
    (
        "no lengths in the file",
        ["--data", "{good}", "--lengths", "{lengths_empty}"],
        "should hold at least one row of numbers",
    ),
    ("lengths file missing", ["--data", "{good}", "--lengths", "{missing}"], "lengths file should exist"),
    ("sequence id comes back", ["--data", "{ids_back}", "--sequence-key", "episode"], "got id 0 coming back at row 20"),
    (
        "sequence id comes back (CSV)",
        ["--data", "{ids_csv_back}", "--sequence-key", "episode"],
        "got id 'a' coming back at row 25",
    ),
    (
        "no such sequence column",
        ["--data", "{ids_back}", "--sequence-key", "session"],
        "should have a sequence column 'session'",
    ),
    (
        "sequence key on .npy",
        ["--data", "{good}", "--sequence-key", "episode"],
        "--sequence-key applies to Parquet, Feather and CSV files",
    ),
    (
        "lengths and sequence key",
        ["--data", "{ids_back}", "--sequence-key", "episode", "--lengths", "{lengths_sum}"],
        "not both",
    ),
    ("sequence key without data", ["--sequence-key", "episode"], "should come with --data"),
]


@pytest.mark.parametrize("case,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tmp_path, capsys, case, args, expected) -> None:
    paths = _files(tmp_path)
    argv = ["run", *[a.format(**{k: str(v) for k, v in paths.items()}) for a in args]]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) if "should be a positive integer" in expected else _no_exit():
        status = main(argv)
        assert status == 2
    err = capsys.readouterr().err.strip()
    assert expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("serket-ray: error: ")
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and not (tmp_path / "out").exists()


class _no_exit:  # noqa: N801 - a tiny context manager used like pytest.raises
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_argparse_errors_exit_with_status_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--epochs", "0"])
    assert info.value.code == 2


def test_batch_larger_than_data_says_what_will_happen(tmp_path, caplog) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 4)))
    argv = [
        "run",
        "--data",
        str(tmp_path / "x.npy"),
        "--batch-size",
        "500",
        "--epochs",
        "2",
        "--rounds",
        "1",
        "--clusters",
        "3",
        "--latent-dim",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--backend",
        "local",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "larger than the data (40 points): every epoch is one full batch" in caplog.text


def test_debug_shows_the_traceback(tmp_path) -> None:
    from messages.errors import DataError

    with pytest.raises(DataError):
        main(["--debug", "run", "--data", str(tmp_path / "nope.npy")])
