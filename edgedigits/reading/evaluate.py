"""Evaluate a classifier on a labelled folder of real photos.

Two layouts: ``DIR/<digit>/<image>`` (one digit per image) and ``DIR/labels.csv`` listing
``file,number`` (a written number per image). Every image goes through exactly what
``infer/classify.py`` does to a file (:func:`edgedigits.reading.classify.classify_files`,
single or, with numbers, multi); an image with no readable digit counts as wrong.
The digit report (JSON-ready) holds accuracy, per-digit accuracy, the confusion matrix of the
images read, every misread file and every file skipped; the number report string accuracy
(the whole number read exactly), digit accuracy (digits of the labels matched, by edit
distance) and every misread file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedigits import runtime
from edgedigits.data.evalsets import is_number_folder, load_labelled_folder, load_number_folder
from edgedigits.files import staged_set, write_json
from edgedigits.reading.classify import classify_files
from edgedigits.report import confusion_matrix, plot_confusion_matrix
from edgedigits.tasks import MULTI

SKIPPED_SHOWN = 20


def evaluate_folder(classifier: runtime.DigitClassifier, root: str, quiet: bool) -> dict:
    if is_number_folder(root):
        return evaluate_numbers(classifier, root, quiet)
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
        **_describe(classifier),
        "accuracy": round(float(correct.mean()), 4),
        "count": len(rows),
        "correct": int(correct.sum()),
        "unread": int((~ok).sum()),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "errors": errors,
        "skipped": [{"path": str(p), "reason": why} for p, why in folder.skipped],
    }


def _describe(classifier: runtime.DigitClassifier) -> dict:
    return {"model": str(classifier.model_path), "backend": classifier.backend,
            "variant": classifier.variant, "precision": classifier.precision,
            "device": classifier.device, "model_description": classifier.describe()}


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def evaluate_numbers(classifier: runtime.DigitClassifier, root: str, quiet: bool) -> dict:
    """A ``labels.csv`` folder of written numbers, read like ``classify.py --multi``."""
    folder = load_number_folder(root)
    paths = [path for path, _ in folder.samples]
    rows = classify_files(classifier, paths, quiet, MULTI)
    exact = digits_right = digits_total = 0
    errors = []
    for row, (_, label) in zip(rows, folder.samples, strict=True):
        read = row.number or ""
        digits_total += len(label)
        digits_right += max(0, len(label) - edit_distance(label, read))
        if read == label:
            exact += 1
        else:
            errors.append({"path": row.path, "label": label, "number": row.number,
                           "confidence": row.confidence, "error": row.error})
    return {
        "root": str(folder.root),
        "kind": "numbers",
        **_describe(classifier),
        "accuracy": round(exact / len(rows), 4),
        "digit_accuracy": round(digits_right / max(digits_total, 1), 4),
        "count": len(rows),
        "correct": exact,
        "digits": digits_total,
        "unread": sum(row.error is not None for row in rows),
        "errors": errors,
    }


def write_evaluation(report: dict, output: Path, title: str) -> list[Path]:
    """``output``/eval.json and (digits) ``output``/confusion_matrix.png, published together."""
    if report.get("kind") == "numbers":
        return [write_json(output / "eval.json", report)]
    with staged_set(output, "eval", ("confusion_matrix.png", "eval.json")) as staging:
        plot_confusion_matrix(report["confusion_matrix"], staging / "confusion_matrix.png",
                              title=title)
        write_json(staging / "eval.json", report)
    return [output / "confusion_matrix.png", output / "eval.json"]


def print_evaluation(report: dict) -> None:
    if report.get("kind") == "numbers":
        print_number_evaluation(report)
        return
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


def print_number_evaluation(report: dict) -> None:
    print(f"{report['root']}: string accuracy {report['accuracy']:.2%} ({report['correct']} of "
          f"{report['count']} numbers read exactly; {report['unread']} without a readable "
          f"digit), digit accuracy {report['digit_accuracy']:.2%} (of {report['digits']} "
          f"digits)")
    print(f"model: {report['model_description']}")
    if report["errors"]:
        print(f"\nmisread ({len(report['errors'])}):")
        for error in report["errors"]:
            what = f"read {error['number']}" if error["number"] is not None else error["error"]
            print(f"  {error['path']}: is {error['label']}, {what}")
