"""An HTML report of a run: ``serket-ray report OUT`` writes ``OUT/report/index.html``
and the PNG figures it shows.

Everything is read back from the run's directory (``run.json`` and the Arrow
checkpoints of each module's last completed round).  The observed data are not
saved in a run; they are reloaded from the command line ``run.json`` recorded
(or recognised as the embedded digits by their SHA-256), and used only when
their SHA-256 matches the one the run recorded.  Labels come from the same
place, or from a file given with ``--labels``.  Figures that need labels are
left out, with a note on the page, when there are none.

This module puts the page together; :mod:`orchestrator.report_inputs` reads the
run and recovers its data, :mod:`orchestrator.report_figures` draws the figures
(matplotlib's Agg canvas, no ``pyplot``) and :mod:`orchestrator.report_page`
writes the HTML.

A run on a remote file system (``s3://bucket/run``, :mod:`orchestrator.storage`)
is read there the same way; its report is drawn in a local temporary directory
and each file uploaded whole to ``<run>/report/``, ``index.html`` last.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from actors.scoring import accuracy as matched_accuracy
from messages.errors import CheckpointError
from orchestrator import storage
from orchestrator.report_figures import (
    Matching,
    match_clusters,
    pick_examples,
    plot_accuracy,
    plot_confusion,
    plot_latent,
    plot_loss,
    plot_reconstructions,
    plot_transitions,
)
from orchestrator.report_inputs import ReportRun, open_run, recover_inputs
from orchestrator.report_page import write_html
from orchestrator.storage import RemotePath, RunPath

log = logging.getLogger(__name__)

REPORT_DIR = "report"
"""Sub-directory of the run that holds the report."""

FIGURES = ("accuracy", "confusion", "transitions", "latent", "reconstructions", "loss")
"""Every figure a report can hold, in page order (each is ``<name>.png``)."""

#: A figure on the page: its name (one of :data:`FIGURES`), its PNG file and its caption.
_Figure = tuple[str, Path, str]


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote.

    Attributes
    ----------
    index : Path or RemotePath
        ``<out>/report/index.html``.
    figures : dict of str to Path or RemotePath
        Figure name (one of :data:`FIGURES`) -> PNG file, for the figures drawn.
    notes : list of str
        Why figures were left out, and other remarks shown on the page.
    """

    index: RunPath
    figures: dict[str, RunPath]
    notes: list[str]


# --------------------------------------------------------------------------- entry point


def make_report(
    out_dir: str | os.PathLike[str] | RemotePath,
    labels: str | os.PathLike[str] | np.ndarray | None = None,
    data: np.ndarray | None = None,
    labels_key: str | None = None,
) -> Report:
    """Write ``<out_dir>/report/index.html`` and its PNG figures.

    Parameters
    ----------
    out_dir : path, URI or RemotePath
        A run's output directory (with its ``run.json``), local or remote.
    labels : path or array_like, shape (N,), optional
        Labels of the N points (a file in any format of
        :func:`orchestrator.data.load_labels`, or an array); by default those the
        run's command line recorded, or the embedded digits' labels.
    data : numpy.ndarray, shape (N, D), optional
        The observed data, when the caller still has them; reloaded otherwise.
        Used only when its SHA-256 matches the run's.
    labels_key : str, optional
        Array (``.npz``) or column (Parquet / Feather) of the labels file.

    Returns
    -------
    Report

    Raises
    ------
    CheckpointError
        ``out_dir`` is not a run, holds no completed update, or a checkpoint is unreadable.
    DataError
        ``labels`` cannot be read or has another length than the run's points.
    """
    out = storage.resolve(out_dir)
    run, notes = open_run(out)
    data, labels, source, more = recover_inputs(run, data, labels, labels_key)
    notes += more
    if isinstance(out, RemotePath):
        return _remote_report(out, run, data, labels, source, notes)
    return _draw(out, out / REPORT_DIR, run, data, labels, source, notes)


def _remote_report(
    out: RemotePath,
    run: ReportRun,
    data: np.ndarray | None,
    labels: np.ndarray | None,
    source: str,
    notes: list[str],
) -> Report:
    """:func:`_draw` into a local temporary directory; each file then uploaded whole, ``index.html`` last."""
    target = out / REPORT_DIR
    with tempfile.TemporaryDirectory(prefix="serket-ray-report-") as stage:
        local = _draw(out, Path(stage), run, data, labels, source, notes)
        for old in FIGURES:  # figures of an earlier report that this one did not redraw
            if old not in local.figures:
                (target / f"{old}.png").unlink(missing_ok=True)
        for png in local.figures.values():
            storage.upload_file(png, target / png.name)
        storage.upload_file(local.index, target / local.index.name)
    return Report(target / local.index.name, {k: target / v.name for k, v in local.figures.items()}, local.notes)


