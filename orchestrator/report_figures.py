"""The figures of a run's report, drawn with matplotlib's Agg canvas, and the display order of clusters.

The figures are drawn on :class:`matplotlib.figure.Figure` objects, without
``pyplot``: making a report neither needs a display nor changes the backend of the
calling process.

The latent map is a PCA projection (numpy SVD): scikit-learn's TSNE took 45 s
on the tutorial's 3000 points (18-D latents, 2 CPU cores), PCA 0.02 s.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from actors.scoring import accuracy as matched_accuracy
from actors.scoring import best_matching
from messages.errors import StorageError

_DPI = 110


@dataclasses.dataclass(frozen=True)
class Matching:
    """Clusters and labels in display order: matched pairs first (by label), then the rest."""

    clusters: list[int]  # cluster ids, display order
    cluster_names: list[str]  # tick text of each cluster: its matched label, or "c<id>"
    labels: list[int]  # label values, display order
    label_of: dict[int, int]  # cluster -> matched label


def chain_order(trans: np.ndarray) -> list[int]:
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


def match_clusters(
    classes: np.ndarray, labels: np.ndarray | None, n_clusters: int, trans: np.ndarray | None = None
) -> Matching:
    """Display order of K clusters: by matched label (clusters (N,), labels (N,)), else along ``trans`` (K, K)."""
    if labels is None:
        ids = (
            chain_order(trans)
            if trans is not None and trans.shape == (n_clusters, n_clusters)
            else list(range(n_clusters))
        )
        return Matching(ids, [f"c{k}" for k in ids], [], {})
    pairs = [(int(lab), int(c)) for c, lab in best_matching(classes, labels)]
    # clusters above the highest one used are left out of the matching; pair them with the labels
    # left over (no points: the accuracy is the same) so that every label has a cluster if it can
    free_labels = sorted(set(int(v) for v in np.unique(labels)) - {lab for lab, _ in pairs})
    free_clusters = sorted(set(range(n_clusters)) - {c for _, c in pairs})
    pairs = sorted(pairs + list(zip(free_labels, free_clusters, strict=False)))  # as many as the shorter has
    label_of = {c: lab for lab, c in pairs}
    clusters = [c for _, c in pairs] + [k for k in range(n_clusters) if k not in label_of]
    names = [str(label_of[k]) if k in label_of else f"c{k}" for k in clusters]
    matched_labels = [lab for lab, _ in pairs]
    rest = [int(v) for v in np.unique(labels) if int(v) not in matched_labels]
    return Matching(clusters, names, matched_labels + rest, label_of)


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


def plot_accuracy(acc: list[float | None], chance: float | None, path: Path) -> Path:
    """Accuracy (R,) per round as a line with its values written beside the points."""
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    rounds = np.arange(1, len(acc) + 1)
    values = np.array([np.nan if a is None else a for a in acc], dtype=float)
    ax.plot(rounds, values, marker="o", color="tab:blue")
    for r, a in zip(rounds, values, strict=True):
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


def plot_confusion(classes: np.ndarray, labels: np.ndarray, match: Matching, path: Path) -> Path:
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
        for name, c, e in zip(match.cluster_names, match.clusters, empty, strict=True)
    ]
    ax.set_xticks(range(n_c), ticks, fontsize=8)
    ax.set_yticks(range(n_r), [str(v) for v in match.labels])
    ax.set_xlabel("GMM cluster: matched label (cluster id)")
    ax.set_ylabel("true label")
    acc = matched_accuracy(classes, labels)
    ax.set_title(f"Confusion matrix, last round (accuracy {acc:.3f})")
    fig.colorbar(im, ax=ax, label="number of points", shrink=0.85)
    return _save(fig, path)


def plot_transitions(trans: np.ndarray, match: Matching, path: Path) -> Path:
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
    for g, name, colour in zip(order, names, colours, strict=True):
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


def plot_latent(
    z: np.ndarray, classes: np.ndarray, labels: np.ndarray | None, match: Matching, path: Path
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


def pick_examples(n_points: int, labels: np.ndarray | None, n: int = 20) -> np.ndarray:
    """Up to ``n`` point indices: the first points of each label in turn when labelled, else the first ``n``."""
    if labels is None or len(np.unique(labels)) > n:
        return np.arange(min(n, n_points))
    values = np.unique(labels)
    per = max(1, n // len(values))
    picked = [np.flatnonzero(labels == v)[:per] for v in values]
    return np.sort(np.concatenate(picked))[:n]


def plot_reconstructions(
    x_hat: np.ndarray, data: np.ndarray | None, idx: np.ndarray, labels: np.ndarray | None, path: Path
) -> Path:
    """Reconstructions (N, D) of the points ``idx``, under their originals (N, D) when known."""
    shown = [data[idx]] if data is not None else []
    shown.append(x_hat[idx])
    lo = min(float(a.min()) for a in shown)
    hi = max(float(a.max()) for a in shown)
    if math.isqrt(x_hat.shape[1]) ** 2 == x_hat.shape[1]:
        return _save(_image_grid(shown, idx, labels, (lo, hi)), path)
    return _save(_feature_lines(x_hat, data, idx, labels, (lo, hi)), path)


def _image_grid(shown: list[np.ndarray], idx: np.ndarray, labels: np.ndarray | None, span: tuple[float, float]) -> Any:
    """Square images (n, side * side) in groups of rows: the originals, if shown, above their reconstructions."""
    lo, hi = span
    side = math.isqrt(shown[0].shape[1])
    rows_per = len(shown)
    n_cols = min(10, len(idx))
    n_groups = math.ceil(len(idx) / n_cols)
    n_rows = n_groups * rows_per
    fig = _figure(1.0 * n_cols + 1.3, 1.05 * n_rows + 0.7)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    kinds = ["original", "reconstruction"] if rows_per == 2 else ["reconstruction"]
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
        if rows_per == 2
        else "VAE reconstructions (data not available)"
    )
    fig.suptitle(
        f"{what}, last round; above each column: point index" + (" (true label)" if labels is not None else "")
    )
    return fig


def _feature_lines(
    x_hat: np.ndarray, data: np.ndarray | None, idx: np.ndarray, labels: np.ndarray | None, span: tuple[float, float]
) -> Any:
    """Features that are not a square image: one line plot per point, original (N, D) and reconstruction (N, D)."""
    lo, hi = span
    k = min(6, len(idx))
    fig = _figure(9.0, 1.3 * k + 0.8)
    axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    for ax, i in zip(axes, idx[:k], strict=True):
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
    return fig


def plot_loss(losses: list[np.ndarray], path: Path) -> Path:
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
