"""Classify handwritten digits in image files (OpenVINO by default; no TensorFlow needed).

    python infer/classify.py photo.jpg scans/ "shots/*.png"     # table + summary
    python infer/classify.py --json photo.jpg                    # JSON list, one object per input
    python infer/classify.py --multi number.jpg                  # several digits, left to right
    python infer/classify.py --eval labelled/ --output report/   # DIR/<digit>/*.jpg -> accuracy

Steps: find the images -> read and normalise each to MNIST format (edgedigits.preprocess, in
parallel threads) -> one batched inference (edgedigits.runtime) -> print.
Exit status: 0 all read; 1 some inputs failed (each says why in its row); 2 nothing could be
read, or a bad flag/model/device (one line on stderr).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedigits import preprocess, runtime, segment
from edgedigits.cli import ArgumentParser, run
from edgedigits.errors import UserError
from edgedigits.evalsets import is_image_file, load_labelled_folder
from edgedigits.files import ensure_writable_dir, write_json

EXIT_SOME_FAILED = 1
EXIT_ALL_FAILED = 2
PROGRESS_MIN_FILES = 20  # a progress bar only where there is time to watch one
INFERENCE_CHUNK = 1024


# --------------------------------------------------------------------------------------------
# 1. Find the images


@dataclass(eq=False)  # hashable by identity: rows are deduplicated with paths
class Row:
    """One input and what was read in it (the JSON object of --json)."""

    path: str
    digit: int | None = None
    confidence: float | None = None
    top3: list[dict] = field(default_factory=list)
    error: str | None = None
    # --multi only
    number: str | None = None
    detections: list[dict] | None = None

    def as_json(self, multi: bool) -> dict:
        data = {"path": self.path, "digit": self.digit, "confidence": self.confidence,
                "top3": self.top3, "error": self.error}
        if multi:
            data["number"] = self.number
            data["detections"] = self.detections
        return data


def find_images(patterns: list[str]) -> list[Path | Row]:
    """Files, folders (recursive, image extensions only) and globs -> paths in the order given,
    with an error row in place of each pattern that names nothing readable."""
    found: list[Path | Row] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found.append(path)  # named explicitly: try it whatever its extension
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not images:
                found.append(Row(pattern, error="folder holds no image files"))
            found += images
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                found.append(Row(pattern, error="no file matches this pattern"))
            found += files
        else:
            found.append(Row(pattern, error="no such file or folder"))
    return list(dict.fromkeys(found))  # a file named twice (file + its folder) is read once


# --------------------------------------------------------------------------------------------
# 2. Read and normalise


def _error_text(path: Path, error: Exception) -> str:
    message = str(error)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def prepare(path: Path) -> tuple[np.ndarray | None, str | None]:
    """One file -> (28x28 MNIST-format digit, None) or (None, why not)."""
    try:
        digit = preprocess.to_mnist_format(preprocess.read_image(path))
    except UserError as error:
        return None, _error_text(path, error)
    except cv2.error as error:  # OpenCV refusing a malformed file is still the file's fault
        return None, f"OpenCV cannot process this image ({error.err or error})"
    if digit is None:
        return None, "no digit found (blank or too faint)"
    return digit, None


def prepare_all(paths: list[Path], work, quiet: bool, label: str) -> list:
    """``work(path)`` for every path on a thread pool (OpenCV releases the GIL), in order."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(work, paths)
        if not quiet and len(paths) >= PROGRESS_MIN_FILES:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc=label, unit="image",
                           file=sys.stderr, leave=False)
        return list(results)


def predict_in_chunks(classifier: runtime.DigitClassifier, images: list[np.ndarray]) -> np.ndarray:
    if not images:
        return np.zeros((0, runtime.NUM_CLASSES), np.float32)
    batch = np.stack(images)
    return np.concatenate([classifier.predict(batch[start:start + INFERENCE_CHUNK])
                           for start in range(0, len(batch), INFERENCE_CHUNK)])


def top_k(probabilities: np.ndarray, k: int = 3) -> list[dict]:
    order = np.argsort(probabilities)[::-1][:k]
    return [{"digit": int(d), "confidence": round(float(probabilities[d]), 4)} for d in order]


# --------------------------------------------------------------------------------------------
# 3. Classify: one digit per image, or --multi


def classify_files(classifier, paths: list[Path], quiet: bool) -> list[Row]:
    prepared = prepare_all(paths, prepare, quiet, "reading")
    rows = [Row(str(path), error=error) for path, (_, error) in zip(paths, prepared, strict=True)]
    good = [i for i, (digit, _) in enumerate(prepared) if digit is not None]
    probabilities = predict_in_chunks(classifier, [prepared[i][0] for i in good])
    for i, p in zip(good, probabilities, strict=True):
        rows[i].digit = int(np.argmax(p))
        rows[i].confidence = round(float(p.max()), 4)
        rows[i].top3 = top_k(p)
    return rows


def prepare_multi(path: Path):
    """One photo -> (crops (K, 28, 28), boxes [[x, y, w, h]] in the file's pixels, None),
    or (None, None, why not)."""
    try:
        image = preprocess.read_image(path)
        found = segment.find_digits(image)
    except UserError as error:
        return None, None, _error_text(path, error)
    except cv2.error as error:
        return None, None, f"OpenCV cannot process this image ({error.err or error})"
    if not len(found):
        return None, None, "no digit found (blank or too faint)"
    # read_image shrinks big photos to a working size: report boxes in the file's own pixels.
    scale = _original_long_side(path, image.shape) / max(image.shape[:2])
    boxes = [[round(value * scale) for value in box] for box in found.boxes]
    return found.digits, boxes, None


