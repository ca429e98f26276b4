"""A whole run with the VAE as 2 data-parallel Ray actors (``{"vae": {"shards": 2}}``): it learns what the
one-actor VAE learns, and a shard killed mid-update is replaced and the run ends as an undisturbed one."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest

from actors import GMM, VAE, MarkovModel, Observation
from messages.errors import ConfigError
from orchestrator import Orchestrator

pytestmark = pytest.mark.ray

SHARDED = {"vae": {"shards": 2, "num_cpus": 0.5}, "gmm": {"num_cpus": 0.25}, "mm": {"num_cpus": 0.25}}
FILES = ("module002_gmm/class_learn.txt", "module003_mm/trans_prob_learn.txt", "module001_vae/z_learn.txt")


def _graph(images, labels, epochs=40):
    obs = Observation(images)
    vae = VAE(12, itr=epochs, batch_size=250)
    gmm = GMM(10, category=labels)
    mm = MarkovModel()
    vae.connect(obs)
    gmm.connect(vae)
    mm.connect(gmm)
    return [vae, gmm, mm]


@pytest.fixture(scope="module")
def runs(ray_session, mnist, tmp_path_factory):
    images, labels = mnist
    sub = slice(0, 1000)
    base = tmp_path_factory.mktemp("vae_shards")
    one = Orchestrator(_graph(images[sub], labels[sub]), base / "one", seed=3, threads=1, backend="local").run(2)
    orch = Orchestrator(_graph(images[sub], labels[sub]), base / "two", seed=3, threads=1, resources=SHARDED)
    two = orch.run(2)
    orch.close()
    return base, one, two, (images[sub], labels[sub])


def test_two_vae_shards_learn_what_one_learns(runs) -> None:
    base, one, two, _ = runs
    run = json.loads((base / "two" / "run.json").read_text())
    assert [u["attempts"] for u in run["updates"]] == [1] * 6
    # the same networks to float32 rounding of the gradient sums: the latents agree closely, the classes as well
    z1 = np.loadtxt(base / "one" / FILES[2])
    z2 = np.loadtxt(base / "two" / FILES[2])
    # On AVX2 kernels the largest difference was under 0.05; on AVX-512 ones the rounding of two 2-round runs
    # drifts further (largest 0.52, mean 0.073 on latents of std 1.7): every latent dimension still correlates > 0.99
    corr = [np.corrcoef(z1[:, k], z2[:, k])[0, 1] for k in range(z1.shape[1])]
    assert min(corr) > 0.99 and np.abs(z1 - z2).mean() < 0.1 * z1.std(), (min(corr), np.abs(z1 - z2).mean())
    assert abs(one.final_accuracy - two.final_accuracy) < 0.02 and two.final_accuracy > 0.9


def test_a_killed_vae_shard_is_replaced_and_the_run_ends_as_an_undisturbed_one(runs, tmp_path) -> None:
    base, _, _, (images, labels) = runs
    orch = Orchestrator(_graph(images, labels), tmp_path / "killed", seed=3, threads=1, resources=SHARDED)
    killed: list[int] = []

    def kill_a_shard_soon(record) -> None:
        if record.module == "module001_vae" and record.round == 0:
            worker = orch.session.workers[next(m for m in orch.session.workers if m.kind == "vae")]
            pids = orch.session.executor.get([worker.shard_pids.remote()], timeout=60)[0]
            killed.append(pids[1])
        if record.module == "module003_mm" and record.round == 0:  # the VAE's round 1 starts next
            threading.Timer(0.5, lambda: os.kill(killed[0], signal.SIGKILL)).start()

    orch.run(2, on_update=kill_a_shard_soon)
    orch.close()
    run = json.loads((tmp_path / "killed" / "run.json").read_text())
    vae_round1 = [u for u in run["updates"] if u["module"] == "module001_vae" and u["round"] == 1][0]
    assert vae_round1["attempts"] == 2
    for f in FILES:
        assert (tmp_path / "killed" / f).read_bytes() == (base / "two" / f).read_bytes(), f


def test_shards_need_ray_and_a_positive_count(mnist, tmp_path) -> None:
    images, labels = mnist
    with pytest.raises(ConfigError, match="needs the Ray backend"):
        Orchestrator(_graph(images[:300], labels[:300]), tmp_path / "a", backend="local", resources=SHARDED).run(1)
    with pytest.raises(ConfigError, match=r"resources\['vae'\]\['shards'\] should be a positive integer, got 0"):
        Orchestrator(_graph(images[:300], labels[:300]), tmp_path / "b", resources={"vae": {"shards": 0}}).run(1)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
