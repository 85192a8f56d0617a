"""Metrics against hand-computed values; plots and CSV are written and readable."""

from __future__ import annotations

import cv2
import numpy as np

from edgedigits.report import (
    classification_metrics,
    markdown_table,
    plot_confusion_matrix,
    plot_training_curves,
    write_history_csv,
)


def test_metrics_match_hand_computation():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2])
    metrics = classification_metrics(y_true, y_pred, num_classes=3)
    assert metrics["accuracy"] == 4 / 6
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    one = metrics["per_class"]["1"]
    assert (one["precision"], one["recall"]) == (round(2 / 3, 6), round(2 / 3, 6))
    assert one["support"] == 3
    assert metrics["per_class"]["2"]["precision"] == 0.5


def test_plots_and_history_are_written(tmp_path):
    matrix = np.diag([50] * 10) + np.eye(10, k=1, dtype=int) * 3
    plot_confusion_matrix(matrix, tmp_path / "cm.png")
    plot_training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.8, 0.9]},
                         tmp_path / "curves.png")
    for name in ("cm.png", "curves.png"):
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and min(image.shape[:2]) > 300
    write_history_csv({"loss": [1.0, 0.5], "accuracy": [0.8, 0.9]}, tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().splitlines() == [
        "epoch,loss,accuracy", "1,1.000000,0.800000", "2,0.500000,0.900000"]


def test_markdown_table():
    table = markdown_table([{"a": 1, "b": "x"}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]
