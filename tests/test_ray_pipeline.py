"""The whole graph on Ray: files, accuracy, determinism, the tutorial's script and the CLI."""

from __future__ import annotations

import json
import runpy
import textwrap

import numpy as np
import pytest

from actors import GMM, VAE, MarkovModel, Observation
from orchestrator import Orchestrator
from orchestrator.checkpoint import read_message, read_table, table_arrays

pytestmark = pytest.mark.ray


def _graph(images, labels, epochs=20):
    obs = Observation(images)
    vae = VAE(18, itr=epochs, batch_size=500)
    gmm = GMM(10, category=labels)
    mm = MarkovModel()
    vae.connect(obs)
    gmm.connect(vae)
    mm.connect(gmm)
    return vae, gmm, mm


@pytest.fixture(scope="module")
def ray_run(ray_session, mnist, tmp_path_factory):
    images, labels = mnist
    out = tmp_path_factory.mktemp("ray_run")
    orch = Orchestrator(list(_graph(images, labels)), out, seed=0, progress_interval=0.1)
    seen: list[tuple[str, dict]] = []
    result = orch.run(2, on_progress=lambda name, info: seen.append((name, info)))
    orch.close()
    return out, result, seen


def test_the_vae_actor_reports_its_epochs_while_it_trains(ray_run) -> None:
    seen = ray_run[2]
    assert {name for name, _ in seen} == {"module001_vae"}
    for rnd in (0, 1):
        epochs = [info["epoch"] for _, info in seen if info["round"] == rnd]
        assert epochs == sorted(epochs) and epochs[-1] == 20  # polled while training, then once when done
        assert any(0 < e < 20 for e in epochs), epochs  # at least one poll caught it mid-training
    last = [info for _, info in seen if info["epoch"] == 20][-1]
    assert last["loss"] > 0 and last["seconds"] > 0 and last["epochs"] == 20


def test_two_rounds_on_ray_write_every_file_and_classify_well(ray_run, mnist) -> None:
    out, result, _ = ray_run
    _, labels = mnist
    assert len(result.accuracy) == 2
    # measured 0.9977 then 0.993 (seed 0, bf16 VAE on this CI's CPU), since the search fits its best candidate longer
    # when none gains (chain_extend_iterations) and so repairs the mixture in the first round; before, 0.7777 then
    # 0.9883 (fp32), the second round gaining from the MM's message. 0.95 and 0.7 are margins for other arithmetic
    # and paths (the first round's repair depends on the moves found), not a spread over seeds.
    assert result.final_accuracy > 0.95 and min(result.accuracy) > 0.7
    for module, files in {
        "module001_vae": [
            "latents.arrow",
            "reconstruction.arrow",
            "report.arrow",
            "state.arrow",
            "weights.pt",
            "loss.txt",
            "z_learn.txt",
        ],
        "module002_gmm": [
            "posteriors.arrow",
            "prior_means.arrow",
            "class_learn.txt",
            "acc_learn.txt",
            "Pdz_learn.txt",
            "mu_learn.txt",
        ],
        "module003_mm": ["class_prior.arrow", "msg_learn.txt", "trans_prob_learn.txt"],
    }.items():
        for r in ("000", "001"):
            for f in files:
                assert (out / module / r / f).is_file(), f"{module}/{r}/{f} missing"
        for f in (f for f in files if f.endswith(".txt")):
            assert (out / module / f).read_bytes() == (out / module / "001" / f).read_bytes()
    classes = np.loadtxt(out / "module002_gmm" / "class_learn.txt", dtype=int)
    acc = float(np.loadtxt(out / "module002_gmm" / "acc_learn.txt"))
    assert acc == pytest.approx(result.final_accuracy)
    post = read_message(out / "module002_gmm" / "001" / "posteriors.arrow")
    np.testing.assert_array_equal(np.argmax(post.probs, 1), classes)
    np.testing.assert_allclose(post.probs.sum(1), 1.0)
    assert post.sender == "module002_gmm" and post.receiver == "module003_mm" and post.round == 1
    trans = np.loadtxt(out / "module003_mm" / "trans_prob_learn.txt")
    np.testing.assert_allclose(trans.sum(1), 1.0)
    report, meta = table_arrays(read_table(out / "module001_vae" / "001" / "report.arrow"))
    assert report["loss"].shape == (20,) and meta["module"] == "module001_vae" and meta["round"] == 1
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 0 and len(run["rounds"]) == 2
    assert run["rounds"][1]["accuracy"] == pytest.approx(acc)
    assert run["modules"]["module001_vae"]["node_id"]
    assert not list(out.rglob("*.tmp-*"))