def _original_long_side(path: Path, working_shape: tuple) -> int:
    working = max(working_shape[:2])
    if working < preprocess.WORKING_MAX_SIDE:
        return working  # not shrunk
    # preprocess reads the size from the header to refuse decompression bombs; reuse that.
    size = preprocess._size_from_header(path.read_bytes())
    return max(size) if size else working


def classify_multi(classifier, paths: list[Path], quiet: bool) -> list[Row]:
    prepared = prepare_all(paths, prepare_multi, quiet, "segmenting")
    rows = [Row(str(path), error=prepared[i][2]) for i, path in enumerate(paths)]
    crops = [c for crops, _, _ in prepared if crops is not None for c in crops]
    probabilities = iter(predict_in_chunks(classifier, crops))  # one batch for every digit
    for row, (crops, boxes, _) in zip(rows, prepared, strict=True):
        if crops is None:
            continue
        detections = []
        for box in boxes:
            p = next(probabilities)
            detections.append({"box": box, "digit": int(np.argmax(p)),
                               "confidence": round(float(p.max()), 4), "top3": top_k(p)})
        detections.sort(key=lambda d: d["box"][0])  # left to right
        row.detections = detections
        row.number = "".join(str(d["digit"]) for d in detections)
        row.confidence = min(d["confidence"] for d in detections)
    return rows


# --------------------------------------------------------------------------------------------
# 4. --eval: a labelled folder DIR/<digit>/*


def evaluate(classifier, root: str, quiet: bool) -> dict:
    folder = load_labelled_folder(root)
    paths = [path for path, _ in folder.samples]
    labels = np.array([label for _, label in folder.samples])
    rows = classify_files(classifier, paths, quiet)
    read = np.array([row.digit if row.digit is not None else -1 for row in rows])
    correct = read == labels
    matrix = np.zeros((10, 10), np.int64)
    ok = read >= 0
    np.add.at(matrix, (labels[ok], read[ok]), 1)
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
        for item in report["skipped"][:20]:
            print(f"  {item['path']}: {item['reason']}")
        if len(report["skipped"]) > 20:
            print(f"  ... and {len(report['skipped']) - 20} more")


# --------------------------------------------------------------------------------------------
# Output


def print_table(rows: list[Row], multi: bool) -> None:
    header = ("file", "number" if multi else "digit", "confidence", "top-3" if not multi
              else "boxes [x, y, w, h]")
    lines = []
    for row in rows:
        if row.error:
            lines.append((row.path, "-", "-", f"error: {row.error}"))
        elif multi:
            boxes = " ".join(f"{d['digit']}@{d['box']}" for d in row.detections)
            lines.append((row.path, row.number, f"{row.confidence:.2f}", boxes))
        else:
            top3 = ", ".join(f"{t['digit']} {t['confidence']:.2f}" for t in row.top3)
            lines.append((row.path, str(row.digit), f"{row.confidence:.2f}", top3))
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(3)]
    for line in [header, *lines]:
        print("  ".join(text.ljust(widths[i]) if i < 3 else text for i, text in enumerate(line)))


def summary(rows: list[Row], classifier, seconds: float) -> str:
    failed = sum(row.error is not None for row in rows)
    text = (f"{len(rows)} input{'s' if len(rows) != 1 else ''}: {len(rows) - failed} read, "
            f"{failed} failed in {seconds:.2f} s")
    return f"{text} | {classifier.describe()}"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="classify.py",
        description="Read handwritten digits in image files with OpenVINO (or TensorFlow).",
        epilog="Exit status: 0 every input read, 1 some failed (see their rows), 2 none could "
               "be read or a bad flag/model/device.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files, folders (searched recursively) or globs")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list (path, digit, confidence, top3, error) instead")
    parser.add_argument("--multi", action="store_true",
                        help="each image holds several digits: read them left to right")
    parser.add_argument("--eval", metavar="DIR",
                        help="evaluate a labelled folder DIR/<digit>/<image>: accuracy, "
                             "per-digit accuracy, confusion matrix, misread files")
    parser.add_argument("--output", metavar="DIR",
                        help="with --eval: write confusion_matrix.png and eval.json here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    runtime.add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.eval and (args.paths or args.multi):
        raise UserError("--eval DIR takes no other PATH and no --multi")
    if not args.eval and not args.paths:
        raise UserError("give at least one image, folder or glob (or --eval DIR)")
    if args.output and not args.eval:
        raise UserError("--output is for --eval (where to write confusion_matrix.png)")
    output = ensure_writable_dir(args.output) if args.output else None

    classifier = runtime.load_from_args(args)
    if args.verbose:
        print(f"model: {classifier.describe()}", file=sys.stderr)
    started = time.perf_counter()

    if args.eval:
        report = evaluate(classifier, args.eval, args.quiet)
        if output is not None:
            from edgedigits.report import plot_confusion_matrix

            plot_confusion_matrix(report["confusion_matrix"], output / "confusion_matrix.png",
                                  title=f"{Path(args.eval).name} ({classifier.variant})")
            write_json(output / "eval.json", report)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_evaluation(report)
            if output is not None:
                print(f"\nwrote {output / 'confusion_matrix.png'} and {output / 'eval.json'}")
        return 0

    inputs = find_images(args.paths)
    paths = [item for item in inputs if isinstance(item, Path)]
    work = classify_multi if args.multi else classify_files
    read = iter(work(classifier, paths, args.quiet))
    rows = [next(read) if isinstance(item, Path) else item for item in inputs]
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps([row.as_json(args.multi) for row in rows], indent=2))
    else:
        print_table(rows, args.multi)
        print(summary(rows, classifier, seconds))
    failed = sum(row.error is not None for row in rows)
    if failed == 0:
        return 0
    return EXIT_ALL_FAILED if failed == len(rows) else EXIT_SOME_FAILED


if __name__ == "__main__":
    run(main)
