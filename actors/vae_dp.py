"""Data-parallel VAE training over shards of the points: the Ray-free core.

S workers each hold a contiguous shard ``[lo, hi)`` of the N points (their rows
of the data and of the GMM's prior means).  Every worker holds the same
networks, the same Adam state and the same torch generator state, so each epoch
every worker draws the *same* global permutation and noise as the one-worker
loop (:func:`actors.vae_core.train_epochs`) does.  For each global mini-batch a
worker takes the members it owns, computes the summed loss of those and its
gradient, and the gradients are summed over workers (one all-reduce of one flat
buffer per step); every worker then takes the same Adam step.  Because the loss
is a sum over points, the summed gradient is the one-worker batch's gradient:
S workers train the same networks as one, up to the order of float32 sums.
With one worker and an identity all-reduce the result is bit-identical to
:func:`actors.vae_core.train_epochs`.

The all-reduce is injected (``allreduce(flat)`` sums ``flat`` in place over the
workers), so the core is tested without a process group; the Ray worker group
(:mod:`orchestrator.vae_group`) passes ``torch.distributed.all_reduce`` over a
gloo group (NCCL where the workers hold GPUs).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import distributed as dist

from actors import vae_core
from actors.vae import VAEWorker
from messages.errors import ConfigError

log = logging.getLogger(__name__)

#: Sums a flat float32 tensor over the workers, in place.
AllReduce = Callable[[torch.Tensor], None]


def identity_allreduce(flat: torch.Tensor) -> None:
    """The all-reduce of one worker: nothing to add."""


class FlatGrads:
    """Every parameter's ``.grad`` as a view into one contiguous buffer.

    One all-reduce of :attr:`flat` then sums every gradient at once, with no
    copy in or out.  The views survive :class:`actors.vae_core.ManualStep`
    (which writes into existing ``.grad`` tensors) and ``zero_grad(set_to_none=False)``
    (autograd then accumulates into them).

    Parameters
    ----------
    params : list of torch.nn.Parameter
        All on one device and of one dtype.
    """

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        if not params:
            raise ValueError("FlatGrads needs at least one parameter, got none")
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(
                f"parameters should share one dtype and device, got dtypes {sorted(map(str, dtypes))}"
                f" and devices {sorted(map(str, devices))}"
            )
        self.params = params
        total = sum(p.numel() for p in params)
        self.flat = torch.zeros(total, dtype=params[0].dtype, device=params[0].device)
        offset = 0
        for p in params:
            p.grad = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def attached(self) -> bool:
        """Whether every parameter's ``.grad`` is still a view of :attr:`flat`."""
        return all(
            p.grad is not None and p.grad.untyped_storage().data_ptr() == self.flat.untyped_storage().data_ptr()
            for p in self.params
        )


