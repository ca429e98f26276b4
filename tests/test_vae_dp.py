"""Data-parallel VAE training (actors/vae_dp.py): one shard is the one-worker loop bit for bit; S shards
in lockstep (threads summing their gradients) train the same networks as one, to float32 rounding."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from actors import vae_core, vae_dp


def _net(seed: int = 0, dim: int = 20, latent: int = 3) -> tuple[vae_core.VAENet, torch.optim.Optimizer]:
    torch.manual_seed(seed)  # tests only: the library never seeds torch globally
    net = vae_core.VAENet(vae_core.Encoder(dim, latent, 16), vae_core.Decoder(dim, latent, 16))
    return net, vae_core.make_optimizer(net.parameters(), 1e-3)


def _data(n: int = 203, dim: int = 20, latent: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.random((n, dim)), dtype=torch.float32)
    m = torch.as_tensor(rng.normal(size=(n, latent)), dtype=torch.float32)
    return x, m


def _weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("step", ["manual", "autograd"])
def test_one_shard_is_the_one_worker_loop_bit_for_bit(step: str) -> None:
    x, m = _data()
    ref_net, ref_opt = _net()
    ref = vae_core.train_epochs(ref_net, ref_opt, x, m, 4, 50, 1.0, "bce", torch.Generator().manual_seed(7), step=step)
    net, opt = _net()
    got = vae_dp.train_epochs_sharded(
        net, opt, x, m, 0, x.shape[0], 4, 50, 1.0, "bce", torch.Generator().manual_seed(7), step=step
    )
    assert np.array_equal(ref, got)
    for a, b in zip(_weights(ref_net), _weights(net), strict=True):
        assert torch.equal(a, b)


def test_shard_batches_partition_every_global_batch() -> None:
    """Brute force: over the shards, the members of batch b are exactly the points at positions of batch b."""
    n, batch = 103, 25
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    cuts = [(0, 40), (40, 41), (41, 103)]
    for b, start in enumerate(range(0, n, batch)):
        want = sorted(order[start : start + batch].tolist())
        got = []
        for lo, hi in cuts:
            pos = vae_dp.shard_positions(order, lo, hi)
            a, z = vae_dp.batch_bounds(pos, n, batch)[b]
            got += order[pos[a:z]].tolist()
        assert sorted(got) == want


class _ThreadGroup:
    """S threads summing a tensor in place: every thread deposits, rank order is the sum order."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world)
        self.parts: list[torch.Tensor | None] = [None] * world

    def allreduce(self, rank: int) -> vae_dp.AllReduce:
        def reduce(flat: torch.Tensor) -> None:
            self.parts[rank] = flat.clone()
            self.barrier.wait()
            total = self.parts[0].clone()
            for part in self.parts[1:]:
                total += part
            self.barrier.wait()
            flat.copy_(total)

        return reduce


@pytest.mark.parametrize("step", ["manual", "autograd"])
def test_two_and_three_shards_train_the_one_worker_networks(step: str) -> None:
    x, m = _data()
    n = x.shape[0]
    ref_net, ref_opt = _net()
    ref = vae_core.train_epochs(ref_net, ref_opt, x, m, 5, 50, 1.0, "bce", torch.Generator().manual_seed(7), step=step)
    for cuts in ([(0, 100), (100, n)], [(0, 7), (7, 150), (150, n)]):
        group = _ThreadGroup(len(cuts))
        results: dict[int, tuple[np.ndarray, list[torch.Tensor]]] = {}
        nets = [_net() for _ in cuts]  # built here: torch's global seed is not for threads

        def work(rank: int, lo: int, hi: int, group: _ThreadGroup = group, results: dict = results, nets=nets) -> None:
            net, opt = nets[rank]
            losses = vae_dp.train_epochs_sharded(
                net, opt, x[lo:hi], m[lo:hi], lo, n, 5, 50, 1.0, "bce",
                torch.Generator().manual_seed(7), group.allreduce(rank), step=step,
            )  # fmt: skip
            results[rank] = (losses, _weights(net))

        assert all(torch.equal(a, b) for a, b in zip(_weights(nets[0][0]), _weights(nets[-1][0]), strict=True))

        threads = [threading.Thread(target=work, args=(r, lo, hi)) for r, (lo, hi) in enumerate(cuts)]
        torch.set_num_threads(1)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # every shard ends with the same networks (they took the same steps) ...
        for rank in range(1, len(cuts)):
            for a, b in zip(results[0][1], results[rank][1], strict=True):
                assert torch.equal(a, b)
        # ... and they are the one-worker loop's, to float32 rounding of the gradient sums
        np.testing.assert_allclose(results[0][0], ref, rtol=2e-5)
        for a, b in zip(results[0][1], _weights(ref_net), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
