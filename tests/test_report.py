"""``serket-ray report``: the HTML page and PNG figures of a run (no Ray, a few seconds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors import GMM, VAE, MarkovModel, Observation
from messages.errors import CheckpointError, DataError
from orchestrator import Orchestrator
from orchestrator.cli import main
from orchestrator.data import default_digits
from orchestrator.report import FIGURES, make_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _learn(out: Path, data: np.ndarray, labels: np.ndarray | None, mm: bool = True) -> Path:
    """Two short rounds of Observation -> VAE -> GMM (-> MM) from Python (no command-line record)."""
    obs, vae, gmm = Observation(data), VAE(4, itr=3, batch_size=500), GMM(10, itr=5, category=labels)
    vae.connect(obs)
    gmm.connect(vae)
    if mm:
        MarkovModel().connect(gmm)
    Orchestrator([vae], out, seed=0, backend="local").run(2)
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """The embedded digits with labels, so every figure can be drawn."""
    data, labels = default_digits()
    return _learn(tmp_path_factory.mktemp("digits_run"), data, labels)


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory) -> Path:
    """600 points of 50 features (not a square image), no labels, no MM."""
    data, _ = default_digits()
    return _learn(tmp_path_factory.mktemp("unlabelled_run"), data[:600, :50], None, mm=False)


def _check_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        width, height = img.size
    assert 400 <= width <= 3000 and 250 <= height <= 3000, (path, img.size)
    assert 5_000 < path.stat().st_size < 2_000_000, (path, path.stat().st_size)


def _accuracy_cells(page: str) -> list[str]:
    table = re.search(r'<table id="rounds">.*?</table>', page, re.S)
    assert table, "the page should hold the table of rounds"
    return re.findall(r'<td class="acc">([^<]*)</td>', table.group(0))


def test_every_figure_is_a_png_the_page_shows(digits_run) -> None:
    report = make_report(digits_run)
    assert report.index == digits_run / "report" / "index.html"
    assert set(report.figures) == set(FIGURES)
    page = report.index.read_text()
    for name, png in report.figures.items():
        assert png.parent == report.index.parent and png.name == f"{name}.png"
        _check_png(png)
        assert f'<img src="{png.name}"' in page
    # started from Python: the embedded digits are recognised by their SHA-256, so originals are shown
    assert "scikit-learn digits" in page and "Originals above" in page
    assert report.notes == []


def test_accuracy_table_matches_run_json(digits_run) -> None:
    page = make_report(digits_run).index.read_text()
    manifest = json.loads((digits_run / "run.json").read_text())
    assert _accuracy_cells(page) == [f"{r['accuracy']:.4f}" for r in manifest["rounds"]]
    for r in manifest["rounds"]:
        for module, secs in r["seconds"].items():
            assert f"<th>{module} (s)</th>" in page
            assert f"<td>{secs:.2f}</td>" in page


def test_without_labels_label_figures_are_left_out_and_said_so(unlabelled_run, tmp_path) -> None:
    report = make_report(unlabelled_run)
    assert set(report.figures) == {"latent", "reconstructions", "loss"}
    for png in report.figures.values():
        _check_png(png)
    page = report.index.read_text()
    assert "No accuracy figure" in page and "No confusion matrix" in page and "no Markov model" in page
    assert "started from Python" in page  # so the originals are unknown: reconstructions only
    assert _accuracy_cells(page) == ["—", "—"]
    # labels given afterwards: accuracy is computed from each round's clusters
    _, labels = default_digits()
    np.save(tmp_path / "labels.npy", labels[:600])
    assert main(["report", str(unlabelled_run), "--labels", str(tmp_path / "labels.npy"), "--quiet"]) == 0
    page = report.index.read_text()
    assert {"accuracy.png", "confusion.png"} <= {p.name for p in report.index.parent.glob("*.png")}
    assert all(re.fullmatch(r"0\.\d{4}", c) for c in _accuracy_cells(page)) and "computed here" in page
    # the wrong data are never shown as originals
    other = make_report(unlabelled_run, data=np.zeros((600, 50)))
    assert any("differ from the data the run used" in n for n in other.notes)
    assert set(other.figures) == {"latent", "reconstructions", "loss"}  # stale figures of the run before are removed
    assert not (report.index.parent / "confusion.png").exists()


def test_run_report_flag_and_report_command(tmp_path, capsys) -> None:
    out = tmp_path / "cli_run"
    args = [
        "run",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--rounds",
        "1",
        "--sweeps",
        "5",
        "--latent-dim",
        "4",
        "--backend",
        "local",
        "--report",
    ]
    assert main(args) == 0
    assert f"report: {out / 'report' / 'index.html'}" in capsys.readouterr().out
    page = (out / "report" / "index.html").read_text()
    assert "Originals above" in page  # the data were reloaded from the recorded command line
    for name in FIGURES:
        _check_png(out / "report" / f"{name}.png")
    (out / "report" / "loss.png").unlink()
    assert main(["report", str(out)]) == 0
    assert "(6 figures)" in capsys.readouterr().out
    _check_png(out / "report" / "loss.png")


def test_what_is_not_a_run_is_refused_in_one_line(tmp_path, capsys, digits_run) -> None:
    with pytest.raises(CheckpointError, match="should be a serket-ray run directory, got nothing there"):
        make_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"should hold a serket-ray run \(a run.json\)"):
        make_report(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("serket-ray: error: ") and err.count("\n") == 1
    manifest = json.loads((digits_run / "run.json").read_text())
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "run.json").write_text(json.dumps({**manifest, "updates": [], "rounds": []}))
    with pytest.raises(CheckpointError, match="holds no completed update yet"):
        make_report(tmp_path / "started")
    with pytest.raises(DataError):
        make_report(digits_run, labels=np.zeros(5, dtype=int))


@pytest.mark.parametrize("n_clusters", [13, 7])
def test_more_or_fewer_clusters_than_labels(tmp_path, n_clusters) -> None:
    data, labels = default_digits()
    obs, vae, gmm, mm = Observation(data[:400]), VAE(4, itr=2, batch_size=400), GMM(n_clusters, itr=5), MarkovModel()
    vae.connect(obs)
    gmm.connect(vae)
    mm.connect(gmm)
    Orchestrator([vae], tmp_path, seed=0, backend="local").run(1)
    report = make_report(tmp_path, labels=labels[:400])
    assert set(report.figures) == set(FIGURES)
    for png in report.figures.values():
        _check_png(png)
