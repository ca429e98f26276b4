"""Recognition: classify novel data with a learned model, without training.

Loads the last checkpoint of each module of a finished (or interrupted) run:
the VAE's weights, the GMM's class means, covariances and weights, and the MM's
transitions.  The novel data is encoded with the mean of q(z|x); each point's
class posterior is P(k | z_t) ∝ w_k N(z_t | mu_k, Sigma_k) times, when the model
has an MM and the data is a sequence, the forward-backward prior from the rest
of the sequence (as in learning).  Novel data of many sequences (``lengths``)
is recognised per sequence: each starts from the learned initial distribution
(uniform when the model learned from one sequence).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from actors import gmm_core, mm_core, vae_core
from actors.config import VAEConfig
from actors.scoring import accuracy, accuracy_under
from actors.vae import VAEWorker
from messages import as_lengths
from messages.errors import CheckpointError, DataError
from orchestrator import checkpoint
from orchestrator.checkpoint import atomic_write_json
from orchestrator.run_dir import last_intact_updates, load_manifest, load_state, update_dir

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
    out_dir : Path
    """

    classes: np.ndarray
    probs: np.ndarray
    z: np.ndarray
    accuracy: float | None
    out_dir: Path


def recognise(
    model_dir: str | Path,
    data: np.ndarray,
    out_dir: str | Path,
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
    model = Path(model_dir)
    manifest = load_manifest(model)
    kinds = {name: info["kind"] for name, info in manifest["modules"].items()}
    updates = last_intact_updates(model, manifest, "the model")
    last = {name: update_dir(model, rec) for name, rec in updates.items()}
    vae_name = next((n for n, k in kinds.items() if k == "vae"), None)
    gmm_name = next((n for n, k in kinds.items() if k == "gmm"), None)
    mm_name = next((n for n, k in kinds.items() if k == "mm"), None)
    if gmm_name is None or gmm_name not in last:
        raise CheckpointError(f"{model} should hold a learned GMM (at least one completed round), got none")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    z = data
    if vae_name is not None:
        if vae_name not in last:
            raise CheckpointError(f"{model} should hold a learned VAE (at least one completed round), got none")
        cfg_dict = {
            k: v for k, v in manifest["modules"][vae_name]["config"].items() if k in VAEConfig.__dataclass_fields__
        }
        cfg = VAEConfig(**cfg_dict)
        worker = VAEWorker(cfg, vae_name, gmm_name, "obs", np.random.SeedSequence(0), encoder, decoder)
        state = load_state(last[vae_name])
        want = state.meta.get("input_dim")
        if want is not None and data.shape[1] != want:
            raise DataError(f"data should have {want} features like the learned model's, got {data.shape[1]}")
        worker.set_state(state)
        assert worker.net is not None
        x = torch.as_tensor(np.asarray(data, dtype=np.float32), device=worker.device)
        z = vae_core.encode(worker.net, x, cfg.reconstruction, False, worker.generator).z
        (out / vae_name).mkdir(exist_ok=True)
        np.savetxt(out / vae_name / "z_recog.txt", z)
    report, _ = checkpoint.table_arrays(checkpoint.read_table(last[gmm_name] / "report.arrow"))
    means, covs, weights = report["class_means"], report["covariances"], report["weights"]
    if z.shape[1] != means.shape[1]:
        raise DataError(f"data should have {means.shape[1]} features like the learned GMM's input, got {z.shape[1]}")
    prec = np.linalg.inv(covs)
    prec_chol = np.linalg.cholesky(0.5 * (prec + np.transpose(prec, (0, 2, 1))))
    log_lik = gmm_core.gaussian_log_likelihood(z, means, prec_chol)
    log_w = log_lik + np.log(weights)[None, :]
    if use_mm and mm_name is not None and mm_name in last and z.shape[0] > 1:
        mm_report, _ = checkpoint.table_arrays(checkpoint.read_table(last[mm_name] / "report.arrow"))
        initial = mm_report.get("initial")  # None: learned from one sequence, uniform start
        msg = mm_core.forward_backward(log_lik, mm_report["transitions"], initial, lengths=lengths).prior
        (out / mm_name).mkdir(exist_ok=True)
        np.savetxt(out / mm_name / "msg_recog.txt", msg)
        with np.errstate(divide="ignore"):
            log_w = log_w + np.log(np.maximum(msg, 1e-300))
    probs = gmm_core.normalise_log(log_w)
    classes = np.argmax(probs, axis=1)
    (out / gmm_name).mkdir(exist_ok=True)
    np.savetxt(out / gmm_name / "class_recog.txt", classes, fmt="%d")
    np.savetxt(out / gmm_name / "Pdz_recog.txt", probs)
    acc = matched_by = None
    if labels is not None:
        # the clusters' labels as matched in training (the GMM's last update); re-matching on the new data would flatter
        training = updates[gmm_name].scalars.get("matching")
        acc = accuracy(classes, labels) if training is None else accuracy_under(classes, labels, np.asarray(training))
        matched_by = "recognised data (the training run had no labels)" if training is None else "training"
        np.savetxt(out / gmm_name / "acc_recog.txt", [acc])
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
