"""Recognition of novel data with a learned model (no training); no Ray."""

from __future__ import annotations

import json
import runpy
import textwrap

import numpy as np
import pytest

from actors import GMM, VAE, MarkovModel, Observation
from messages.errors import CheckpointError, DataError
from orchestrator import Orchestrator
from orchestrator.cli import main
from orchestrator.recog import recognise


@pytest.fixture(scope="module")
def learned(mnist, tmp_path_factory):
    """Learn on the first 2000 points of the tutorial's data (short settings)."""
    images, labels = mnist
    out = tmp_path_factory.mktemp("learned")
    obs, vae, gmm, mm = (
        Observation(images[:2000]),
        VAE(18, itr=25, batch_size=500),
        GMM(10, category=labels[:2000]),
        MarkovModel(),
    )
    vae.connect(obs)
    gmm.connect(vae)
    mm.connect(gmm)
    result = Orchestrator([vae], out, seed=0, backend="local").run(2)
    return out, result


def test_recognising_the_last_1000_points_is_as_good_as_learning(learned, mnist, tmp_path) -> None:
    model, result = learned
    images, labels = mnist
    res = recognise(model, images[2000:], tmp_path, labels=labels[2000:])
    # measured (seed 0, fp32): learning 0.8415, recognition of the 1000 held-out points 0.820 (0.710 without the
    # MM). Held-out points of the same digits score like the training ones: within 0.05, about 4 binomial
    # standard errors of 1000 points at 0.83.
    assert res.accuracy > 0.78 and abs(res.accuracy - result.final_accuracy) < 0.05
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0)
    alone = recognise(model, images[2000:], tmp_path / "alone", labels=labels[2000:], use_mm=False)
    assert res.accuracy > alone.accuracy + 0.05  # the learned transitions help recognition too
    for f in (
        "module001_vae/z_recog.txt",
        "module002_gmm/class_recog.txt",
        "module002_gmm/Pdz_recog.txt",
        "module002_gmm/acc_recog.txt",
        "module003_mm/msg_recog.txt",
    ):
        assert (tmp_path / f).is_file(), f
    # recognising the training points gives the learned classes back (same parameters, no training)
    again = recognise(model, images[:2000], tmp_path / "again", labels=labels[:2000])
    learned_classes = np.loadtxt(model / "module002_gmm" / "class_learn.txt", dtype=int)
    assert (again.classes == learned_classes).mean() > 0.98  # measured 0.991: sampling's average vs point estimate


def test_recognition_accuracy_uses_the_clusters_labels_learned_in_training(learned, mnist, tmp_path) -> None:
    from actors.scoring import accuracy

    model, _ = learned
    images, labels = mnist
    updates = json.loads((model / "run.json").read_text())["updates"]
    label_of = dict(next(u for u in reversed(updates) if u["module"] == "module002_gmm")["scalars"]["matching"])
    res = recognise(model, images[2000:], tmp_path / "a", labels=labels[2000:])
    assert res.accuracy == np.mean(
        [label_of.get(c) == y for c, y in zip(res.classes.tolist(), labels[2000:].tolist(), strict=True)]
    )
    assert json.loads((tmp_path / "a" / "recog.json").read_text())["matching"] == "training"
    # labels renamed on the new data: matching anew would score them as well, the training's matching does not
    renamed = (labels[2000:] + 1) % 10
    again = recognise(model, images[2000:], tmp_path / "b", labels=renamed)
    assert accuracy(again.classes, renamed) == accuracy(res.classes, labels[2000:]) > 0.78  # measured 0.829
    assert again.accuracy < 0.05  # measured 0.001
    # the training's matching can only score lower than the best matching on the recognised data itself
    assert res.accuracy <= accuracy(res.classes, labels[2000:])


def test_recog_cli_and_its_errors(learned, mnist, tmp_path, capsys) -> None:
    model, _ = learned
    images, labels = mnist
    np.save(tmp_path / "x.npy", images[2000:])
    np.save(tmp_path / "y.npy", labels[2000:])
    assert (
        main(
            [
                "recog",
                "--model",
                str(model),
                "--data",
                str(tmp_path / "x.npy"),
                "--labels",
                str(tmp_path / "y.npy"),
                "--out",
                str(tmp_path / "rec"),
            ]
        )
        == 0
    )
    assert "accuracy" in capsys.readouterr().out
    with pytest.raises(DataError, match="should have 784 features"):
        recognise(model, images[:10, :100], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="should hold a serket-ray run"):
        recognise(tmp_path / "nothing", images[:10], tmp_path / "bad2")


def test_serket_style_recog_mode(learned, mnist, tmp_path, monkeypatch) -> None:
    import shutil

    model, _ = learned
    images, labels = mnist
    shutil.copytree(model, tmp_path, dirs_exist_ok=True)
    np.save(tmp_path / "novel.npy", images[2000:])
    np.save(tmp_path / "novel_labels.npy", labels[2000:])
    script = textwrap.dedent("""
        import numpy as np
        from actors import Observation, VAE, GMM, MarkovModel
        obs = Observation(np.load("novel.npy"))
        vae1 = VAE(18, itr=25, batch_size=500, mode="recog")
        gmm1 = GMM(10, category=np.load("novel_labels.npy"), mode="recog")
        mm1 = MarkovModel(mode="recog")
        vae1.connect(obs); gmm1.connect(vae1); mm1.connect(gmm1)
        vae1.update(); gmm1.update(); mm1.update()
    """)
    (tmp_path / "recog.py").write_text(script)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "recog.py"))
    acc = float(np.loadtxt(tmp_path / "module002_gmm" / "acc_recog.txt"))
    # the Serket-style path is recognise() on the same model and data: the same accuracy, to the last bit
    assert acc == recognise(model, images[2000:], tmp_path / "direct", labels=labels[2000:]).accuracy > 0.78
