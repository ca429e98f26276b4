"""Ray-free numerical core of the VAE: networks, loss and a training loop.

The loss of one batch is the original's: reconstruction (BCE or MSE summed over
pixels) plus ``kl_weight`` times KL(q(z|x) || N(m, I)), where m is each point's
prior mean sent by the GMM (zeros before the first message), summed over the
batch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from actors.adam import FusedAdam, fused_adam_supported

log = logging.getLogger(__name__)

#: Values of ``VAEConfig.precision``.
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")

#: Smallest normal float32: sigmoid(-o) is clamped to it, so log() stays finite for logits o > 87.
_TINY = float(torch.finfo(torch.float32).tiny)

#: Values of ``VAEConfig.step``.
STEPS: tuple[str, ...] = ("auto", "manual", "autograd")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).  CPU: AMX tiles or
    AVX512-BF16 instructions, as torch reports them; on other CPUs (e.g. AVX2 only)
    oneDNN emulates bfloat16 and trains several times slower than float32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision the VAE trains in: ``"bf16"`` or ``"fp32"``.

    ``"auto"`` is ``"bf16"`` where :func:`native_bf16` holds for ``device`` and
    ``"fp32"`` elsewhere, so the choice (and with it the exact results) depends on
    the machine; the resolved value is recorded with each update.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision should be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Mixed precision for the training step: bfloat16 autocast (matrix products in
    bf16, accumulating in fp32; losses, weights and Adam's state stay fp32), or nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Encoder(nn.Module):
    """The tutorial's encoder: D -> hidden ReLU -> (mean, log-variance) of size ``latent_dim``."""

    def __init__(self, input_dim: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden)
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map x (B, D) to the mean and log-variance (B, latent_dim) of q(z|x)."""
        h = F.relu(self.hidden(x))
        return self.mean(h), self.log_var(h)


class Decoder(nn.Module):
    """The tutorial's decoder: latent -> hidden ReLU -> D logits (sigmoid gives pixel means)."""

    def __init__(self, input_dim: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Linear(latent_dim, hidden)
        self.out = nn.Linear(hidden, input_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map z (B, latent_dim) to logits (B, D)."""
        return self.out(F.relu(self.hidden(z)))


class VAENet(nn.Module):
    """Encoder plus decoder.  A user's encoder must return ``(mean, log_var)``; a user's
    decoder returns logits for BCE or values for MSE."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


def vae_loss(
    net: VAENet,
    x: torch.Tensor,
    prior_mean: torch.Tensor,
    noise: torch.Tensor,
    kl_weight: float,
    reconstruction: str,
) -> torch.Tensor:
    """Negative ELBO of a batch, summed over points.

    Parameters
    ----------
    x : torch.Tensor, shape (B, D)
    prior_mean : torch.Tensor, shape (B, d)
    noise : torch.Tensor, shape (B, d)
        Standard normal draws for the reparameterisation.
    """
    mean, log_var = net.encoder(x)
    mean, log_var = mean.float(), log_var.float()  # no-ops in fp32; the loss is fp32 under autocast too
    z = mean + torch.exp(0.5 * log_var) * noise
    out = net.decoder(z).float()
    # Summed per row, then over rows: the same bits for any torch thread count (a whole-tensor
    # sum splits across threads); the gradient is the same either way.
    if reconstruction == "bce":
        rec = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1).sum()
    else:
        rec = F.mse_loss(out, x, reduction="none").sum(1).sum()
    kl = 0.5 * torch.sum(torch.exp(log_var) + (mean - prior_mean) ** 2 - 1.0 - log_var)
    return rec + kl_weight * kl


def is_default_architecture(net: VAENet) -> bool:
    """Whether ``net`` is the default :class:`Encoder` plus :class:`Decoder` (exactly those
    classes, every layer an ``nn.Linear`` with a bias): the networks :class:`ManualStep` knows."""
    enc, dec = net.encoder, net.decoder
    if type(enc) is not Encoder or type(dec) is not Decoder:
        return False
    layers = (enc.hidden, enc.mean, enc.log_var, dec.hidden, dec.out)
    return all(type(m) is nn.Linear and m.bias is not None for m in layers)


def resolve_step(step: str, net: VAENet, precision: str) -> str:
    """The training step the VAE uses: ``"manual"`` or ``"autograd"``.

    ``"auto"`` is ``"manual"`` where ``net`` is the default architecture
    (:func:`is_default_architecture`) and the resolved ``precision`` is ``"fp32"``
    or ``"bf16"`` (:class:`ManualStep` has both), ``"autograd"`` elsewhere.
    ``"manual"`` where it does not apply is an error.
    """
    if step not in STEPS:
        raise ValueError(f"step should be one of {STEPS}, got {step!r}")
    fits = is_default_architecture(net) and precision in ("fp32", "bf16")
    if step == "auto":
        return "manual" if fits else "autograd"
    if step == "manual" and not fits:
        raise ValueError(
            "step='manual' needs the default encoder and decoder in fp32 or bf16, got "
            f"{type(net.encoder).__name__}/{type(net.decoder).__name__} in {precision}"
        )
    return step


class ManualStep:
    """Hand-written forward and backward pass of the default VAE: no autograd graph.

    For the default :class:`Encoder` and :class:`Decoder` (x -> h = relu(x W1' + b1)
    -> mean, log_var -> z = mean + exp(log_var / 2) eps -> g = relu(z W2' + b2) ->
    logits o = g W3' + b3), one call computes the loss :func:`vae_loss` gives and
    writes its exact gradient into every parameter's ``.grad`` (overwritten, not
    accumulated), using buffers allocated once, matrix products written in place
    (``out=``) and the closed forms dL/do = sigmoid(o) - x (BCE with logits) or
    2 (o - x) (MSE), dKL/dmean = mean - m, dKL/dlog_var = (exp(log_var) - 1) / 2.
    Then ``optimizer.step()`` as usual; do not call ``zero_grad`` (with
    ``set_to_none`` it drops the buffers, which the next call then allocates again).

    BCE's value is taken as sum(-log sigmoid(-o) - o x), the same sum as
    ``binary_cross_entropy_with_logits`` with one sigmoid and one log instead of
    softplus plus sigmoid (softplus costs as much as a matrix product here);
    sigmoid(-o) is clamped at the smallest normal float32, so a logit above ~87
    adds ~87 to the reported loss instead of o (its gradient is still exact).

    The results agree with autograd's to float32 rounding (sums taken in another
    order), not bit for bit; they are deterministic for a seed.  With ``precision``
    ``"bf16"`` every matrix product runs in bfloat16 as under autocast (see
    :meth:`_low`): ~20 % less time per epoch than the autocast step on this
    project's AMX CPU (tutorial shapes), the same loss, weight gradients equal to
    autocast's to ~1e-6 of their size and bias gradients summed in fp32.

    Parameters
    ----------
    net : VAENet
        The default architecture (:func:`is_default_architecture`), float32.
    batch_size : int
        The largest batch a call will get.
    kl_weight : float
    reconstruction : {"bce", "mse"}
    precision : {"fp32", "bf16"}
        A resolved precision; the networks' parameters stay float32 in both.
    """

    def __init__(
        self, net: VAENet, batch_size: int, kl_weight: float, reconstruction: str, precision: str = "fp32"
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision should be 'fp32' or 'bf16' (resolved), got {precision!r}")
        if not is_default_architecture(net):
            raise ValueError("ManualStep needs the default Encoder and Decoder")
        if reconstruction not in ("bce", "mse"):
            raise ValueError(f"reconstruction should be 'bce' or 'mse', got {reconstruction!r}")
        enc, dec = net.encoder, net.decoder
        self.layers = (enc.hidden, enc.mean, enc.log_var, dec.hidden, dec.out)
        self.kl_weight = float(kl_weight)
        self.bce = reconstruction == "bce"
        w1 = enc.hidden.weight
        hidden, input_dim = w1.shape
        latent = enc.mean.weight.shape[0]
        hidden2 = dec.hidden.weight.shape[0]

        self.low = precision == "bf16"
        # the hidden layers' activations and gradients are the products' results: bf16 in the bf16 step
        act = torch.bfloat16 if self.low else w1.dtype

        def buf(*shape: int, dtype: torch.dtype = w1.dtype) -> torch.Tensor:
            return torch.empty(shape, dtype=dtype, device=w1.device)

        b = batch_size
        self._a1, self._dh = buf(b, hidden, dtype=act), buf(b, hidden, dtype=act)
        self._mean, self._log_var, self._std, self._z = buf(b, latent), buf(b, latent), buf(b, latent), buf(b, latent)
        self._dz, self._dmean, self._dlog_var, self._t = buf(b, latent), buf(b, latent), buf(b, latent), buf(b, latent)
        self._a2, self._dg = buf(b, hidden2, dtype=act), buf(b, hidden2, dtype=act)
        self._out, self._rec = buf(b, input_dim), buf(b, input_dim)
        # the bf16 step's logits land here before they are widened into ``_out``
        self._o16 = buf(b, input_dim, dtype=torch.bfloat16) if self.low else None
        self._ensure_grads()

    def _ensure_grads(self) -> None:
        """Allocate each parameter's ``.grad`` where there is none (new, or after ``zero_grad(set_to_none=True)``)."""
        for layer in self.layers:
            for p in (layer.weight, layer.bias):
                if p.grad is None:
                    p.grad = torch.zeros_like(p)

    def _loss(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        rec: torch.Tensor,
        mean: torch.Tensor,
        log_var: torch.Tensor,
        std: torch.Tensor,
        prior_mean: torch.Tensor,
        dmean: torch.Tensor,
        t: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's loss, ``r = -dL/do`` (in ``out`` or ``rec``) and ``std^2`` (in ``t``); ``dmean`` = mean - m.

        ``out`` (B, D, fp32) holds -o for BCE, o for MSE; it and ``rec`` are overwritten.
        """
        # reconstruction and r = -dL/do, whose sign the products after it take back
        if self.bce:
            # sigmoid(-o) = 1 - sigmoid(o); BCE(o, x) = -log sigmoid(-o) - o x
            # (sums per row, then over rows: the same bits for any thread count, as vae_loss)
            neg = out
            rows = torch.mul(neg, x, out=rec).sum(1)  # -o . x per row
            sig = torch.sigmoid(neg, out=neg).clamp_min_(_TINY)
            loss = rows.sub_(torch.log(sig, out=rec).sum(1)).sum()
            r = sig.add_(x).sub_(1.0)  # x - sigmoid(o)
        else:
            r = torch.sub(x, out, out=rec)
            loss = torch.mul(r, r, out=out).sum(1).sum()  # o is spent: its buffer takes r * r
            r.mul_(2.0)
        # KL(N(mean, std^2) || N(m, 1)) summed: 0.5 (sum std^2 + sum (mean - m)^2 - n d - sum log_var)
        torch.sub(mean, prior_mean, out=dmean)  # mean - m, reused in the gradient
        sq = torch.mul(std, std, out=t)  # exp(log_var)
        kl = sq.sum().add_(torch.dot(dmean.view(-1), dmean.view(-1))).sub_(log_var.sum()).sub_(float(dmean.numel()))
        loss.add_(kl, alpha=0.5 * self.kl_weight)
        return loss, r, sq

    def _latent_gradients(
        self,
        dz: torch.Tensor,
        noise: torch.Tensor,
        std: torch.Tensor,
        sq: torch.Tensor,
        dmean: torch.Tensor,
        dlog_var: torch.Tensor,
    ) -> None:
        """dL/dmean = dz + w (mean - m) into ``dmean`` (which holds mean - m); dL/dlog_var =
        0.5 (dz eps std + w (std^2 - 1)) into ``dlog_var``."""
        w = self.kl_weight
        dmean.mul_(w).add_(dz)
        torch.mul(dz, noise, out=dlog_var).mul_(std).add_(sq, alpha=w).sub_(w).mul_(0.5)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, prior_mean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Loss of the batch (0-dim tensor, as :func:`vae_loss`); its gradient goes to each ``.grad``.

        Parameters
        ----------
        x : torch.Tensor, shape (B, D), B <= batch_size, rows contiguous
        prior_mean : torch.Tensor, shape (B, d)
        noise : torch.Tensor, shape (B, d)
        """
        self._ensure_grads()
        if self.low:
            return self._low(x, prior_mean, noise)
        (l1, lm, lv, l2, l3) = self.layers
        n = x.shape[0]
        a1, dh = self._a1[:n], self._dh[:n]
        mean, log_var, std, z = self._mean[:n], self._log_var[:n], self._std[:n], self._z[:n]
        dz, dmean, dlog_var, t = self._dz[:n], self._dmean[:n], self._dlog_var[:n], self._t[:n]
        a2, dg, out, rec = self._a2[:n], self._dg[:n], self._out[:n], self._rec[:n]
        # forward
        h = torch.addmm(l1.bias, x, l1.weight.t(), out=a1).relu_()
        torch.addmm(lm.bias, h, lm.weight.t(), out=mean)
        torch.addmm(lv.bias, h, lv.weight.t(), out=log_var)
        torch.mul(log_var, 0.5, out=std).exp_()
        torch.addcmul(mean, std, noise, out=z)
        g = torch.addmm(l2.bias, z, l2.weight.t(), out=a2).relu_()
        # -o (BCE) or o (MSE) straight from the product into ``out``
        if self.bce:
            torch.addmm(l3.bias, g, l3.weight.t(), beta=-1.0, alpha=-1.0, out=out)
        else:
            torch.addmm(l3.bias, g, l3.weight.t(), out=out)
        loss, r, sq = self._loss(x, out, rec, mean, log_var, std, prior_mean, dmean, t)
        # decoder backward (dL/do = -r)
        torch.addmm(l3.weight.grad, r.t(), g, beta=0.0, alpha=-1.0, out=l3.weight.grad)
        torch.sum(r, 0, out=l3.bias.grad).neg_()
        torch.addmm(dg, r, l3.weight, beta=0.0, alpha=-1.0, out=dg)
        torch.ops.aten.threshold_backward.grad_input(dg, g, 0, grad_input=dg)
        torch.mm(dg.t(), z, out=l2.weight.grad)
        torch.sum(dg, 0, out=l2.bias.grad)
        torch.mm(dg, l2.weight, out=dz)
        self._latent_gradients(dz, noise, std, sq, dmean, dlog_var)
        # encoder backward
        torch.mm(dmean.t(), h, out=lm.weight.grad)
        torch.sum(dmean, 0, out=lm.bias.grad)
        torch.mm(dlog_var.t(), h, out=lv.weight.grad)
        torch.sum(dlog_var, 0, out=lv.bias.grad)
        torch.mm(dmean, lm.weight, out=dh).addmm_(dlog_var, lv.weight)
        torch.ops.aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)
        torch.mm(dh.t(), x, out=l1.weight.grad)
        torch.sum(dh, 0, out=l1.bias.grad)
        return loss

    def _low(self, x: torch.Tensor, prior_mean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The step with its matrix products in bfloat16, as autocast runs them.

        Weights, biases and each product's inputs are rounded to bf16 and every product
        (forward and backward) runs in bf16 with a bf16 result, as under
        ``torch.autocast(dtype=torch.bfloat16)``; the latent statistics, the loss, the
        residual, the bias gradients and the KL terms are fp32, and each weight's gradient
        lands in its fp32 ``.grad``.  Values are those of an autocast step up to rounding.
        """
        lo = torch.bfloat16
        (l1, lm, lv, l2, l3) = self.layers
        n = x.shape[0]
        w1, wm, wv, w2, w3 = (layer.weight.to(lo) for layer in self.layers)
        b1, bm, bv, b2, b3 = (layer.bias.to(lo) for layer in self.layers)
        assert self._o16 is not None
        h, dh, g, dg, o16 = self._a1[:n], self._dh[:n], self._a2[:n], self._dg[:n], self._o16[:n]
        mean, log_var, std, z = self._mean[:n], self._log_var[:n], self._std[:n], self._z[:n]
        dz, dmean, dlog_var, t = self._dz[:n], self._dmean[:n], self._dlog_var[:n], self._t[:n]
        out, rec = self._out[:n], self._rec[:n]
        xl = x.to(lo)
        # forward
        torch.addmm(b1, xl, w1.t(), out=h).relu_()
        mean.copy_(torch.addmm(bm, h, wm.t()))
        log_var.copy_(torch.addmm(bv, h, wv.t()))
        torch.mul(log_var, 0.5, out=std).exp_()
        torch.addcmul(mean, std, noise, out=z)
        zl = z.to(lo)
        torch.addmm(b2, zl, w2.t(), out=g).relu_()
        if self.bce:
            out.copy_(torch.addmm(b3, g, w3.t(), beta=-1.0, alpha=-1.0, out=o16))
        else:
            out.copy_(torch.addmm(b3, g, w3.t(), out=o16))
        loss, r, sq = self._loss(x, out, rec, mean, log_var, std, prior_mean, dmean, t)
        # decoder backward (dL/do = -r)
        rl = r.to(lo)
        l3.weight.grad.copy_(torch.mm(rl.t(), g)).neg_()
        torch.sum(r, 0, out=l3.bias.grad).neg_()
        torch.mm(rl, w3, out=dg).neg_()
        torch.ops.aten.threshold_backward.grad_input(dg, g, 0, grad_input=dg)
        l2.weight.grad.copy_(torch.mm(dg.t(), zl))
        torch.sum(dg, 0, dtype=torch.float32, out=l2.bias.grad)
        dz.copy_(torch.mm(dg, w2))
        self._latent_gradients(dz, noise, std, sq, dmean, dlog_var)  # fp32
        # encoder backward
        dml, dvl = dmean.to(lo), dlog_var.to(lo)
        lm.weight.grad.copy_(torch.mm(dml.t(), h))
        torch.sum(dmean, 0, out=lm.bias.grad)
        lv.weight.grad.copy_(torch.mm(dvl.t(), h))
        torch.sum(dlog_var, 0, out=lv.bias.grad)
        torch.mm(dml, wm, out=dh).addmm_(dvl, wv)
        torch.ops.aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)
        l1.weight.grad.copy_(torch.mm(dh.t(), xl))
        torch.sum(dh, 0, dtype=torch.float32, out=l1.bias.grad)
        return loss


def train_epochs(
    net: VAENet,
    optimizer: FusedAdam | torch.optim.Optimizer,
    data: torch.Tensor,
    prior_mean: torch.Tensor,
    epochs: int,
    batch_size: int,
    kl_weight: float,
    reconstruction: str,
    generator: torch.Generator,
    on_epoch: Callable[[int, float], None] | None = None,
    precision: str = "fp32",
    step: str = "autograd",
) -> np.ndarray:
    """Train for ``epochs`` passes over shuffled mini-batches.

    Each epoch draws its permutation and its noise once (on the CPU generator,
    in that order), gathers the data, prior means and noise into that order
    with one ``index_select`` each, and takes its mini-batches as contiguous
    slices of them: the same batches as indexing every batch, without a
    gather per step.

    Parameters
    ----------
    data : torch.Tensor, shape (N, D), on the training device
    prior_mean : torch.Tensor, shape (N, d), on the training device
    generator : torch.Generator
        CPU generator driving the shuffles and the noise, so results do not
        depend on the device's own RNG.
    on_epoch : callable, optional
        Called after each epoch with (epochs done, that epoch's mean loss).
    precision : {"fp32", "bf16"}
        A resolved precision (:func:`resolve_precision`); ``"bf16"`` runs the
        forward pass under bfloat16 autocast.
    step : {"autograd", "manual"}
        A resolved step (:func:`resolve_step`): autograd through :func:`vae_loss`,
        or :class:`ManualStep` (default networks in fp32 only); then Adam's step.

    Returns
    -------
    numpy.ndarray, shape (epochs,)
        Mean loss per point of each epoch.
    """
    n = data.shape[0]
    latent_dim = prior_mean.shape[1]
    device = data.device
    losses = np.empty(epochs)
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    total = torch.zeros((), device=device)
    manual = ManualStep(net, bounds[0][1], kl_weight, reconstruction, precision) if step == "manual" else None
    if step not in ("manual", "autograd"):
        raise ValueError(f"step should be 'manual' or 'autograd' (resolved), got {step!r}")
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        noise_all = torch.randn(n, latent_dim, generator=generator).to(device)
        xs, ms, ns = data.index_select(0, order), prior_mean.index_select(0, order), noise_all.index_select(0, order)
        total.zero_()
        for start, stop in bounds:
            if manual is not None:
                loss = manual(xs[start:stop], ms[start:stop], ns[start:stop])
            else:
                with autocast(precision, device):
                    loss = vae_loss(net, xs[start:stop], ms[start:stop], ns[start:stop], kl_weight, reconstruction)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            total.add_(loss.detach())
        losses[epoch] = float(total) / n
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[epoch])
    return losses


def threads_agree(
    net: VAENet,
    data: torch.Tensor,
    batch_sizes: Iterable[int],
    kl_weight: float,
    reconstruction: str,
    precision: str,
    step: str,
    counts: Iterable[int],
) -> bool:
    """Whether one training step and one encode give the same bits with each thread count in ``counts``.

    Runs on a copy of ``net`` (its weights and gradients are not touched) for each batch size the
    update will take, with fixed noise and zero prior means; compares the loss, every gradient and
    the encoder's and decoder's outputs.  The thread governor (:mod:`actors.cpu_share`) may change
    torch's thread count during an update only where this holds: matrix-product kernels can split
    their sums differently with the thread count for some shapes.

    Parameters
    ----------
    data : torch.Tensor, shape (N, D)
        The update's points; the first ``max(batch_sizes)`` rows are used.
    """
    before = torch.get_num_threads()
    results: list[bytes] = []
    try:
        for count in counts:
            torch.set_num_threads(int(count))
            parts: list[bytes] = []
            for size in batch_sizes:
                clone = copy.deepcopy(net)
                x = data[:size].contiguous()
                with torch.no_grad():
                    shape = clone.encoder(x)[0].shape
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(size)).to(x.device)
                prior = torch.zeros_like(noise)
                for p in clone.parameters():
                    p.grad = None
                if step == "manual":
                    loss = ManualStep(clone, x.shape[0], kl_weight, reconstruction, precision)(x, prior, noise)
                else:
                    with autocast(precision, x.device):
                        loss = vae_loss(clone, x, prior, noise, kl_weight, reconstruction)
                    loss.backward()
                parts.append(loss.detach().cpu().numpy().tobytes())
                parts.extend(p.grad.detach().cpu().numpy().tobytes() for p in clone.parameters() if p.grad is not None)
                with torch.no_grad():
                    mean, log_var = clone.encoder(x)
                    parts += [mean.float().cpu().numpy().tobytes(), log_var.float().cpu().numpy().tobytes()]
                    parts.append(clone.decoder(mean).float().cpu().numpy().tobytes())
            results.append(b"".join(parts))
    finally:
        torch.set_num_threads(before)
    return all(r == results[0] for r in results)


def make_optimizer(params: Iterable[torch.nn.Parameter], learning_rate: float) -> FusedAdam | torch.optim.Adam:
    """Adam with its fused kernel: one kernel over all parameters per step instead of
    a loop of small ops per parameter (the updates agree with the loop's to rounding,
    ~1e-6 after a few epochs, not bit for bit; still deterministic for a seed).

    The fused kernel is driven by :class:`actors.adam.FusedAdam`, which gives
    ``torch.optim.Adam(fused=True)``'s bits without importing ``torch._dynamo`` (1.4 s of
    the actor's start-up).  Where the kernel does not take these parameters,
    ``torch.optim.Adam``'s ``foreach`` kernel (bit-identical to the loop).
    """
    params = list(params)
    if fused_adam_supported(params):
        return FusedAdam(params, lr=learning_rate)
    log.debug("fused Adam unavailable for %s; using foreach", sorted({str(p.device) for p in params}))
    return torch.optim.Adam(params, lr=learning_rate, foreach=True)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Deterministic outputs after training.

    Attributes
    ----------
    mean, log_var : numpy.ndarray, shape (N, d)
    z : numpy.ndarray, shape (N, d)
        The latent vectors sent on (the mean, or a draw from q).
    x_hat : numpy.ndarray, shape (N, D)
        Reconstruction of the data from ``z`` (sigmoid of the logits for BCE).
    """

    mean: np.ndarray
    log_var: np.ndarray
    z: np.ndarray
    x_hat: np.ndarray


@torch.no_grad()
def encode(
    net: VAENet,
    data: torch.Tensor,
    reconstruction: str,
    sample: bool,
    generator: torch.Generator,
    chunk: int = 65536,
) -> Encoded:
    """Encode all data (in chunks) and reconstruct it.

    Parameters
    ----------
    data : torch.Tensor, shape (N, D)
    sample : bool
        Send a draw z ~ q(z|x) (the original) instead of the mean of q.
    """
    net.eval()
    means, log_vars, zs, xs = [], [], [], []
    for start in range(0, data.shape[0], chunk):
        x = data[start : start + chunk]
        mean, log_var = net.encoder(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator).to(mean.device)
            z = mean + torch.exp(0.5 * log_var) * noise
        out = net.decoder(z)
        x_hat = torch.sigmoid(out) if reconstruction == "bce" else out
        for store, value in ((means, mean), (log_vars, log_var), (zs, z), (xs, x_hat)):
            store.append(value.detach().cpu().numpy().astype(np.float64))
    return Encoded(*(np.concatenate(s) for s in (means, log_vars, zs, xs)))
