"""An HTML report of a run: ``serket-ray report OUT`` writes ``OUT/report/index.html``
and the PNG figures it shows.

Everything is read back from the run's directory (``run.json`` and the Arrow
checkpoints of each module's last completed round).  The observed data are not
saved in a run; they are reloaded from the command line ``run.json`` recorded
(or recognised as the embedded digits by their SHA-256), and used only when
their SHA-256 matches the one the run recorded.  Labels come from the same
place, or from a file given with ``--labels``.  Figures that need labels are
left out, with a note on the page, when there are none.

The figures are drawn with matplotlib's non-interactive Agg canvas on
:class:`matplotlib.figure.Figure` objects, without ``pyplot``: making a report
neither needs a display nor changes the backend of the calling process.

The latent map is a PCA projection (numpy SVD): scikit-learn's TSNE took 45 s
on the tutorial's 3000 points (18-D latents, 2 CPU cores), PCA 0.02 s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from actors.scoring import accuracy as matched_accuracy
from actors.scoring import best_matching
from messages.errors import CheckpointError, SerketRayError, StorageError
from orchestrator import checkpoint
from orchestrator.run_dir import last_updates, load_manifest, records_of, saved_message

log = logging.getLogger(__name__)

REPORT_DIR = "report"
"""Sub-directory of the run that holds the report."""

FIGURES = ("accuracy", "confusion", "transitions", "latent", "reconstructions", "loss")
"""Every figure a report can hold, in page order (each is ``<name>.png``)."""

_DPI = 110


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote.

    Attributes
    ----------
    index : Path
        ``<out>/report/index.html``.
    figures : dict of str to Path
        Figure name (one of :data:`FIGURES`) -> PNG file, for the figures drawn.
    notes : list of str
        Why figures were left out, and other remarks shown on the page.
    """

    index: Path
    figures: dict[str, Path]
    notes: list[str]


@dataclasses.dataclass
class _Run:
    """A run directory read back: its manifest and the last round of each module kind."""

    out: Path
    manifest: dict[str, Any]
    module_of: dict[str, str]  # kind ("vae", "gmm", "mm") -> module directory name
    last_round: dict[str, int]  # module directory name -> last completed round

    def round_dir(self, kind: str, round_index: int | None = None) -> Path | None:
        """``<out>/<module>/<round:03d>`` of a kind's module (its last round by default)."""
        name = self.module_of.get(kind)
        if name is None or name not in self.last_round:
            return None
        return self.out / name / f"{self.last_round[name] if round_index is None else round_index:03d}"

    def arrays(self, kind: str, file: str, round_index: int | None = None) -> dict[str, np.ndarray] | None:
        """The arrays of ``report.arrow`` (or another arrays table) of a kind's module."""
        directory = self.round_dir(kind, round_index)
        if directory is None:
            return None
        path = directory / file
        try:
            return checkpoint.table_arrays(checkpoint.read_table(path))[0]
        except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors are OSError / ValueError subclasses
            raise CheckpointError(f"{path} should be a readable checkpoint table, got: {exc}") from None

    def message(self, kind: str, file: str) -> Any:
        """A message checkpoint of a kind's module's last round."""
        directory = self.round_dir(kind)
        if directory is None:
            return None
        path = directory / file
        try:
            return saved_message(directory, path.stem)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} should be a readable message checkpoint, got: {exc}") from None


# --------------------------------------------------------------------------- reading the run