def _draw(
    out: RunPath,
    report_dir: Path,
    run: ReportRun,
    data: np.ndarray | None,
    labels: np.ndarray | None,
    source: str,
    notes: list[str],
) -> Report:
    """Draw the figures and write the page into the local directory ``report_dir``."""
    report_dir.mkdir(exist_ok=True)
    for old in FIGURES:  # figures of an earlier report that this one may not redraw
        (report_dir / f"{old}.png").unlink(missing_ok=True)
    figures: list[_Figure] = []

    gmm = run.arrays("gmm", "report.arrow")
    if gmm is not None and "labels" not in gmm:  # issue 12: a sharded run above shard_run.GATHER_TEXT_MAX points
        raise CheckpointError(
            f"{out}: the GMM's report should hold every point's class, got none: a sharded run of more than "
            "100,000 points keeps its classes per shard (<module>/shards/<round>/shard*/class_learn.txt)"
        )
    classes = None if gmm is None else np.asarray(gmm["labels"], dtype=np.int64)
    n_clusters = (
        0 if gmm is None else max(int(gmm["weights"].shape[0]) if "weights" in gmm else 0, int(classes.max()) + 1)
    )
    if labels is not None and classes is not None and len(labels) != len(classes):
        raise CheckpointError(
            f"{out}: the GMM's last round has {len(classes)} points, the labels {len(labels)}; they should be equal"
        )
    accuracy, acc_note = _accuracy_figure(run, gmm is not None, labels, report_dir, figures, notes)
    mm = run.arrays("mm", "report.arrow")
    trans = None if mm is None else mm.get("transitions")
    match = None if classes is None else match_clusters(classes, labels, n_clusters, trans)
    _cluster_figures(run, classes, labels, trans, match, report_dir, figures, notes)
    if "vae" in run.module_of:
        _vae_figures(run, data, classes, labels, match, report_dir, figures)
    else:
        notes.append("No latent, reconstruction or loss figures: the run has no VAE module.")

    index = report_dir / "index.html"
    write_html(index, run, source, accuracy, acc_note, figures, notes)
    log.info("report of %s written to %s (%d figures)", out, index, len(figures))
    return Report(index, {name: png for name, png, _ in figures}, notes)


def _accuracy_figure(
    run: ReportRun,
    has_gmm: bool,
    labels: np.ndarray | None,
    report_dir: Path,
    figures: list[_Figure],
    notes: list[str],
) -> tuple[list[float | None], str]:
    """The accuracy of each round (as recorded, else computed from each round's clusters) and its figure.

    Returns
    -------
    accuracy : list of float or None, one per round
    note : str
        A sentence for the page when the accuracy was computed here, else "".
    """
    m = run.manifest
    rounds = m.get("rounds", [])
    accuracy: list[float | None] = [r.get("accuracy") for r in rounds]
    acc_note = ""
    if labels is not None and has_gmm and not any(a is not None for a in accuracy):
        gmm_name = run.module_of["gmm"]
        done = {u["round"] for u in m["updates"] if u["module"] == gmm_name}
        accuracy = [
            matched_accuracy(run.arrays("gmm", "report.arrow", i)["labels"], labels) if i in done else None
            for i in range(len(rounds))
        ]
        acc_note = " The run recorded no accuracy; it was computed here from the labels given."
    if any(a is not None for a in accuracy):
        chance = None if labels is None else float(np.bincount(labels - labels.min()).max() / len(labels))
        figures.append(
            (
                "accuracy",
                plot_accuracy(accuracy, chance, report_dir / "accuracy.png"),
                "GMM clustering accuracy after each round: the fraction of points whose cluster is matched to "
                "their label by the "
                "best one-to-one (Hungarian) matching. The dashed line is what always answering the most "
                "frequent label would score.",
            )
        )
    else:
        notes.append("No accuracy figure: the run recorded no accuracy and no labels were given (use --labels FILE).")
    return accuracy, acc_note


