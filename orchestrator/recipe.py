"""The tutorial's graph (Observation -> VAE -> GMM -> MM) as one frozen recipe.

A :class:`TutorialRecipe` holds the data source, the sizes and the options of
the tutorial's model.  It builds the graph, and it round-trips through the
``"cli"`` entry of run.json (:meth:`TutorialRecipe.recorded` /
:meth:`TutorialRecipe.from_recorded`), so that ``resume`` and ``report`` rebuild
a command-line run without the command line.  Every caller that builds the
tutorial graph (cli, tests, bench, scripts) goes through it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from messages.errors import SerketRayError
from orchestrator.inputs import DataSource, RunInputs, load_run_inputs

log = logging.getLogger(__name__)

#: The keys of run.json's ``"cli"`` entry, in the order they are written.
RECORDED_KEYS = (
    "data",
    "labels",
    "data_key",
    "labels_key",
    "scale",
    "dataset",
    "cache_dir",
    "latent_dim",
    "epochs",
    "batch_size",
    "clusters",
    "sweeps",
    "no_mm",
    "mm_message",
    "lengths",
    "sequence_key",
    "precision",
)
_SOURCE_KEYS = tuple(f.name for f in dataclasses.fields(DataSource))


@dataclasses.dataclass(frozen=True)
class TutorialRecipe:
    """The tutorial's model: where its data come from, its sizes and options.

    Parameters
    ----------
    source : DataSource
        The data, labels and sequence lengths.
    latent_dim, epochs, batch_size : int
        The VAE's latent size, epochs per round and batch size.
    clusters, sweeps : int
        The GMM's number of clusters and Gibbs sweeps per round.
    no_mm : bool
        VAE + GMM only (no Markov model).
    mm_message : {"forward-backward", "serket"}
        The MM's message to the GMM.
    precision : {"auto", "bf16", "fp32"}
        The VAE's training arithmetic.
    """

    source: DataSource = DataSource()
    latent_dim: int = 18
    epochs: int = 200
    batch_size: int = 500
    clusters: int = 10
    sweeps: int = 100
    no_mm: bool = False
    mm_message: str = "forward-backward"
    precision: str = "auto"

    @classmethod
    def from_options(cls, options: Any) -> TutorialRecipe:
        """A recipe from anything with the options as attributes (an ``argparse.Namespace``).

        Absent options take the defaults.
        """
        return cls.from_recorded({k: getattr(options, k) for k in RECORDED_KEYS if hasattr(options, k)})

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any]) -> TutorialRecipe:
        """The recipe run.json's ``"cli"`` entry recorded (keys missing from older runs take the defaults)."""
        source = DataSource(**{k: recorded[k] for k in _SOURCE_KEYS if k in recorded})
        sizes = {f.name: recorded[f.name] for f in dataclasses.fields(cls) if f.name != "source" and f.name in recorded}
        return cls(source=source, **sizes)

    def recorded(self) -> dict[str, Any]:
        """run.json's ``"cli"`` entry: every option, with the data, labels and lengths files as absolute paths."""
        values = {
            **dataclasses.asdict(self.source),
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"},
        }
        out = {k: values[k] for k in RECORDED_KEYS}
        for key in ("data", "labels", "lengths"):
            if out[key]:
                out[key] = str(Path(out[key]).resolve())
        return out

    def load(self) -> RunInputs:
        """The data, labels and lengths, checked (see :func:`orchestrator.inputs.load_run_inputs`)."""
        return load_run_inputs(self.source)

    def build(self, data: np.ndarray, labels: np.ndarray | None, lengths: np.ndarray | None = None) -> list[Any]:
        """The graph on ``data`` (N, D), scored against ``labels`` (N,), on ``lengths`` (S,) sequences.

        A new graph per call.

        Raises
        ------
        SerketRayError
            More clusters than points.
        """
        from actors import GMM, VAE, MarkovModel, Observation

        if self.clusters > data.shape[0]:
            raise SerketRayError(
                f"--clusters should be at most the number of points {data.shape[0]}, got {self.clusters}"
            )
        if self.batch_size > data.shape[0]:
            log.warning(
                "--batch-size %d is larger than the data (%d points): every epoch is one full batch",
                self.batch_size,
                data.shape[0],
            )
        obs = Observation(data, lengths=lengths)
        vae = VAE(self.latent_dim, itr=self.epochs, batch_size=self.batch_size, precision=self.precision)
        gmm = GMM(self.clusters, itr=self.sweeps, category=labels)
        vae.connect(obs)
        gmm.connect(vae)
        modules = [obs, vae, gmm]
        if not self.no_mm:
            mm = MarkovModel(message=self.mm_message)
            mm.connect(gmm)
            modules.append(mm)
        return modules

    def graph(self) -> list[Any]:
        """Load the inputs and build the graph on them."""
        got = self.load()
        return self.build(got.data, got.labels, got.lengths)