def _open_run(out_dir: Path) -> tuple[_Run, list[str]]:
    """Read ``run.json`` and find the modules to report on.

    Raises
    ------
    CheckpointError
        Not a run, a run without a completed update, or one with no VAE, GMM or MM.
    """
    if not out_dir.is_dir():
        raise CheckpointError(
            f"{out_dir} should be a serket-ray run directory, got {'a file' if out_dir.exists() else 'nothing'} there"
        )
    manifest = load_manifest(out_dir)
    notes: list[str] = []
    if not isinstance(manifest.get("modules"), dict) or not isinstance(manifest.get("updates"), list):
        raise CheckpointError(
            f"{out_dir / 'run.json'} should hold 'modules' (a mapping) and 'updates' (a list), got something else"
        )
    module_of: dict[str, str] = {}
    for kind in ("vae", "gmm", "mm"):
        names = sorted(n for n, m in manifest["modules"].items() if isinstance(m, dict) and m.get("kind") == kind)
        if names:
            module_of[kind] = names[0]
        if len(names) > 1:
            notes.append(f"The run has {len(names)} {kind.upper()} modules; the report shows the first, {names[0]}.")
    if not module_of:
        raise CheckpointError(
            f"{out_dir} should hold a VAE, GMM or MM module, got modules {sorted(manifest['modules'])}"
        )
    last_round = {
        name: rec.round for name, rec in last_updates(records_of(manifest, str(out_dir / "run.json"))).items()
    }
    if not last_round:
        raise CheckpointError(f"{out_dir} holds no completed update yet; nothing to report")
    for name, rnd in last_round.items():
        if not (out_dir / name / f"{rnd:03d}").is_dir():
            raise CheckpointError(
                f"{out_dir / name / f'{rnd:03d}'} should hold the checkpoint run.json records, got no such directory"
            )
    return _Run(out_dir, manifest, module_of, last_round), notes