def shard_positions(order: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Positions in the global permutation ``order`` whose points this shard owns, in order.

    Parameters
    ----------
    order : torch.Tensor, shape (N,), int64
        A permutation of 0..N-1.
    lo, hi : int
        The shard owns the points lo..hi-1.

    Returns
    -------
    torch.Tensor, shape (hi - lo,), int64
    """
    return torch.nonzero((order >= lo) & (order < hi), as_tuple=True)[0]


def batch_bounds(positions: torch.Tensor, n: int, batch_size: int) -> list[tuple[int, int]]:
    """Where each global mini-batch's members start and stop among this shard's positions.

    Global batch b covers positions ``[b * batch_size, min((b + 1) * batch_size, n))``
    of the permutation; its members here are ``positions[start:stop]``.

    Parameters
    ----------
    positions : torch.Tensor, shape (M,), sorted
    n : int
        Number of points over all shards.

    Returns
    -------
    list of (int, int), one per global batch (an empty range where the shard has no member)
    """
    edges = torch.arange(0, n + batch_size, batch_size).clamp_max_(n)
    cuts = torch.searchsorted(positions, edges).tolist()
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def train_epochs_sharded(
    net: vae_core.VAENet,
    optimizer: vae_core.FusedAdam | torch.optim.Optimizer,
    data: torch.Tensor,
    prior_mean: torch.Tensor,
    lo: int,
    n_total: int,
    epochs: int,
    batch_size: int,
    kl_weight: float,
    reconstruction: str,
    generator: torch.Generator,
    allreduce: AllReduce = identity_allreduce,
    on_epoch: Callable[[int, float], None] | None = None,
    step: str = "autograd",
    grads: FlatGrads | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """One shard's part of data-parallel training: the same epochs as :func:`actors.vae_core.train_epochs` on all N.

    Every worker must call this with identical networks, optimiser state and
    ``generator`` state, the same ``n_total``, ``epochs`` and ``batch_size``,
    and its own rows; the calls run in lockstep (one all-reduce per step, one
    per epoch for the loss).

    Parameters
    ----------
    data : torch.Tensor, shape (M, D)
        This shard's points lo..lo+M-1, on the training device.
    prior_mean : torch.Tensor, shape (M, d)
        Their prior means.
    lo : int
        Global index of this shard's first point.
    n_total : int
        N, the points over all shards.
    generator : torch.Generator
        CPU generator in the same state on every worker.
    allreduce : callable
        Sums a flat float32 tensor over the workers in place.
    step : {"autograd", "manual"}
        A resolved step (:func:`actors.vae_core.resolve_step`).
    grads : FlatGrads, optional
        The parameters' flat gradient buffer (made here when not given; pass one to keep it across calls).
    precision : {"fp32", "bf16"}
        A resolved precision; ``"bf16"`` runs the autograd step's forward pass under autocast and the
        manual step's matrix products in bf16.

    Returns
    -------
    numpy.ndarray, shape (epochs,)
        Mean loss per point of each epoch over all N points (the same on every worker).
    """
    m, latent_dim = prior_mean.shape
    if data.shape[0] != m:
        raise ValueError(f"data and prior_mean should have the same rows, got {data.shape[0]} and {m}")
    if not 0 <= lo and lo + m <= n_total:
        raise ValueError(f"the shard [{lo}, {lo + m}) should lie within the {n_total} points")
    if step not in ("manual", "autograd"):
        raise ValueError(f"step should be 'manual' or 'autograd' (resolved), got {step!r}")
    device = data.device
    params = [p for p in net.parameters() if p.requires_grad]
    if grads is None or not grads.attached():
        grads = FlatGrads(params)
    manual = (
        vae_core.ManualStep(net, min(batch_size, n_total), kl_weight, reconstruction, precision)
        if step == "manual"
        else None
    )
    losses = np.empty(epochs)
    total = torch.zeros(1, dtype=grads.flat.dtype, device=device)
    net.train()
    for epoch in range(epochs):
        # the same draws, in the same order, as the one-worker loop
        order = torch.randperm(n_total, generator=generator)
        noise_all = torch.randn(n_total, latent_dim, generator=generator)
        positions = shard_positions(order, lo, lo + m)
        mine = order.index_select(0, positions)
        local = (mine - lo).to(device)
        xs, ms = data.index_select(0, local), prior_mean.index_select(0, local)
        ns = noise_all.index_select(0, mine).to(device)
        total.zero_()
        for start, stop in batch_bounds(positions, n_total, batch_size):
            if stop == start:
                grads.flat.zero_()
            elif manual is not None:
                total.add_(manual(xs[start:stop], ms[start:stop], ns[start:stop]))
            else:
                optimizer.zero_grad(set_to_none=False)
                with vae_core.autocast(precision, device):
                    loss = vae_core.vae_loss(
                        net, xs[start:stop], ms[start:stop], ns[start:stop], kl_weight, reconstruction
                    )
                loss.backward()
                total.add_(loss.detach())
            allreduce(grads.flat)
            optimizer.step()
        allreduce(total)
        losses[epoch] = float(total) / n_total
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[epoch])
    return losses


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class VAEShardWorker(VAEWorker):
    """One of S data-parallel VAE workers: its rows of the points, the same networks as every other.

    Built like :class:`actors.vae.VAEWorker` (same config and seed on every
    shard, so every shard builds the same weights and draws the same
    permutations), plus its rank and its rows ``[lo, hi)`` of the ``n_total``
    points.  :meth:`join` makes the process group; :meth:`train` trains its part
    in lockstep with the others and encodes its own rows.

    Parameters
    ----------
    config, name, above, below, seed, encoder, decoder, num_threads
        As :class:`actors.vae.VAEWorker`.
    rank, world : int
        This shard's rank and the number of shards S.
    """

    def __init__(
        self,
        config: Any,
        name: str,
        above: str,
        below: str,
        seed: np.random.SeedSequence,
        encoder: torch.nn.Module | None,
        decoder: torch.nn.Module | None,
        num_threads: int | None,
        rank: int,
        world: int,
    ) -> None:
        super().__init__(config, name, above, below, seed, encoder, decoder, num_threads)
        if not 0 <= rank < world:
            raise ConfigError(f"rank should be in 0..{world - 1}, got {rank}")
        self.rank, self.world = int(rank), int(world)
        self._grads: FlatGrads | None = None
        self._grads_net: Any = None  # the networks self._grads belongs to
        self._rows: torch.Tensor | None = None
        self._lo = 0
        self._n_total = 0

    def host(self) -> str:
        """The address the other shards reach this one at (rank 0 hosts the rendezvous); the Ray
        actor (:class:`orchestrator.vae_group.VAEShardActor`) gives its node's address."""
        return "127.0.0.1"

    def rendezvous(self) -> tuple[str, int]:
        """(host, free port) for :meth:`join`, asked of rank 0."""
        host = self.host()
        return host, free_port(host if host != "localhost" else "127.0.0.1")

    def join(self, host: str, port: int, timeout_s: float = 120.0) -> int:
        """Join the S shards' process group (gloo on CPU, NCCL on CUDA); returns the group's size."""
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if dist.is_initialized():
            dist.destroy_process_group()
        dist.init_process_group(
            backend,
            init_method=f"tcp://{host}:{int(port)}",
            rank=self.rank,
            world_size=self.world,
            timeout=timedelta(seconds=timeout_s),
        )
        log.info(
            "%s shard %d of %d joined the %s group at %s:%d", self.name, self.rank, self.world, backend, host, port
        )
        return dist.get_world_size()

    def _allreduce(self, flat: torch.Tensor) -> None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)

    def load_rows(self, rows: np.ndarray, lo: int, n_total: int) -> int:
        """Keep this shard's rows (points lo..lo+M-1 of ``n_total``), converted and moved once; returns M."""
        if rows.ndim != 2:
            raise ConfigError(f"a shard's rows should be a 2-D array, got shape {rows.shape}")
        self._rows = torch.as_tensor(np.array(rows, dtype=np.float32), device=self.device)  # a writable copy
        self._lo, self._n_total = int(lo), int(n_total)
        return int(rows.shape[0])

    def train(self, round: int, prior_means: np.ndarray | None) -> dict[str, Any]:
        """Train ``epochs`` epochs over all shards' points and encode this shard's rows.

        Parameters
        ----------
        round : int
        prior_means : numpy.ndarray, shape (M, d), optional
            This shard's rows of the GMM's prior means (zeros before the first message).

        Returns
        -------
        dict
            ``z``, ``log_var`` (M, d), ``x_hat`` (M, D) float32, ``loss`` (epochs,), ``seconds``.
        """
        if self._rows is None:
            raise ConfigError(f"{self.name} shard {self.rank} should get its rows (load_rows) before it trains")
        x = self._rows
        start, mu = self._begin(round, x, prior_means)
        assert self.net is not None and self.optimizer is not None
        if self._grads is None or self._grads_net is not self.net or not self._grads.attached():
            self._grads = FlatGrads([p for p in self.net.parameters() if p.requires_grad])
            self._grads_net = self.net
        losses = train_epochs_sharded(
            self.net,
            self.optimizer,
            x,
            mu,
            self._lo,
            self._n_total,
            self.config.epochs,
            min(self.config.batch_size, self._n_total),
            self.config.kl_weight,
            self.config.reconstruction,
            self.generator,
            self._allreduce if self.world > 1 else identity_allreduce,
            self._epoch_done if self.rank == 0 else None,
            self.step or "autograd",
            self._grads,
            self.precision,
        )
        enc = vae_core.encode(self.net, x, self.config.reconstruction, self.config.send == "sample", self.generator)
        return {
            "z": enc.z,
            "log_var": enc.log_var,
            "x_hat": enc.x_hat.astype(np.float32),
            "loss": losses,
            "seconds": time.perf_counter() - start,
            "device": str(self.device),
            "precision": self.precision,
            "step": self.step,
        }

    def _input_dim(self) -> int | None:
        return None if self._rows is None else int(self._rows.shape[1])

    def pid(self) -> int:
        """This shard's process id."""
        import os

        return os.getpid()

    def leave(self) -> None:
        """Leave the process group (before the actor ends)."""
        if dist.is_initialized():
            dist.destroy_process_group()
