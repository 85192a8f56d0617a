"""Evaluate a classifier on a labelled folder ``DIR/<digit>/<image>`` of real photos.

Every image goes through exactly what ``infer/classify.py`` does to a file
(:func:`edgedigits.classify.classify_files`); an image with no readable digit counts as wrong.
The report (JSON-ready) holds accuracy, per-digit accuracy, the confusion matrix of the images
read, every misread file and every file skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedigits import runtime
from edgedigits.classify import classify_files
from edgedigits.evalsets import load_labelled_folder
from edgedigits.files import staged_set, write_json
from edgedigits.report import confusion_matrix, plot_confusion_matrix

SKIPPED_SHOWN = 20


def evaluate_folder(classifier: runtime.DigitClassifier, root: str, quiet: bool) -> dict:
    folder = load_labelled_folder(root)
    paths = [path for path, _ in folder.samples]
    labels = folder.labels.astype(np.int64)
    rows = classify_files(classifier, paths, quiet)
    read = np.array([row.digit if row.digit is not None else -1 for row in rows])
    correct = read == labels
    ok = read >= 0
    matrix = confusion_matrix(labels[ok], read[ok])
    per_class = {}
    for digit in range(10):
        mine = labels == digit
        if mine.any():
            per_class[str(digit)] = {"count": int(mine.sum()), "correct": int(correct[mine].sum()),
                                     "accuracy": round(float(correct[mine].mean()), 4),
                                     "unread": int((mine & ~ok).sum())}
    errors = [
        {"path": row.path, "label": int(label), "digit": row.digit,
         "confidence": row.confidence, "error": row.error}
        for row, label, right in zip(rows, labels, correct, strict=True) if not right
    ]
    return {
        "root": str(folder.root),
        "model": str(classifier.model_path),
        "backend": classifier.backend,
        "variant": classifier.variant,
        "precision": classifier.precision,
        "device": classifier.device,
        "model_description": classifier.describe(),
        "accuracy": round(float(correct.mean()), 4),
        "count": len(rows),
        "correct": int(correct.sum()),
        "unread": int((~ok).sum()),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "errors": errors,
        "skipped": [{"path": str(p), "reason": why} for p, why in folder.skipped],
    }


def write_evaluation(report: dict, output: Path, title: str) -> tuple[Path, Path]:
    """``output``/confusion_matrix.png and ``output``/eval.json, published together."""
    with staged_set(output, "eval", ("confusion_matrix.png", "eval.json")) as staging:
        plot_confusion_matrix(report["confusion_matrix"], staging / "confusion_matrix.png",
                              title=title)
        write_json(staging / "eval.json", report)
    return output / "confusion_matrix.png", output / "eval.json"


def print_evaluation(report: dict) -> None:
    print(f"{report['root']}: accuracy {report['accuracy']:.2%} ({report['correct']} of "
          f"{report['count']} images; {report['unread']} without a readable digit)")
    print(f"model: {report['model_description']}\n")
    print("digit  images  accuracy")
    for digit, stats in report["per_class"].items():
        print(f"{digit:>5}  {stats['count']:>6}  {stats['accuracy']:>8.1%}")
    print("\nconfusion matrix (rows: true digit, columns: digit read)")
    print("      " + "".join(f"{d:>5}" for d in range(10)))
    for digit, counts in enumerate(report["confusion_matrix"]):
        if sum(counts) or str(digit) in report["per_class"]:
            print(f"{digit:>5} " + "".join(f"{c or '.':>5}" for c in counts))
    if report["errors"]:
        print(f"\nmisread ({len(report['errors'])}):")
        for error in report["errors"]:
            what = (f"read {error['digit']} ({error['confidence']:.0%})"
                    if error["digit"] is not None else error["error"])
            print(f"  {error['path']}: is {error['label']}, {what}")
    if report["skipped"]:
        print(f"\nskipped ({len(report['skipped'])}):")
        for item in report["skipped"][:SKIPPED_SHOWN]:
            print(f"  {item['path']}: {item['reason']}")
        if len(report["skipped"]) > SKIPPED_SHOWN:
            print(f"  ... and {len(report['skipped']) - SKIPPED_SHOWN} more")