def _data_sha256(data: np.ndarray) -> str:
    """SHA-256 of an observation's array as :func:`orchestrator.session.data_fingerprint` computes it."""
    from actors.module import as_data_matrix

    arr = np.ascontiguousarray(as_data_matrix(data, "data"))
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def _labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def _reload_recorded(cli: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The data and labels of a CLI run, from the arguments run.json recorded (never downloading)."""
    if cli.get("dataset") == "mnist" and not cli.get("data"):
        from orchestrator.data import scale_data
        from orchestrator.mnist import tutorial_mnist

        data, labels = tutorial_mnist(cli.get("cache_dir"), download=False)
        return scale_data(data, cli.get("scale") or "none"), labels, "MNIST, the tutorial's 3000 images"
    from orchestrator.inputs import load_run_inputs
    from orchestrator.recipe import TutorialRecipe

    got = load_run_inputs(dataclasses.replace(TutorialRecipe.from_recorded(cli).source, lengths=None))
    return got.data, got.labels, got.source


def _recover_inputs(
    run: _Run, data: np.ndarray | None, labels: Any, labels_key: str | None
) -> tuple[np.ndarray | None, np.ndarray | None, str, list[str]]:
    """The run's observed data and labels, when they can be found and match the run.

    Returns
    -------
    data : numpy.ndarray, shape (N, D), or None
    labels : numpy.ndarray, shape (N,), int64, or None
    source : str
        Where the data came from, for the page.
    notes : list of str
    """
    from actors.module import as_labels
    from orchestrator.data import default_digits, load_labels

    manifest = run.manifest
    notes: list[str] = []
    fingerprint = manifest.get("data") or {}
    obs = [k for k, v in fingerprint.items() if isinstance(v, dict) and "sha256" in v]
    n_points = int(manifest.get("n_points") or 0)
    recorded_labels = None
    source = "given by the caller" if data is not None else "not available"
    cli = manifest.get("cli")
    if data is None and isinstance(cli, dict):
        try:
            data, recorded_labels, source = _reload_recorded(cli)
        except (SerketRayError, OSError) as exc:
            notes.append(
                f"The data could not be reloaded from the recorded command line ({exc}); original images are not shown."
            )
    elif data is None:  # started from Python: the embedded digits are recognised by their SHA-256
        digits, digit_labels = default_digits()
        if len(obs) == 1 and fingerprint[obs[0]]["sha256"] == _data_sha256(digits):
            data, recorded_labels, source = digits, digit_labels, "scikit-learn digits (embedded default)"
        else:
            notes.append("The run was started from Python, so its data are not known; original images are not shown.")
    if data is not None:
        if len(obs) != 1:
            notes.append(f"The run has {len(obs)} observation modules; original images are not shown.")
            data = recorded_labels = None
        elif fingerprint[obs[0]]["sha256"] != _data_sha256(data):
            notes.append(
                f"The data found ({source}) differ from the data the run used (SHA-256 mismatch); original "
                "images are not shown."
            )
            data = recorded_labels = None
            source = "not available"
    if data is not None:
        n_points = data.shape[0]
    if (
        recorded_labels is not None
        and "labels_sha256" in fingerprint
        and _labels_sha256(recorded_labels) != fingerprint["labels_sha256"]
    ):
        notes.append("The recorded labels differ from those the run used (SHA-256 mismatch); they are not used.")
        recorded_labels = None
    if labels is None:
        labels = recorded_labels
    elif isinstance(labels, (str, os.PathLike)):
        labels = load_labels(labels, n_points, labels_key)
    else:
        labels = as_labels(labels, n_points, "labels")
    return data, labels, source, notes


# --------------------------------------------------------------------------- matching clusters to labels


@dataclasses.dataclass(frozen=True)
class _Matching:
    """Clusters and labels in display order: matched pairs first (by label), then the rest."""

    clusters: list[int]  # cluster ids, display order
    cluster_names: list[str]  # tick text of each cluster: its matched label, or "c<id>"
    labels: list[int]  # label values, display order
    label_of: dict[int, int]  # cluster -> matched label


def _chain_order(trans: np.ndarray) -> list[int]:
    """Clusters in the order of a walk along the most probable transitions of ``trans`` (K, K).

    The walk starts at cluster 0 and always moves to the most probable cluster not
    visited yet, so a cyclic sequence shows as the diagonal just right of the main one.
    """
    k = trans.shape[0]
    order = [0]
    left = set(range(1, k))
    while left:
        cur = order[-1]
        nxt = max(left, key=lambda j: (trans[cur, j], -j))
        order.append(nxt)
        left.discard(nxt)
    return order


def _match(
    classes: np.ndarray, labels: np.ndarray | None, n_clusters: int, trans: np.ndarray | None = None
) -> _Matching:
    if labels is None:
        ids = (
            _chain_order(trans)
            if trans is not None and trans.shape == (n_clusters, n_clusters)
            else list(range(n_clusters))
        )
        return _Matching(ids, [f"c{k}" for k in ids], [], {})
    pairs = [(int(lab), int(c)) for c, lab in best_matching(classes, labels)]
    # clusters above the highest one used are left out of the matching; pair them with the labels
    # left over (no points: the accuracy is the same) so that every label has a cluster if it can
    free_labels = sorted(set(int(v) for v in np.unique(labels)) - {lab for lab, _ in pairs})
    free_clusters = sorted(set(range(n_clusters)) - {c for _, c in pairs})
    pairs = sorted(pairs + list(zip(free_labels, free_clusters)))
    label_of = {c: lab for lab, c in pairs}
    clusters = [c for _, c in pairs] + [k for k in range(n_clusters) if k not in label_of]
    names = [str(label_of[k]) if k in label_of else f"c{k}" for k in clusters]
    matched_labels = [lab for lab, _ in pairs]
    rest = [int(v) for v in np.unique(labels) if int(v) not in matched_labels]
    return _Matching(clusters, names, matched_labels + rest, label_of)


def _category_colours(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours (n, 4)."""
    from matplotlib import colormaps

    if n <= 20:  # tab10's colours, then their lighter variants from tab20
        return colormaps["tab20"](np.r_[0:20:2, 1:20:2][:n])
    return colormaps["turbo"](np.linspace(0.05, 0.95, n))


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", dpi=_DPI)
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk leaves no half-written figure behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(path, exc.errno, os.strerror(exc.errno) if exc.errno else str(exc)) from None
        raise
    return path


def _plot_accuracy(acc: list[float | None], chance: float | None, path: Path) -> Path:
    """Accuracy (R,) per round as a line with its values written beside the points."""
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    rounds = np.arange(1, len(acc) + 1)
    values = np.array([np.nan if a is None else a for a in acc], dtype=float)
    ax.plot(rounds, values, marker="o", color="tab:blue")
    for r, a in zip(rounds, values):
        if np.isfinite(a):
            ax.annotate(f"{a:.3f}", (r, a), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=9)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
        ax.text(
            0.6,
            chance + 0.015,
            f"always the most frequent label: {chance:.3f}",
            color="dimgrey",
            fontsize=8,
            va="bottom",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0.5, len(acc) + 0.5)
    ax.set_xticks(rounds if len(rounds) <= 20 else np.unique(np.linspace(1, len(rounds), 10).round().astype(int)))
    ax.grid(True, alpha=0.3)
    ax.set_title("GMM accuracy after each round (clusters matched to labels)")
    return _save(fig, path)


def _annotate_cells(ax: Any, image: Any, values: np.ndarray, fmt: str) -> None:
    """Write each cell's value on a heat map ``image``: black on light cells, white on dark ones."""
    n_rows, n_cols = values.shape
    size = 9 if max(n_rows, n_cols) <= 10 else 7
    rgba = image.cmap(image.norm(values))
    luminance = 0.2126 * rgba[..., 0] + 0.7152 * rgba[..., 1] + 0.0722 * rgba[..., 2]
    for i in range(n_rows):
        for j in range(n_cols):
            ax.text(
                j,
                i,
                format(values[i, j], fmt),
                ha="center",
                va="center",
                fontsize=size,
                color="black" if luminance[i, j] > 0.5 else "white",
            )


def _plot_confusion(classes: np.ndarray, labels: np.ndarray, match: _Matching, path: Path) -> Path:
    """Counts of points per (true label, cluster), clusters in matched order so the diagonal is the match."""
    row = {lab: i for i, lab in enumerate(match.labels)}
    col = {c: j for j, c in enumerate(match.clusters)}
    counts = np.zeros((len(match.labels), len(match.clusters)), dtype=np.int64)
    np.add.at(counts, ([row[int(v)] for v in labels], [col[int(c)] for c in classes]), 1)
    n_r, n_c = counts.shape
    fig = _figure(max(5.5, 0.55 * n_c + 2.6), max(4.5, 0.5 * n_r + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(counts, cmap="Blues", aspect="auto")
    if max(n_r, n_c) <= 20:
        _annotate_cells(ax, im, counts, "d")
    empty = counts.sum(axis=0) == 0
    ticks = [
        (name if name.startswith("c") else f"{name}\n(c{c})") + ("\nempty" if e else "")
        for name, c, e in zip(match.cluster_names, match.clusters, empty)
    ]
    ax.set_xticks(range(n_c), ticks, fontsize=8)
    ax.set_yticks(range(n_r), [str(v) for v in match.labels])
    ax.set_xlabel("GMM cluster: matched label (cluster id)")
    ax.set_ylabel("true label")
    acc = matched_accuracy(classes, labels)
    ax.set_title(f"Confusion matrix, last round (accuracy {acc:.3f})")
    fig.colorbar(im, ax=ax, label="number of points", shrink=0.85)
    return _save(fig, path)


def _plot_transitions(trans: np.ndarray, match: _Matching, path: Path) -> Path:
    """The MM's transition matrix (K, K), rows = current cluster, in matched-label order."""
    order = np.array(match.clusters)
    t = trans[np.ix_(order, order)]
    k = t.shape[0]
    fig = _figure(max(5.5, 0.55 * k + 2.6), max(4.6, 0.5 * k + 1.9))
    ax = fig.add_subplot()
    im = ax.imshow(t, cmap="Greens", vmin=0, vmax=max(float(t.max()), 1e-12), aspect="auto")
    if k <= 15:
        _annotate_cells(ax, im, t, ".2f")
    ax.set_xticks(range(k), match.cluster_names)
    ax.set_yticks(range(k), match.cluster_names)
    by = "matched label" if match.label_of else "cluster id, ordered along likeliest transitions"
    ax.set_xlabel(f"next cluster ({by})")
    ax.set_ylabel(f"current cluster ({by})")
    ax.set_title("Learned transition probabilities P(next | current)")
    fig.colorbar(im, ax=ax, label="transition probability", shrink=0.85)
    return _save(fig, path)


def _pca_2d(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of ``z`` (N, d): scores (N, 2) and explained variance fractions (2,)."""
    zc = z - z.mean(axis=0)
    if z.shape[1] == 1:
        return np.column_stack([zc[:, 0], np.zeros(len(zc))]), np.array([1.0, 0.0])
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    total = float((s**2).sum()) or 1.0
    return zc @ vt[:2].T, s[:2] ** 2 / total


def _scatter_panel(
    ax: Any,
    xy: np.ndarray,
    groups: np.ndarray,
    order: list[int],
    names: list[str],
    colours: np.ndarray,
    title: str,
    legend_title: str,
) -> None:
    for g, name, colour in zip(order, names, colours):
        sel = groups == g
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=colour, alpha=0.6, linewidths=0, label=name, rasterized=True)
    ax.set_title(title)
    if len(order) <= 20:
        ax.legend(
            title=legend_title,
            fontsize=8,
            title_fontsize=8,
            markerscale=2.5,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
        )


def _plot_latent(
    z: np.ndarray, classes: np.ndarray, labels: np.ndarray | None, match: _Matching, path: Path
) -> tuple[Path, np.ndarray]:
    """PCA map of the latents (N, d), coloured by GMM cluster and, beside it, by true label."""
    xy, explained = _pca_2d(z)
    n_labels = len(match.labels)
    # a matched cluster gets its label's colour, so both panels can be compared at a glance
    colours = _category_colours(n_labels + len(match.clusters) - len(match.label_of))
    label_colour = {lab: colours[i] for i, lab in enumerate(match.labels)}
    extra = iter(colours[n_labels:])
    cluster_colours = np.array(
        [label_colour[match.label_of[c]] if c in match.label_of else next(extra) for c in match.clusters]
    )
    panels = 2 if labels is not None else 1
    fig = _figure(5.6 * panels + 0.4, 4.8)
    axes = fig.subplots(1, panels, sharex=True, sharey=True, squeeze=False)[0]
    names = [f"c{c} → {match.label_of[c]}" if c in match.label_of else f"c{c}" for c in match.clusters]
    _scatter_panel(
        axes[0],
        xy,
        classes,
        match.clusters,
        names,
        cluster_colours,
        "coloured by GMM cluster",
        "cluster → label" if match.label_of else "cluster",
    )
    if labels is not None:
        _scatter_panel(
            axes[1],
            xy,
            labels,
            match.labels,
            [str(v) for v in match.labels],
            np.array([label_colour[v] for v in match.labels]),
            "coloured by true label",
            "label",
        )
    for ax in axes:
        ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)")
        ax.grid(True, alpha=0.2)
    axes[0].set_ylabel(f"PC 2 ({100 * explained[1]:.0f}% of variance)")
    fig.suptitle(f"VAE latent space, last round: PCA of {z.shape[0]} points × {z.shape[1]} dimensions")
    return _save(fig, path), explained


def _pick_examples(n_points: int, labels: np.ndarray | None, n: int = 20) -> np.ndarray:
    """Up to ``n`` point indices: the first points of each label in turn when labelled, else the first ``n``."""
    if labels is None or len(np.unique(labels)) > n:
        return np.arange(min(n, n_points))
    values = np.unique(labels)
    per = max(1, n // len(values))
    picked = [np.flatnonzero(labels == v)[:per] for v in values]
    return np.sort(np.concatenate(picked))[:n]


def _plot_reconstructions(
    x_hat: np.ndarray, data: np.ndarray | None, idx: np.ndarray, labels: np.ndarray | None, path: Path
) -> Path:
    """Reconstructions (N, D) of the points ``idx``, under their originals (N, D) when known."""
    d = x_hat.shape[1]
    side = math.isqrt(d)
    rows_per = 2 if data is not None else 1
    shown = [data[idx]] if data is not None else []
    shown.append(x_hat[idx])
    lo = min(float(a.min()) for a in shown)
    hi = max(float(a.max()) for a in shown)
    if side * side == d:
        n_cols = min(10, len(idx))
        n_groups = math.ceil(len(idx) / n_cols)
        n_rows = n_groups * rows_per
        fig = _figure(1.0 * n_cols + 1.3, 1.05 * n_rows + 0.7)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        kinds = ["original", "reconstruction"] if data is not None else ["reconstruction"]
        for k, i in enumerate(idx):
            g, c = divmod(k, n_cols)
            for r, arr in enumerate(shown):
                ax = axes[g * rows_per + r, c]
                ax.imshow(arr[k].reshape(side, side), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            if labels is not None:
                axes[g * rows_per, c].set_title(f"#{i} ({labels[i]})", fontsize=8)
            else:
                axes[g * rows_per, c].set_title(f"#{i}", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.set_axis_off()
        for g in range(n_groups):
            for r, kind in enumerate(kinds):
                axes[g * rows_per + r, 0].set_ylabel(kind, fontsize=8)
        what = (
            "Originals (upper row of each pair) and VAE reconstructions"
            if data is not None
            else "VAE reconstructions (data not available)"
        )
        fig.suptitle(
            f"{what}, last round; above each column: point index" + (" (true label)" if labels is not None else "")
        )
        return _save(fig, path)
    # features that are not a square image: one line plot per point
    k = min(6, len(idx))
    fig = _figure(9.0, 1.3 * k + 0.8)
    axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    for ax, i in zip(axes, idx[:k]):
        if data is not None:
            ax.plot(data[i], color="black", linewidth=1, label="original")
        ax.plot(x_hat[i], color="tab:red", linewidth=1, label="reconstruction")
        ax.set_ylabel(f"point #{i}" + (f"\nlabel {labels[i]}" if labels is not None else ""), fontsize=8)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    axes[0].legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("feature index")
    what = (
        "Original (black) and reconstructed (red) features"
        if data is not None
        else "Reconstructed features (data not available)"
    )
    fig.suptitle(f"{what} of {k} points, VAE's last round")
    return _save(fig, path)


def _plot_loss(losses: list[np.ndarray], path: Path) -> Path:
    """VAE loss per epoch (E_r,) of every round r, end to end, round boundaries marked."""
    fig = _figure(7.5, 3.8)
    ax = fig.add_subplot()
    start = 0
    y = np.concatenate(losses)
    ymax = float(y.max())
    for r, loss in enumerate(losses):
        x = np.arange(start + 1, start + len(loss) + 1)
        ax.plot(x, loss, color="tab:blue", linewidth=1.3)
        if r > 0:
            ax.axvline(start + 0.5, color="grey", linestyle="--", linewidth=0.8)
        if len(losses) <= 12:
            ax.text(
                start + 0.5 + len(loss) / 2,
                1.01,
                f"round {r + 1}",
                ha="center",
                va="bottom",
                fontsize=8,
                color="dimgrey",
                transform=ax.get_xaxis_transform(),
            )
        start += len(loss)
    if float(y.min()) > 0 and ymax / float(y.min()) > 20:
        ax.set_yscale("log")
    ax.set_xlim(0.5, start + 0.5)
    ax.set_xlabel("epoch (all rounds end to end; dashed lines: start of a round)")
    ax.set_ylabel("loss per point (−ELBO)")
    ax.set_title("VAE training loss", pad=16)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- the page


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 60em; } .notes li { color: #8a4b00; }
"""


def _cell(value: Any, fmt: str = "") -> str:
    return "<td>—</td>" if value is None else f"<td>{html.escape(format(value, fmt))}</td>"


def _rounds_table(rounds: list[dict[str, Any]], accuracy: list[float | None], modules: list[str]) -> str:
    head = "".join(f"<th>{html.escape(m)} (s)</th>" for m in modules)
    rows = []
    for i, entry in enumerate(rounds):
        secs = entry.get("seconds", {})
        acc = accuracy[i] if i < len(accuracy) else None
        total = sum(float(v) for v in secs.values()) if secs else None
        acc_cell = '<td class="acc">—</td>' if acc is None else f'<td class="acc">{acc:.4f}</td>'
        rows.append(
            f"<tr><td>{int(entry.get('round', i)) + 1}</td>{acc_cell}"
            + "".join(_cell(secs.get(m), ".2f") for m in modules)
            + _cell(total, ".2f")
            + "</tr>"
        )
    return (
        f'<table id="rounds"><thead><tr><th>round</th><th>accuracy</th>{head}<th>total (s)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _config_line(manifest: dict[str, Any], name: str) -> str:
    entry = manifest["modules"].get(name, {})
    cfg = entry.get("config", {}) if isinstance(entry, dict) else {}
    keys = {
        "vae": ("latent_dim", "epochs", "batch_size", "hidden"),
        "gmm": ("n_components", "n_sweeps"),
        "mm": ("message", "counts", "alpha"),
    }
    shown = ", ".join(f"{k} = {cfg[k]}" for k in keys.get(entry.get("kind", ""), ()) if k in cfg)
    kind = html.escape(str(entry.get("kind", "?")))
    detail = ": " + html.escape(shown) if shown else ""
    return f"<li><code>{html.escape(name)}</code> ({kind}){detail}</li>"


def _write_html(
    path: Path,
    run: _Run,
    source: str,
    accuracy: list[float | None],
    acc_note: str,
    figures: list[tuple[str, Path, str]],
    notes: list[str],
) -> None:
    m = run.manifest
    rounds = m.get("rounds", [])
    modules = sorted({k for r in rounds for k in r.get("seconds", {})})
    title = f"serket-ray report: {run.out.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>",
        f"<li>run directory: <code>{html.escape(str(run.out.resolve()))}</code></li>",
        f"<li>data: {html.escape(source)}; {m.get('n_points', '?')} points</li>",
        f"<li>seed {html.escape(str(m.get('seed')))}, backend {html.escape(str(m.get('backend', '?')))}, "
        f"{len(rounds)} round(s) completed of {html.escape(str(m.get('target_rounds', '?')))}"
        + (f", {float(m['total_seconds']):.1f} s in all" if isinstance(m.get("total_seconds"), (int, float)) else "")
        + "</li>",
        "</ul>",
        "<h2>Modules</h2><ul>",
        *(_config_line(m, name) for name in sorted(m["modules"]) if name in run.last_round),
        "</ul>",
        "<h2>Rounds</h2>",
        "<p>Accuracy: fraction of points whose GMM cluster is matched (Hungarian matching) to their label. "
        f"Seconds: wall time of each module's update.{html.escape(acc_note)}</p>",
        _rounds_table(rounds, accuracy, modules),
    ]
    if notes:
        parts += ['<h2>Notes</h2><ul class="notes">', *(f"<li>{html.escape(n)}</li>" for n in notes), "</ul>"]
    parts.append("<h2>Figures</h2>")
    for name, png, caption in figures:
        parts.append(
            f'<figure id="{name}"><img src="{html.escape(png.name)}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    checkpoint.atomic_write_bytes(path, ("\n".join(parts) + "\n").encode())


# --------------------------------------------------------------------------- entry point


def make_report(
    out_dir: str | os.PathLike[str],
    labels: str | os.PathLike[str] | np.ndarray | None = None,
    data: np.ndarray | None = None,
    labels_key: str | None = None,
) -> Report:
    """Write ``<out_dir>/report/index.html`` and its PNG figures.

    Parameters
    ----------
    out_dir : path
        A run's output directory (with its ``run.json``).
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
    out = Path(out_dir)
    run, notes = _open_run(out)
    data, labels, source, more = _recover_inputs(run, data, labels, labels_key)
    notes += more
    report_dir = out / REPORT_DIR
    report_dir.mkdir(exist_ok=True)
    for old in FIGURES:  # figures of an earlier report that this one may not redraw
        (report_dir / f"{old}.png").unlink(missing_ok=True)
    figures: list[tuple[str, Path, str]] = []
    m = run.manifest
    rounds = m.get("rounds", [])

    gmm = run.arrays("gmm", "report.arrow")
    classes = None if gmm is None else np.asarray(gmm["labels"], dtype=np.int64)
    n_clusters = (
        0 if gmm is None else max(int(gmm["weights"].shape[0]) if "weights" in gmm else 0, int(classes.max()) + 1)
    )
    if labels is not None and classes is not None and len(labels) != len(classes):
        raise CheckpointError(
            f"{out}: the GMM's last round has {len(classes)} points, the labels {len(labels)}; they should be equal"
        )

    # accuracy per round: as recorded, else computed here from each round's clusters
    accuracy: list[float | None] = [r.get("accuracy") for r in rounds]
    acc_note = ""
    if labels is not None and gmm is not None and not any(a is not None for a in accuracy):
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
                _plot_accuracy(accuracy, chance, report_dir / "accuracy.png"),
                "GMM clustering accuracy after each round: the fraction of points whose cluster is matched to "
                "their label by the "
                "best one-to-one (Hungarian) matching. The dashed line is what always answering the most "
                "frequent label would score.",
            )
        )
    else:
        notes.append("No accuracy figure: the run recorded no accuracy and no labels were given (use --labels FILE).")

    mm = run.arrays("mm", "report.arrow")
    trans = None if mm is None else mm.get("transitions")
    match = None if classes is None else _match(classes, labels, n_clusters, trans)
    if classes is None:
        notes.append("No GMM module: the confusion matrix, transition and latent figures need its clusters.")
    elif labels is not None:
        figures.append(
            (
                "confusion",
                _plot_confusion(classes, labels, match, report_dir / "confusion.png"),
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
        empty = [name for name, c in zip(match.cluster_names, match.clusters) if not (classes == c).any()]
        if empty:
            by += f" Clusters without points ({', '.join(empty)}) keep the prior's uniform row."
        figures.append(
            (
                "transitions",
                _plot_transitions(trans, match, report_dir / "transitions.png"),
                "The Markov model's learned transition matrix, last round: row = current cluster, column = "
                f"next cluster; rows sum to one. {by}",
            )
        )
    elif "mm" not in run.module_of:
        notes.append("No transition figure: the run has no Markov model (--no-mm).")

    if "vae" in run.module_of:
        z = run.message("vae", "latents.arrow").z
        if classes is not None and len(classes) == len(z):
            path, explained = _plot_latent(z, classes, labels, match, report_dir / "latent.png")
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
        idx = _pick_examples(x_hat.shape[0], labels)
        shown_data = data if data is not None and data.shape == x_hat.shape else None
        square = math.isqrt(x_hat.shape[1]) ** 2 == x_hat.shape[1]
        if shown_data is None:
            caption = "Reconstructions by the VAE's last round (the original data could not be found, see the notes)"
        elif square:
            caption = "Originals above their reconstructions by the VAE's last round"
        else:
            caption = (
                "Original features (black) and their reconstructions (red) by the VAE's last round, one point a row"
            )
        caption += (
            ", the first points of each label."
            if labels is not None and len(np.unique(labels)) <= len(idx)
            else ", the first points."
        )
        if not square:
            caption += f" The {x_hat.shape[1]} features are not a square image, so they are drawn as lines."
        figures.append(
            (
                "reconstructions",
                _plot_reconstructions(x_hat, shown_data, idx, labels, report_dir / "reconstructions.png"),
                caption,
            )
        )
        vae_name = run.module_of["vae"]
        losses = [
            run.arrays("vae", "report.arrow", r)["loss"]
            for r in sorted({u["round"] for u in m["updates"] if u["module"] == vae_name})
        ]
        if sum(len(v) for v in losses):
            figures.append(
                (
                    "loss",
                    _plot_loss(losses, report_dir / "loss.png"),
                    "The VAE's loss (negative ELBO per point, averaged over each epoch) over every epoch of "
                    "every round, end to end; "
                    "dashed lines mark where a round starts (the VAE continues from its previous weights, with "
                    "the GMM's new prior).",
                )
            )
    else:
        notes.append("No latent, reconstruction or loss figures: the run has no VAE module.")

    index = report_dir / "index.html"
    _write_html(index, run, source, accuracy, acc_note, figures, notes)
    log.info("report of %s written to %s (%d figures)", out, index, len(figures))
    return Report(index, {name: png for name, png, _ in figures}, notes)
