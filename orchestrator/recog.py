"""Recognition: classify novel data with a learned model, without training.

Restores each module's worker from the last checkpoint of a finished (or
interrupted) run and asks it, with the same methods learning uses: the VAE
encodes the novel data (the mean of q(z|x), :meth:`VAEWorker.encode`); the GMM
gives each point's class posterior P(k | z_t) ∝ w_k N(z_t | mu_k, Sigma_k) under its
learned parameters (:meth:`GMMWorker.classify`), times, when the model has an MM
and the data is a sequence, the forward-backward prior from the rest of the
sequence under the learned transitions (:meth:`MMWorker.message`).  Novel data
of many sequences (``lengths``) is recognised per sequence: each starts from the
learned initial distribution (uniform when the model learned from one sequence).
The text files are written by the same :func:`actors.serket_text.export_text` as
learning's.  The model and the output may each be a local path or a remote
``pyarrow.fs`` URI (:mod:`orchestrator.storage`); a remote output is written in a
local temporary directory and each file uploaded whole, ``recog.json`` last.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actors.config import GMMConfig, MMConfig, VAEConfig
from actors.gmm import GMMWorker
from actors.mm import MMWorker
from actors.scoring import accuracy, accuracy_under
from actors.serket_text import export_text
from actors.vae import VAEWorker
from messages import as_lengths
from messages.errors import CheckpointError, DataError
from orchestrator import checkpoint, storage
from orchestrator.checkpoint import atomic_write_json
from orchestrator.run_dir import last_intact_updates, load_manifest, load_state, update_dir
from orchestrator.storage import RemotePath, RunPath

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RecogResult:
    """Outcome of :func:`recognise`.

    Attributes
    ----------
    classes : numpy.ndarray, shape (N,)
    probs : numpy.ndarray, shape (N, K)
    z : numpy.ndarray, shape (N, d)
    accuracy : float or None
        With labels: the fraction of points whose cluster is matched to their label
        as in training (the GMM's last update); matched anew only when training had no labels.
    out_dir : Path or RemotePath
    """

    classes: np.ndarray
    probs: np.ndarray
    z: np.ndarray
    accuracy: float | None
    out_dir: RunPath


def recognise(
    model_dir: str | Path | RemotePath,
    data: np.ndarray,
    out_dir: str | Path | RemotePath,
    labels: np.ndarray | None = None,
    use_mm: bool = True,
    encoder: torch.nn.Module | None = None,
    decoder: torch.nn.Module | None = None,
    lengths: np.ndarray | None = None,
) -> RecogResult:
    """Classify ``data`` (N, D) with the model learned in ``model_dir``.

    ``lengths`` (S,), positive integers summing to N, cut the data into
    sequences recognised one by one (hmmlearn's convention; None: one sequence).

    Writes ``<out>/<vae>/z_recog.txt``, ``<out>/<gmm>/class_recog.txt``,
    ``Pdz_recog.txt``, ``acc_recog.txt`` (with labels), ``<out>/<mm>/msg_recog.txt``
    and ``<out>/recog.json``.

    Raises
    ------
    CheckpointError
        ``model_dir`` holds no usable learned model.
    DataError
        The data does not have the learned model's number of features, or
        ``lengths`` are not positive integers summing to N.
    """
    lengths = as_lengths(lengths, int(data.shape[0]), "lengths", DataError)
    target = storage.resolve(out_dir)
    if isinstance(target, RemotePath):
        with tempfile.TemporaryDirectory(prefix="serket-ray-recog-") as stage:
            got = recognise(model_dir, data, stage, labels, use_mm, encoder, decoder, lengths)
            files = sorted(p for p in Path(stage).rglob("*") if p.is_file() and p.name != "recog.json")
            for path in [*files, Path(stage) / "recog.json"]:  # recog.json last
                storage.upload_file(path, target / path.relative_to(stage).as_posix())
        return dataclasses.replace(got, out_dir=target)
    model = storage.resolve(model_dir)
    manifest = load_manifest(model)
    kinds = {name: info["kind"] for name, info in manifest["modules"].items()}
    updates = last_intact_updates(model, manifest, "the model")
    last = {name: update_dir(model, rec) for name, rec in updates.items()}
    vae_name = next((n for n, k in kinds.items() if k == "vae"), None)
    gmm_name = next((n for n, k in kinds.items() if k == "gmm"), None)
    mm_name = next((n for n, k in kinds.items() if k == "mm"), None)
    if gmm_name is None or gmm_name not in last:
        raise CheckpointError(f"{model} should hold a learned GMM (at least one completed round), got none")
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    z = data
    if vae_name is not None:
        if vae_name not in last:
            raise CheckpointError(f"{model} should hold a learned VAE (at least one completed round), got none")
        vae = VAEWorker(
            _recorded(VAEConfig, manifest, vae_name), vae_name, gmm_name, "obs", _no_seed(), encoder, decoder
        )
        vae.set_state(load_state(last[vae_name]))
        z = vae.encode(data).z
        _export(out / vae_name, z=z)
    gmm = GMMWorker(
        _recorded(GMMConfig, manifest, gmm_name), gmm_name, mm_name or gmm_name, vae_name or "obs", _no_seed()
    )
    gmm.load_mixture(checkpoint.table_arrays(checkpoint.read_table(last[gmm_name] / "report.arrow"))[0])
    post = gmm.classify(z)
    if use_mm and mm_name is not None and mm_name in last and z.shape[0] > 1:
        mm = MMWorker(_recorded(MMConfig, manifest, mm_name), mm_name, gmm_name, _no_seed())
        mm.set_state(load_state(last[mm_name]))  # the learned transitions and initial distribution
        msg, _ = mm.message(post.probs, post.log_likelihood, lengths, method="forward-backward")
        _export(out / mm_name, message=msg)
        post = gmm.classify(z, class_prior=msg)
    probs = post.probs
    classes = np.argmax(probs, axis=1)
    acc = matched_by = None
    if labels is not None:
        # the clusters' labels as matched in training (the GMM's last update); re-matching on the new data would flatter
        training = updates[gmm_name].scalars.get("matching")
        acc = accuracy(classes, labels) if training is None else accuracy_under(classes, labels, np.asarray(training))
        matched_by = "recognised data (the training run had no labels)" if training is None else "training"
    _export(out / gmm_name, classes=classes, probs=probs, accuracy=acc)
    atomic_write_json(
        out / "recog.json",
        {
            "model": str(model.resolve()),
            "n_points": int(data.shape[0]),
            "accuracy": acc,
            "matching": matched_by,
            "used_mm": bool(use_mm and mm_name in last),
            "n_sequences": 1 if lengths is None else int(lengths.size),
        },
    )
    log.info("recognised %d points with %s: accuracy %s", data.shape[0], model, acc)
    return RecogResult(classes=classes, probs=probs, z=z, accuracy=acc, out_dir=out)


def _no_seed() -> np.random.SeedSequence:
    """A worker's seed in recognition, which draws nothing at random (the VAE sends the mean of q(z|x))."""
    return np.random.SeedSequence(0)


def _recorded(cls: Any, manifest: dict[str, Any], name: str) -> Any:
    """Module ``name``'s config as ``run.json`` recorded it (entries ``cls`` does not know are left out)."""
    recorded = manifest["modules"][name]["config"]
    return cls(**{k: v for k, v in recorded.items() if k in cls.__dataclass_fields__})


def _export(directory: Path, **values: Any) -> None:
    """Write recognition's Serket text files into ``directory`` (made if missing)."""
    directory.mkdir(exist_ok=True)
    export_text(directory, "recog", **values)