def test_ray_run_equals_in_process_run_with_same_seed(ray_run, mnist, tmp_path) -> None:
    out, _, _ = ray_run
    images, labels = mnist
    Orchestrator(list(_graph(images, labels)), tmp_path, seed=0, backend="local").run(2)
    for f in ("module002_gmm/class_learn.txt", "module003_mm/trans_prob_learn.txt", "module001_vae/z_learn.txt"):
        assert (tmp_path / f).read_bytes() == (out / f).read_bytes(), f


TUTORIAL = """
import numpy as np
from actors import Observation, VAE, GMM, MarkovModel

obs = Observation(np.loadtxt("data.txt"))
data_category = np.loadtxt("category.txt")

vae1 = VAE(18, itr={epochs}, batch_size=500)
gmm1 = GMM(10, category=data_category)
mm1 = MarkovModel()

vae1.connect(obs)
gmm1.connect(vae1)
mm1.connect(gmm1)

for i in range(2):
    vae1.update()
    gmm1.update()
    mm1.update()
"""


def test_tutorial_script_runs_with_only_its_imports_changed(ray_session, mnist, tmp_path, monkeypatch) -> None:
    images, labels = mnist
    sub = slice(0, 1000)
    np.savetxt(tmp_path / "data.txt", images[sub])
    np.savetxt(tmp_path / "category.txt", labels[sub])
    (tmp_path / "main.py").write_text(textwrap.dedent(TUTORIAL.format(epochs=40)))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "main.py"), run_name="__main__")
    for d in ("module001_vae", "module002_gmm", "module003_mm"):
        assert (tmp_path / d / "001").is_dir()
    assert 0.3 < float(np.loadtxt(tmp_path / "module002_gmm" / "acc_learn.txt")) <= 1.0
    assert len(np.loadtxt(tmp_path / "module002_gmm" / "class_learn.txt")) == 1000


def test_cli_runs_on_the_embedded_default(ray_session, tmp_path, capsys) -> None:
    from orchestrator.cli import main

    out = tmp_path / "cli"
    status = main(["run", "--out", str(out), "--rounds", "2", "--epochs", "20", "--json"])
    assert status == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert len(summary["accuracy"]) == 2 and summary["final_accuracy"] > 0.5
    assert any("round 2/2" in line and "accuracy" in line for line in lines)
    assert (out / "module002_gmm" / "acc_learn.txt").is_file()
    # a second run into the same directory is refused without --overwrite, and changes nothing
    before = (out / "run.json").read_bytes()
    assert main(["run", "--out", str(out), "--rounds", "1", "--epochs", "1"]) == 2
    assert "already holds an earlier run" in capsys.readouterr().err
    assert (out / "run.json").read_bytes() == before


def test_a_killed_actor_is_restarted_and_the_run_completes_identically(ray_session, mnist, tmp_path) -> None:
    import os
    import signal
    import threading

    images, labels = mnist
    sub = slice(0, 1000)
    ref = tmp_path / "ref"
    Orchestrator(list(_graph(images[sub], labels[sub], epochs=60)), ref, seed=3, backend="local").run(2)

    out = tmp_path / "killed"
    orch = Orchestrator(list(_graph(images[sub], labels[sub], epochs=60)), out, seed=3)
    killed: list[int] = []

    def kill_vae_soon(record) -> None:
        if record.module == "module003_mm" and record.round == 0:  # the VAE's round 1 starts next
            pid = orch.session.placement["module001_vae"]["pid"]

            def kill() -> None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

            threading.Timer(0.3, kill).start()

    result = orch.run(2, on_update=kill_vae_soon)
    orch.close()
    assert killed, "the fault was not injected"
    run = json.loads((out / "run.json").read_text())
    vae_round1 = [u for u in run["updates"] if u["module"] == "module001_vae" and u["round"] == 1][0]
    assert vae_round1["attempts"] == 2
    assert run["modules"]["module001_vae"]["pid"] != killed[0]
    assert len(result.accuracy) == 2
    for f in (
        "module002_gmm/class_learn.txt",
        "module003_mm/trans_prob_learn.txt",
        "module001_vae/z_learn.txt",
        "module001_vae/001/weights.pt",
    ):
        assert (out / f).read_bytes() == (ref / f).read_bytes(), f
