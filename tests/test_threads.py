"""Same results wherever the run goes: the VAE's torch thread count is part of the run's
configuration (not the CPUs its actor got), and an update leaves torch's global generators alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch
from cli_runs import command, env, small_data, snapshot
from conftest import digits_graph

from actors import vae_core
from actors.config import VAEConfig
from actors.vae import VAEWorker
from messages import ObservationData
from orchestrator import Orchestrator
from orchestrator.cli import main


@pytest.mark.ray
def test_one_seed_gives_the_same_bytes_on_placements_with_different_cpu_counts(ray_session, tmp_path) -> None:
    runs = {}
    for label, backend, vae_cpus in (
        ("half", "ray", 0.5),
        ("one-and-a-half", "ray", 1.5),
        ("in-process", "local", None),
    ):
        out = tmp_path / label
        resources = (
            None
            if vae_cpus is None
            else {"vae": {"num_cpus": vae_cpus}, "gmm": {"num_cpus": 0.25}, "mm": {"num_cpus": 0.25}}
        )
        orch = Orchestrator(
            digits_graph(300, epochs=5, batch_size=100, sweeps=10), out, seed=3, backend=backend, resources=resources
        )
        try:
            orch.run(2)
        finally:
            orch.close()
        manifest = json.loads((out / "run.json").read_text())
        assert manifest["threads"] == 2
        if vae_cpus is not None:
            assert manifest["modules"]["module001_vae"]["resources"]["CPU"] == vae_cpus  # the placements do differ
        runs[label] = snapshot(out)
    assert runs["half"] == runs["one-and-a-half"] == runs["in-process"]


TINY = [
    "--rounds",
    "3",
    "--latent-dim",
    "6",
    "--epochs",
    "8",
    "--batch-size",
    "400",
    "--sweeps",
    "10",
    "--backend",
    "local",
    "--quiet",
]


def test_resume_reuses_the_recorded_thread_count(tmp_path, caplog) -> None:
    data_args = small_data(tmp_path)
    reference = tmp_path / "reference"
    assert main(["run", *data_args, *TINY, "--threads", "2", "--out", str(reference)]) == 0
    assert json.loads((reference / "run.json").read_text())["threads"] == 2
    out = tmp_path / "run"
    killed = subprocess.run(
        command("run", *data_args, *TINY, "--threads", "2", "--out", str(out)),
        env=env(SERKET_RAY_FAULT="after-copy:4"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    torch.set_num_threads(1)
    assert main(["resume", str(out), "--quiet"]) == 0  # no --threads: the recorded 2
    assert torch.get_num_threads() == 2  # the in-process worker was given 2
    assert snapshot(out) == snapshot(reference)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["threads"] == 2
    # overridable, with a warning that the rest of the run rounds differently
    (out / "run.json").write_text(json.dumps({**manifest, "updates": manifest["updates"][:4]}))
    with caplog.at_level("WARNING"):
        assert main(["resume", str(out), "--threads", "1", "--quiet"]) == 0
    assert "threads: recorded 2, given 1" in caplog.text
    assert json.loads((out / "run.json").read_text())["threads"] == 1
    torch.set_num_threads(os.cpu_count() or 1)


def test_an_update_leaves_torchs_global_generators_alone(monkeypatch) -> None:
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    torch.manual_seed(1234)
    cpu_before = torch.get_rng_state()
    cuda_before = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    reseeded.clear()  # torch.manual_seed above seeds CUDA too: only the update's calls count
    images = np.random.default_rng(0).random((64, 20))
    worker = VAEWorker(
        VAEConfig(latent_dim=3, epochs=2, batch_size=32, hidden=16),
        "vae",
        "gmm",
        "obs",
        np.random.SeedSequence(5),
        num_threads=1,
    )
    worker.update(0, ObservationData(sender="obs", receiver="vae", round=0, data=images))
    assert reseeded == []  # no reseed of torch's CUDA generators
    assert torch.equal(torch.get_rng_state(), cpu_before)
    if cuda_before is not None:
        assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), cuda_before, strict=True))


def test_the_weights_are_those_of_torch_manual_seed_from_the_module_stream() -> None:
    """Drawn from the module's own generator, the initial weights equal the old global-seed ones (results unchanged)."""
    worker = VAEWorker(
        VAEConfig(latent_dim=4, epochs=1, hidden=32), "vae", "gmm", "obs", np.random.SeedSequence(0), num_threads=1
    )
    worker._build_networks(20, torch_seed=987)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(987)
        enc, dec = vae_core.Encoder(20, 4, 32), vae_core.Decoder(20, 4, 32)
    ours = {**worker.net.encoder.state_dict(), **{f"d.{k}": v for k, v in worker.net.decoder.state_dict().items()}}
    theirs = {**enc.state_dict(), **{f"d.{k}": v for k, v in dec.state_dict().items()}}
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
