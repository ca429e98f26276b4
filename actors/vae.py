"""The VAE module (Serket-style constructor) and its worker."""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actors import cpu_share
from actors.config import VAEConfig
from actors.lazy import LazyModule
from actors.module import Edge, Module
from actors.seeding import generator_state_json, numpy_generator, set_generator_state, torch_generator
from actors.serket_text import export_text
from actors.state import WorkerState
from messages import Latents, ObservationData, PriorMeans, Reconstruction
from messages.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# torch is imported where it is first used: in the VAE's worker process, not in the driver that only
# builds the graph and starts the worker (see actors/lazy.py).
torch: Any = LazyModule("torch")
nn: Any = LazyModule("torch.nn")
vae_core: Any = LazyModule("actors.vae_core")


class VAE(Module):
    """Variational autoencoder compressing observations into latent vectors.

    Parameters
    ----------
    latent_dim : int
        Size of the latent vectors (Serket's first argument).
    itr : int, optional
        Serket's name for ``epochs``.
    batch_size : int
    KL_weight, RE : optional
        Serket's names for ``kl_weight`` and ``reconstruction`` ("BCE"/"MSE").
    encoder, decoder : torch.nn.Module, optional
        Your own networks.  The encoder maps (B, D) to ``(mean, log_var)``,
        each (B, latent_dim); the decoder maps (B, latent_dim) to (B, D) logits
        (BCE) or values (MSE).  Defaults: the tutorial's 784-128-18 MLPs.
    name, mode : str
    **options
        Any other :class:`actors.config.VAEConfig` field.
    """

    kind = "vae"
    below_kinds = ("observation",)
    reports_progress = True

    def __init__(
        self,
        latent_dim: int = 18,
        itr: int | None = None,
        batch_size: int = 500,
        KL_weight: float | None = None,
        RE: str | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        name: str = "vae",
        mode: str = "learn",
        epochs: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, mode)
        if itr is not None and epochs is not None and itr != epochs:
            raise ConfigError(f"give epochs or its alias itr, not both (got itr={itr}, epochs={epochs})")
        if KL_weight is not None:
            options.setdefault("kl_weight", KL_weight)
        if RE is not None:
            options.setdefault("reconstruction", str(RE).lower())
        try:
            self.config = VAEConfig(
                latent_dim=latent_dim,
                epochs=epochs if epochs is not None else (itr if itr is not None else 200),
                batch_size=batch_size,
                **options,
            )
        except TypeError as exc:
            raise ConfigError(f"unknown VAE option: {exc}") from None
        for what, net in (("encoder", encoder), ("decoder", decoder)):
            if net is not None and not isinstance(net, nn.Module):
                raise ConfigError(f"{what} should be a torch.nn.Module, got {type(net).__name__}")
        if self.config.step == "manual" and not (
            type(encoder) in (type(None), vae_core.Encoder) and type(decoder) in (type(None), vae_core.Decoder)
        ):
            raise ConfigError(
                "step='manual' needs the default encoder and decoder (use step='autograd' or 'auto' with your own), "
                f"got {type(encoder).__name__}/{type(decoder).__name__}"
            )
        self.encoder = encoder
        self.decoder = decoder

    def config_dict(self) -> dict[str, Any]:
        out = self.config.to_dict()
        out["custom_encoder"] = self.encoder is not None
        out["custom_decoder"] = self.decoder is not None
        return out

    def worker_spec(
        self, name: str, above: str | None, below: str | None, seed: np.random.SeedSequence, num_threads: int | None
    ) -> tuple[type, tuple[Any, ...]]:
        return VAEWorker, (
            self.config,
            name,
            above or name,
            below or name,
            seed,
            self.encoder,
            self.decoder,
            num_threads,
        )

    def inputs(self) -> dict[str, Edge]:
        edges: dict[str, Edge] = {"data": (self.below[0], "data")}
        if self.above:
            edges["prior_means"] = (self.above[0], "prior_means")
        return edges

    def output_names(self) -> tuple[str, ...]:
        return ("latents", "reconstruction", "report")

    def export(self, directory: Path, outputs: dict[str, Any], labels: np.ndarray | None) -> dict[str, Any]:
        report = outputs["report"]
        export_text(directory, self.mode, loss=report["loss"], z=outputs["latents"].z)
        return {
            "final_loss": float(report["loss"][-1]) if len(report["loss"]) else None,
            "precision": report.get("precision"),
            "step": report.get("step"),
        }


