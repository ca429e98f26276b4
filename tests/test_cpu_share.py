"""The VAE's thread governor: the policy, /proc/stat, a real busy process beside it, and results
that do not depend on the thread count it picks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actors import cpu_share, vae_core


@pytest.mark.parametrize(
    ("others", "current", "want"),
    [
        (0.0, 2, 2),
        (0.55, 2, 2),  # under TAKEN_AT: the CPU stays ours
        (0.7, 2, 1),
        (1.0, 2, 1),
        (1.9, 2, 1),  # never below one thread
        (0.5, 1, 1),  # hysteresis: not taken back until others use under 0.4
        (0.3, 1, 2),
    ],
)
def test_threads_for_two_cpus(others: float, current: int, want: int) -> None:
    assert cpu_share.threads_for(others, 2, 2, current) == want


def test_threads_for_many_cpus_leaves_the_busy_ones() -> None:
    assert cpu_share.threads_for(3.0, 16, 16, 16) == 13
    assert cpu_share.threads_for(3.0, 16, 8, 8) == 8  # capped by the run's threads
    assert cpu_share.threads_for(0.0, 16, 4, 1) == 4


def test_busy_seconds_reads_only_the_named_cpus(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  900 0 100 5000 50 0 0 0 0 0\n"
        "cpu0 300 10 40 2000 20 5 5 0 0 0\n"
        "cpu1 600 0 60 3000 30 0 0 20 0 0\n"
        "intr 12345\n"
    )
    ticks = __import__("os").sysconf("SC_CLK_TCK")
    assert cpu_share.busy_seconds([0], str(stat)) == pytest.approx((300 + 10 + 40 + 5 + 5) / ticks)
    assert cpu_share.busy_seconds([1], str(stat)) == pytest.approx((600 + 60 + 20) / ticks)
    assert cpu_share.busy_seconds([7], str(stat)) is None
    assert cpu_share.busy_seconds([0], str(tmp_path / "missing")) is None


def _settle(governor: cpu_share.ThreadGovernor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(cpu_share.WINDOW_S / 2)
        governor.step()


@pytest.mark.skipif(len(cpu_share.allowed_cpus()) != 2, reason="sized for a 2-CPU machine")
def test_a_real_busy_process_takes_a_thread() -> None:
    threads = {"n": 2}
    governor = cpu_share.ThreadGovernor(lambda k: threads.update(n=k), lambda: threads["n"], 2)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    try:
        time.sleep(0.3)
        governor.start()
        _settle(governor, 0.6)
        assert threads["n"] == 1, "a process spinning on one of two CPUs should leave torch one thread"
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _train(shape: tuple[int, int, int, int], switch_every: int | None) -> tuple[np.ndarray, bytes, bytes, bool]:
    n, d_in, d_lat, batch = shape
    rng = np.random.default_rng(0)
    x = torch.as_tensor((rng.random((n, d_in)) < 0.3).astype(np.float32))
    torch.manual_seed(0)
    net = vae_core.VAENet(vae_core.Encoder(d_in, d_lat), vae_core.Decoder(d_in, d_lat))
    opt = vae_core.make_optimizer(net.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(1)
    before = torch.get_num_threads()

    def on_epoch(epoch: int, loss: float) -> None:
        if switch_every:
            torch.set_num_threads(1 if (epoch // switch_every) % 2 else 2)

    try:
        torch.set_num_threads(2)
        sizes = sorted({batch, n % batch or batch})
        agree = vae_core.threads_agree(net, x, sizes, 1.0, "bce", "fp32", "manual", (2, 1))
        prior = torch.zeros(n, d_lat)
        losses = vae_core.train_epochs(net, opt, x, prior, 6, batch, 1.0, "bce", gen, on_epoch, "fp32", "manual")
        enc = vae_core.encode(net, x, "bce", False, torch.Generator().manual_seed(2))
    finally:
        torch.set_num_threads(before)
    weights = b"".join(p.detach().numpy().tobytes() for p in net.parameters())
    return losses, weights, enc.z.tobytes() + enc.x_hat.tobytes(), agree


@pytest.mark.parametrize("shape", [(3000, 784, 18, 500), (1797, 64, 18, 500), (600, 64, 6, 128)])
def test_the_check_predicts_whether_switching_threads_changes_results(shape: tuple[int, int, int, int]) -> None:
    """Where threads_agree holds, an update that switches 2 -> 1 -> 2 threads ends at the same bits
    (losses, weights, latents, reconstructions); where it does not, the governor is kept off."""
    steady, switched = _train(shape, None), _train(shape, 2)
    same = steady[1] == switched[1] and steady[2] == switched[2] and np.array_equal(steady[0], switched[0])
    assert steady[3] == switched[3]
    if steady[3]:
        assert same
    else:
        assert not same, "the check refused a shape whose results did not change"
