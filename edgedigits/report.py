"""Reports people can read: classification metrics, confusion matrices, training curves.

Pure numpy for the numbers; matplotlib (imported lazily, headless) for the pictures.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgedigits import CLASS_LABELS
from edgedigits.files import atomic_path, write_text


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Counts[true, predicted]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix, JSON-ready."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total = int(matrix.sum())
    return {
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "count": total,
        "per_class": {
            CLASS_LABELS[k]: {
                "precision": round(float(precision[k]), 6),
                "recall": round(float(recall[k]), 6),
                "f1": round(float(f1[k]), 6),
                "support": int(actual[k]),
            }
            for k in range(num_classes)
        },
        "confusion_matrix": matrix.tolist(),
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: edge boxes and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".png") as staged:
        figure.savefig(staged, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return Path(path)


def plot_confusion_matrix(
    matrix: np.ndarray | Sequence, path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """Counts in every cell, diagonal in blue, errors in red, so mistakes stand out."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    size = len(matrix)
    errors = matrix.copy()
    np.fill_diagonal(errors, 0)
    figure, axes = plt.subplots(figsize=(7, 6))
    row_totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axes.imshow(matrix / row_totals, cmap="Blues", vmin=0, vmax=1)
    error_max = max(int(errors.max()), 1)
    for true in range(size):
        for predicted in range(size):
            count = int(matrix[true, predicted])
            if count == 0:
                continue
            on_diagonal = true == predicted
            color = (
                "white"
                if on_diagonal and count / row_totals[true, 0] > 0.5
                else ("black" if on_diagonal else plt.cm.Reds(0.4 + 0.6 * count / error_max))
            )
            axes.text(
                predicted,
                true,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color=color,
                fontweight="normal" if on_diagonal else "bold",
            )
    labels = CLASS_LABELS[:size]
    axes.set_xticks(range(size), labels)
    axes.set_yticks(range(size), labels)
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axes.set_title(f"{title} — accuracy {accuracy:.2%} of {int(matrix.sum()):,}")
    return _save_figure(figure, path)


def plot_training_curves(
    history: dict[str, list[float]], path: str | os.PathLike, title: str = "Training"
) -> Path:
    """Loss and accuracy per epoch, training vs validation, side by side."""
    plt = _pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for axes, key, label in ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy")):
        if key in history:
            axes.plot(epochs, history[key], "o-", label=f"training {label}")
        if f"val_{key}" in history:
            axes.plot(epochs, history[f"val_{key}"], "s--", label=f"validation {label}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return _save_figure(figure, path)


def write_history_csv(history: dict[str, list[float]], path: str | os.PathLike) -> Path:
    """One row per epoch: epoch, then every metric Keras recorded."""
    keys = list(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for index in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([index + 1, *(f"{float(history[k][index]):.6f}" for k in keys)])
    return write_text(path, buffer.getvalue())


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines) + "\n"