class VAEWorker:
    """Trains the VAE; becomes a Ray actor.  Keeps its weights across rounds.

    Parameters
    ----------
    config : VAEConfig
    name, above, below : str
        This module's name and the names of its receivers.
    seed : numpy.random.SeedSequence
    encoder, decoder : torch.nn.Module, optional
    num_threads : int, optional
        torch's intra-op threads (Ray sets OMP_NUM_THREADS=1 in actors; the
        orchestrator passes the CPUs the actor was given).
    """

    def __init__(
        self,
        config: VAEConfig,
        name: str,
        above: str,
        below: str,
        seed: np.random.SeedSequence,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        num_threads: int | None = None,
    ) -> None:
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.config = config
        self.name, self.above, self.below = name, above, below
        self.rng = numpy_generator(seed)
        self.generator = torch_generator(seed)
        self.custom = (encoder, decoder)
        want_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "device should be a visible CUDA GPU for device='cuda', got none (torch.cuda.is_available() is False)"
            )
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.precision = vae_core.resolve_precision(config.precision, self.device)
        self.step: str | None = None  # resolved with the networks
        self.net: vae_core.VAENet | None = None
        self._net_dim: int | None = None  # the networks' input size
        self.optimizer: vae_core.FusedAdam | torch.optim.Optimizer | None = None
        self._data_key: tuple[int, int] | None = None
        self._data: torch.Tensor | None = None
        self._agree_key: tuple[int, int, tuple[int, ...], int] | None = None
        self._agree = False
        # Progress of the update in flight: passed to on_epoch in-process, pushed to a
        # sink actor on Ray (at most every PUSH_INTERVAL s).  Training stays on the
        # actor's main thread: torch runs ~1.6x slower on any other thread here.
        self._progress: dict[str, Any] = {
            "round": None,
            "epoch": 0,
            "epochs": config.epochs,
            "loss": None,
            "seconds": 0.0,
        }
        self._started = self._pushed = time.perf_counter()
        self.on_epoch: Callable[[dict[str, Any]], None] | None = None
        self._sink: Any = None

    PUSH_INTERVAL = 0.25

    def watch(self, sink: Any) -> None:
        """Push progress during updates to ``sink.report.remote(name, info)`` (a Ray actor), or stop with None."""
        self._sink = sink

    def progress(self) -> dict[str, Any]:
        """The last update's ``round``, ``epoch`` done of ``epochs``, last epoch's ``loss``, ``seconds``."""
        return dict(self._progress)

    def _epoch_done(self, epoch: int, loss: float) -> None:
        now = time.perf_counter()
        self._progress = {**self._progress, "epoch": epoch, "loss": float(loss), "seconds": now - self._started}
        if self.on_epoch is not None:
            self.on_epoch(dict(self._progress))
        if self._sink is not None and (now - self._pushed >= self.PUSH_INTERVAL or epoch == self._progress["epochs"]):
            self._sink.report.remote(self.name, dict(self._progress))  # fire and forget
            self._pushed = now

    def _build(self, input_dim: int) -> None:
        self._build_networks(input_dim, int(torch.randint(0, 2**62, (1,), generator=self.generator)))

    def _build_networks(self, input_dim: int, torch_seed: int = 0) -> None:
        encoder, decoder = self.custom
        init = torch.Generator(device="cpu").manual_seed(torch_seed)  # weight init from the module's own stream
        enc = (
            encoder
            if encoder is not None
            else _seeded(lambda: vae_core.Encoder(input_dim, self.config.latent_dim, self.config.hidden), init)
        )
        dec = (
            decoder
            if decoder is not None
            else _seeded(lambda: vae_core.Decoder(input_dim, self.config.latent_dim, self.config.hidden), init)
        )
        self.net = vae_core.VAENet(enc, dec).to(self.device)
        self._net_dim = input_dim
        self.optimizer = vae_core.make_optimizer(self.net.parameters(), self.config.learning_rate)
        self.step = vae_core.resolve_step(self.config.step, self.net, self.precision)

    def _tensor(self, data: np.ndarray) -> torch.Tensor:
        # The data is the same object every round: convert and move it once.
        key = (id(data), data.shape[0])
        if self._data is None or self._data_key != key:
            self._data = torch.as_tensor(np.asarray(data, dtype=np.float32), device=self.device)
            self._data_key = key
        return self._data

    def _begin(self, round: int, x: torch.Tensor, means: np.ndarray | None) -> tuple[float, torch.Tensor]:
        """Start an update on the points ``x`` (M, D): progress reset, networks built where needed; returns the
        start time and the prior means (M, d) as a tensor (zeros before the GMM's first message)."""
        start = self._started = time.perf_counter()
        self._progress = {"round": round, "epoch": 0, "epochs": self.config.epochs, "loss": None, "seconds": 0.0}
        if self.net is None or not self.config.warm_start:
            self._build(x.shape[1])
        if means is None:
            return start, torch.zeros(x.shape[0], self.config.latent_dim, device=self.device)
        return start, torch.as_tensor(np.asarray(means, dtype=np.float32), device=self.device)

    def update(
        self, round: int, data: ObservationData, prior_means: PriorMeans | None = None
    ) -> tuple[Latents, Reconstruction, dict[str, Any]]:
        """Train ``epochs`` epochs and encode every point.

        Returns
        -------
        latents : Latents, z (N, d) to the module above
        reconstruction : Reconstruction, x_hat (N, D) to the observation
        report : dict with ``loss`` (epochs,), ``log_var`` (N, d), ``seconds``
        """
        x = self._tensor(data.data)
        start, mu = self._begin(round, x, None if prior_means is None else prior_means.means)
        most = torch.get_num_threads()
        governor = None
        if self.device.type == "cpu" and most > 1 and self._threads_agree(x, most):
            governor = cpu_share.ThreadGovernor(torch.set_num_threads, torch.get_num_threads, most)
            governor.start()
        try:
            losses = self._train(x, mu, governor)
            enc = self.encode(data.data, sample=self.config.send == "sample")
        finally:
            torch.set_num_threads(most)
        seconds = time.perf_counter() - start
        log.info(
            "%s round %d: %d epochs on %s in %s (%s step), loss %.3f, %.2f s%s",
            self.name,
            round,
            self.config.epochs,
            self.device,
            self.precision,
            self.step,
            losses[-1],
            seconds,
            f", torch threads changed {governor.changes}x for the load" if governor and governor.changes else "",
        )
        latents = Latents(sender=self.name, receiver=self.above, round=round, z=enc.z, lengths=data.lengths)
        recon = Reconstruction(
            sender=self.name, receiver=self.below, round=round, x_hat=enc.x_hat.astype(np.float32), lengths=data.lengths
        )
        return (
            latents,
            recon,
            {
                "loss": losses,
                "log_var": enc.log_var,
                "seconds": seconds,
                "device": str(self.device),
                "precision": self.precision,
                "step": self.step,
            },
        )

    def _threads_agree(self, x: torch.Tensor, most: int) -> bool:
        """Whether the governor may change torch's threads in this update: allowed (``SERKET_ADAPT_THREADS``
        not "0") and checked once per networks and data shape (:func:`vae_core.threads_agree`)."""
        if os.environ.get("SERKET_ADAPT_THREADS", "1") == "0":
            return False
        assert self.net is not None
        batch = min(self.config.batch_size, x.shape[0])
        sizes = sorted({batch, x.shape[0] % batch or batch})
        key = (id(self.net), x.shape[1], tuple(sizes), most)
        if self._agree_key != key:
            self._agree = vae_core.threads_agree(
                self.net,
                x,
                sizes,
                self.config.kl_weight,
                self.config.reconstruction,
                self.precision,
                self.step or "autograd",
                (most, 1),
            )
            self._agree_key = key
            if not self._agree:
                log.info("%s: torch's results change with its thread count here; keeping %d threads", self.name, most)
        return self._agree

    def _train(self, x: torch.Tensor, mu: torch.Tensor, governor: cpu_share.ThreadGovernor | None) -> np.ndarray:
        """The update's epochs (:func:`vae_core.train_epochs`); ``governor`` re-decides torch's threads each epoch."""
        assert self.net is not None and self.optimizer is not None

        def on_epoch(epoch: int, loss: float) -> None:
            if governor is not None:
                governor.step()
            self._epoch_done(epoch, loss)

        return vae_core.train_epochs(
            self.net,
            self.optimizer,
            x,
            mu,
            self.config.epochs,
            min(self.config.batch_size, x.shape[0]),
            self.config.kl_weight,
            self.config.reconstruction,
            self.generator,
            on_epoch,
            self.precision,
            self.step or "autograd",
        )

    def encode(self, data: np.ndarray, sample: bool = False) -> vae_core.Encoded:
        """Encode every point with the current networks (no training) and reconstruct it.

        :meth:`update` sends what this returns after its epochs; recognition calls it
        on novel data after :meth:`set_state`.

        Parameters
        ----------
        data : numpy.ndarray, shape (N, D)
        sample : bool
            A draw z ~ q(z|x) from the worker's torch stream instead of the mean of q(z|x).

        Returns
        -------
        vae_core.Encoded
            ``z`` (N, d), ``mean`` and ``log_var`` (N, d), ``x_hat`` (N, D).

        Raises
        ------
        ConfigError
            The worker has no networks yet (neither trained nor restored).
        DataError
            ``data`` does not have the networks' number of features.
        """
        if self.net is None:
            raise ConfigError(f"{self.name} should be trained or restored before it encodes, got no networks")
        if data.ndim != 2 or data.shape[1] != self._net_dim:
            raise DataError(f"data should have {self._net_dim} features like the learned model's, got {data.shape[-1]}")
        x = self._tensor(data)
        return vae_core.encode(self.net, x, self.config.reconstruction, sample, self.generator)

    def get_state(self) -> WorkerState:
        """Everything needed to continue: RNG states and the weights file."""
        return WorkerState(
            arrays={"torch_rng": self.generator.get_state().numpy()},
            meta={"rng": generator_state_json(self.rng), "device": str(self.device), "input_dim": self._input_dim()},
            blobs={"weights.pt": self.weights()} if self.net is not None else {},
        )

    def _input_dim(self) -> int | None:
        return None if self._data is None else int(self._data.shape[1])

    def set_state(self, state: WorkerState) -> None:
        """Restore what :meth:`get_state` returned (weights loaded with ``weights_only=True``).

        Raises
        ------
        CheckpointError
            The state lacks the RNG states (or, with weights, the input size).
        """
        state.require(self.name, arrays=("torch_rng",), meta=("rng",))
        blob = state.blobs.get("weights.pt")
        if blob is not None:
            saved = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
            if self.net is None:
                state.require(self.name, meta=("input_dim",))
                self._build_networks(int(state.meta["input_dim"]))
            assert self.net is not None and self.optimizer is not None
            self.net.load_state_dict(saved["net"])
            self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(torch.from_numpy(np.ascontiguousarray(state.arrays["torch_rng"])))
        set_generator_state(self.rng, state.meta["rng"])

    def weights(self) -> bytes:
        """The networks' and optimiser's ``state_dict`` as bytes (torch.save format)."""
        assert self.net is not None and self.optimizer is not None
        buf = io.BytesIO()
        torch.save({"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}, buf)
        return buf.getvalue()


def _seeded(build: Callable[[], nn.Module], generator: torch.Generator) -> nn.Module:
    """``build()``'s network with its weights drawn from ``generator`` only.

    The network is built on the meta device (no random draws at all), then each
    ``nn.Linear`` is initialised as its ``reset_parameters`` does, in the same
    order, from ``generator``: the same weights as building it after
    ``torch.manual_seed(seed)``, without touching torch's global CPU or CUDA
    generators.  A network with other parametrised layers is built on the CPU
    with the global CPU generator borrowed and restored (never the CUDA ones).
    """
    with torch.device("meta"):
        net = build()
    layers = [m for m in net.modules() if any(True for _ in m.parameters(recurse=False))]
    if not all(type(m) is nn.Linear for m in layers):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.set_state(generator.get_state())
            net = build()
            generator.set_state(torch.default_generator.get_state())  # the stream goes on from there
        return net
    # What ``net.to_empty(device="cpu")`` does, but with ``torch.empty(shape)``: ``empty_like`` of a meta
    # tensor runs torch's Python reference, whose first call imports sympy (0.35 s of the actor's start-up).
    net = net._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))
    with torch.no_grad():
        for layer in layers:
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                fan_in = layer.weight.shape[1]
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return net
