"""``orchestrator.report_figures``: the display order of clusters and the PNG files (no run, under a second)."""

from __future__ import annotations

import numpy as np

from orchestrator.report_figures import chain_order, match_clusters, pick_examples, plot_accuracy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_chain_order_follows_the_likeliest_transitions() -> None:
    cycle = np.roll(np.eye(4), 1, axis=1)[[0, 2, 1, 3]][:, [0, 2, 1, 3]]  # a cycle visiting 0, 2, 1, 3
    assert chain_order(0.9 * cycle + 0.025) == [0, 2, 1, 3]


def test_clusters_are_ordered_by_their_matched_label_and_spare_ones_come_last() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    classes = np.array([3, 3, 0, 0, 1, 1])  # cluster 3 is label 0, 0 is 1, 1 is 2; cluster 2 and 4 hold nothing
    match = match_clusters(classes, labels, 5)
    assert match.clusters[:3] == [3, 0, 1]
    assert match.label_of[3] == 0 and match.label_of[0] == 1 and match.label_of[1] == 2
    assert sorted(match.clusters) == [0, 1, 2, 3, 4]
    assert match.cluster_names[:3] == ["0", "1", "2"]
    assert match.labels == [0, 1, 2]


def test_without_labels_clusters_follow_the_transitions() -> None:
    trans = np.full((3, 3), 0.05) + 0.85 * np.roll(np.eye(3), 1, axis=1)[[0, 2, 1]][:, [0, 2, 1]]
    match = match_clusters(np.array([0, 1, 2]), None, 3, trans)
    assert match.clusters == chain_order(trans)
    assert match.cluster_names == [f"c{k}" for k in match.clusters]
    assert match.label_of == {}


def test_examples_take_the_first_points_of_each_label() -> None:
    labels = np.array([1, 0, 1, 0, 2, 2, 1])
    np.testing.assert_array_equal(pick_examples(7, labels, n=3), [0, 1, 4])
    np.testing.assert_array_equal(pick_examples(5, None, n=3), [0, 1, 2])


def test_accuracy_figure_is_a_png_written_in_place(tmp_path) -> None:
    path = plot_accuracy([0.5, None, 0.75], 0.3, tmp_path / "accuracy.png")
    assert path == tmp_path / "accuracy.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png"]  # no temporary file left