def _cluster_figures(
    run: ReportRun,
    classes: np.ndarray | None,
    labels: np.ndarray | None,
    trans: np.ndarray | None,
    match: Matching | None,
    report_dir: Path,
    figures: list[_Figure],
    notes: list[str],
) -> None:
    """The confusion matrix (clusters (N,) against labels (N,)) and the transition matrix (K, K) figures."""
    if classes is None:
        notes.append("No GMM module: the confusion matrix, transition and latent figures need its clusters.")
    elif labels is not None:
        figures.append(
            (
                "confusion",
                plot_confusion(classes, labels, match, report_dir / "confusion.png"),
                "Points of each true label (rows) in each GMM cluster (columns), last round. Clusters are "
                "ordered by the label "
                "they are matched to, so the diagonal holds the matched pairs; unmatched clusters come last.",
            )
        )
    else:
        notes.append("No confusion matrix: it needs labels (use --labels FILE).")

    if trans is not None and match is not None:
        by = (
            (
                "Clusters are named by the label they are matched to (unmatched ones as c<id>) and ordered by "
                "it; in the tutorial's "
                "data (digits in the order 0, 1, ..., 9, 0, ...) a good model puts its mass just right of the diagonal."
            )
            if match.label_of
            else (
                "Clusters are named by their id (no labels to match them to) and ordered along the most "
                "probable transitions "
                "(from c0, each next one is the likeliest successor not yet listed), so a repeating sequence "
                "shows just right of the diagonal."
            )
        )
        empty = [name for name, c in zip(match.cluster_names, match.clusters, strict=True) if not (classes == c).any()]
        if empty:
            by += f" Clusters without points ({', '.join(empty)}) keep the prior's uniform row."
        figures.append(
            (
                "transitions",
                plot_transitions(trans, match, report_dir / "transitions.png"),
                "The Markov model's learned transition matrix, last round: row = current cluster, column = "
                f"next cluster; rows sum to one. {by}",
            )
        )
    elif "mm" not in run.module_of:
        notes.append("No transition figure: the run has no Markov model (--no-mm).")


def _vae_figures(
    run: ReportRun,
    data: np.ndarray | None,
    classes: np.ndarray | None,
    labels: np.ndarray | None,
    match: Matching | None,
    report_dir: Path,
    figures: list[_Figure],
) -> None:
    """The latent map, the reconstructions of data (N, D) and the loss curve of the run's VAE."""
    z = run.message("vae", "latents.arrow").z
    if classes is not None and len(classes) == len(z):
        path, explained = plot_latent(z, classes, labels, match, report_dir / "latent.png")
        side = (
            " (left) and by true label (right)"
            if labels is not None
            else " (no labels: the by-label panel is left out)"
        )
        figures.append(
            (
                "latent",
                path,
                f"The VAE's latent vectors of the last round projected on their first two principal components "
                f"({100 * explained.sum():.0f}% of the variance), coloured by GMM cluster{side}."
                + (" A cluster matched to a label has that label's colour." if labels is not None else ""),
            )
        )
    x_hat = run.message("vae", "reconstruction.arrow").x_hat
    idx = pick_examples(x_hat.shape[0], labels)
    shown_data = data if data is not None and data.shape == x_hat.shape else None
    figures.append(
        (
            "reconstructions",
            plot_reconstructions(x_hat, shown_data, idx, labels, report_dir / "reconstructions.png"),
            _reconstructions_caption(x_hat.shape[1], shown_data is not None, labels, len(idx)),
        )
    )
    vae_name = run.module_of["vae"]
    losses = [
        run.arrays("vae", "report.arrow", r)["loss"]
        for r in sorted({u["round"] for u in run.manifest["updates"] if u["module"] == vae_name})
    ]
    if sum(len(v) for v in losses):
        figures.append(
            (
                "loss",
                plot_loss(losses, report_dir / "loss.png"),
                "The VAE's loss (negative ELBO per point, averaged over each epoch) over every epoch of "
                "every round, end to end; "
                "dashed lines mark where a round starts (the VAE continues from its previous weights, with "
                "the GMM's new prior).",
            )
        )


def _reconstructions_caption(n_features: int, has_data: bool, labels: np.ndarray | None, n_shown: int) -> str:
    square = math.isqrt(n_features) ** 2 == n_features
    if not has_data:
        caption = "Reconstructions by the VAE's last round (the original data could not be found, see the notes)"
    elif square:
        caption = "Originals above their reconstructions by the VAE's last round"
    else:
        caption = "Original features (black) and their reconstructions (red) by the VAE's last round, one point a row"
    caption += (
        ", the first points of each label."
        if labels is not None and len(np.unique(labels)) <= n_shown
        else ", the first points."
    )
    if not square:
        caption += f" The {n_features} features are not a square image, so they are drawn as lines."
    return caption
