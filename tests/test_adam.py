"""actors.adam.FusedAdam: torch.optim.Adam(fused=True)'s bits without torch.optim, and no torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actors import vae_core
from actors.adam import FusedAdam, fused_adam_supported

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not fused_adam_supported([torch.zeros(1)]), reason="this torch has no CPU fused Adam kernel"
)


def _net(seed: int) -> vae_core.VAENet:
    torch.manual_seed(seed)
    return vae_core.VAENet(vae_core.Encoder(30, 4, 16), vae_core.Decoder(30, 4, 16))


def _train(net: vae_core.VAENet, opt: object, steps: int, seed: int) -> list[float]:
    """``steps`` autograd steps of the VAE loss on seeded data; the losses."""
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.rand(20, 30, generator=g)
        eps = torch.randn(20, 4, generator=g)
        loss = vae_core.vae_loss(net, x, torch.zeros(20, 4), eps, 1.0, "bce")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _same(a: vae_core.VAENet, b: vae_core.VAENet) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_updates_equal_torch_fused_adam_bit_for_bit() -> None:
    ours, theirs = _net(3), _net(3)
    opt_ours = FusedAdam(ours.parameters(), lr=1e-3)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)
    assert _train(ours, opt_ours, 40, 7) == _train(theirs, opt_theirs, 40, 7)
    assert _same(ours, theirs)
    mine, torchs = opt_ours.state_dict(), opt_theirs.state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    for i, s in torchs["state"].items():
        assert all(torch.equal(s[k], mine["state"][i][k]) and s[k].dtype == mine["state"][i][k].dtype for k in s)


def test_state_dicts_load_across_both_ways_and_training_continues_identically() -> None:
    a, b, c = _net(1), _net(1), _net(1)
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-3, fused=True)
    _train(a, opt_a, 15, 2)
    # torch -> ours: b takes a's weights and torch's optimiser state, then both go on
    b.load_state_dict(a.state_dict())
    opt_b = FusedAdam(b.parameters(), lr=5.0)  # lr comes from the state
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    # ours -> torch: c takes b's weights and our state
    c.load_state_dict(b.state_dict())
    opt_c = torch.optim.Adam(c.parameters(), lr=1e-3, fused=True)
    opt_c.load_state_dict(copy.deepcopy(opt_b.state_dict()))  # torch's shares tensors
    assert _train(a, opt_a, 10, 9) == _train(b, opt_b, 10, 9) == _train(c, opt_c, 10, 9)
    assert _same(a, b) and _same(b, c)


def test_zero_grad_keeps_zeroed_buffers_and_step_skips_params_without_grad() -> None:
    w, v = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = FusedAdam([w, v], lr=0.1)
    w.grad = torch.full((3,), 2.0)
    opt.step()
    assert torch.equal(v, torch.ones(2)) and not torch.equal(w, torch.ones(3))
    assert opt.state_dict()["state"].keys() == {0}
    buf = w.grad
    opt.zero_grad(set_to_none=False)
    assert w.grad is buf and torch.equal(buf, torch.zeros(3))
    opt.zero_grad()
    assert w.grad is None


def test_a_state_for_other_parameters_is_refused_with_what_differs() -> None:
    net = _net(0)
    opt = FusedAdam(net.parameters())
    _train(net, opt, 1, 0)
    other = FusedAdam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match=r"one group of 1 parameters, got \[\d+\]"):
        other.load_state_dict(opt.state_dict())
    shapes = FusedAdam([torch.nn.Parameter(torch.zeros(5)) for _ in net.parameters()])
    with pytest.raises(ValueError, match=r"exp_avg of parameter 0 should have shape \(5,\), got \(16, 30\)"):
        shapes.load_state_dict(opt.state_dict())
    decayed = torch.optim.Adam(net.parameters(), weight_decay=0.1, fused=True).state_dict()
    with pytest.raises(ValueError, match="weight_decay=0, got 0.1"):
        opt.load_state_dict(decayed)


def test_a_vae_update_in_a_fresh_process_never_imports_dynamo() -> None:
    code = """
import sys
import numpy as np
from actors.config import VAEConfig
from actors.vae import VAEWorker
from messages import ObservationData
w = VAEWorker(VAEConfig(epochs=3, batch_size=50), "vae", "gmm", "obs", np.random.SeedSequence(0))
data = np.random.default_rng(0).random((120, 30))
w.update(0, ObservationData(sender="obs", receiver="vae", round=0, data=data))
print(type(w.optimizer).__name__, "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["FusedAdam", "False"]
