"""Classify image files: find them, read each into MNIST format, one batched inference, rows.

Used by ``infer/classify.py`` (files, folders, globs; ``--multi`` for several digits per photo)
and by :mod:`edgedigits.reading.evaluate`. Reading runs on a thread pool (OpenCV releases the GIL);
inference is one batch for every digit of the run. Every input gets a :class:`Row`: its
digit(s), or why it could not be read.
"""

from __future__ import annotations

import functools
import glob
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedigits import contract, runtime
from edgedigits.data.evalsets import is_image_file
from edgedigits.errors import UserError
from edgedigits.image import decode, preprocess
from edgedigits.tasks import splitting as numbers

PROGRESS_MIN_FILES = 20  # a progress bar only where there is time to watch one
INFERENCE_CHUNK = 1024
NO_DIGIT = "no digit found (blank or too faint)"  # a normal answer, not a broken input


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


# --------------------------------------------------------------------------------------------
# Find the images


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
# Read and normalise


def _error_text(name: str | Path, error: Exception) -> str:
    message = str(error)
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def read_digit(path: Path) -> tuple[np.ndarray | None, str | None]:
    """One file -> (28x28 MNIST-format digit, None) or (None, why not)."""
    return digit_from(lambda: decode.read(path), path)


def read_digit_bytes(data: bytes, name: str = "image", max_pixels: int = decode.MAX_IMAGE_PIXELS
                     ) -> tuple[np.ndarray | None, str | None]:
    """:func:`read_digit` for an encoded image in memory (an upload, a request's BYTES)."""
    return digit_from(lambda: decode.decode(data, name=name, max_pixels=max_pixels), name)


def digit_from(load: Callable[[], decode.DecodedImage],
               name: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``load()`` (a decoded image) -> (28x28 MNIST-format digit, None) or (None, why not)."""
    try:
        digit = preprocess.to_mnist_format(load().gray)
    except UserError as error:
        return None, _error_text(name, error)
    except cv2.error as error:  # OpenCV refusing a malformed file is still the file's fault
        return None, f"OpenCV cannot process this image ({error.err or error})"
    if digit is None:
        return None, NO_DIGIT
    return digit, None


def read_digits(path: Path, model_type: str = contract.MODEL_TYPE
                ) -> tuple[np.ndarray | None, numbers.Candidates | None, str | None]:
    """One photo of a written number -> (what the model reads: candidate digits (K, 28, 28)
    or, for the number reader, lines; the candidates or lines with their boxes in the file's
    pixels; None), or (None, None, why not)."""
    return digits_from(lambda: decode.read(path), path, model_type)


def read_digits_bytes(data: bytes, name: str = "image",
                      max_pixels: int = decode.MAX_IMAGE_PIXELS,
                      model_type: str = contract.MODEL_TYPE
                      ) -> tuple[np.ndarray | None, numbers.Candidates | None, str | None]:
    """:func:`read_digits` for an encoded image in memory."""
    return digits_from(lambda: decode.decode(data, name=name, max_pixels=max_pixels), name,
                       model_type)


def digits_from(load: Callable[[], decode.DecodedImage], name: str | Path,
                model_type: str = contract.MODEL_TYPE
                ) -> tuple[np.ndarray | None, numbers.Candidates | None, str | None]:
    """``load()`` -> what a ``model_type`` model reads to find the number it shows
    (:func:`numbers.find_inputs`: every way to split its touching digits, or its lines of
    ink), boxes in the original image's pixels; :func:`fill_number` reads the number once the
    model has run."""
    try:
        image = load()
        found = numbers.find_inputs(image.gray, model_type)
    except UserError as error:
        return None, None, _error_text(name, error)
    except cv2.error as error:
        return None, None, f"OpenCV cannot process this image ({error.err or error})"
    if not len(found):
        return None, None, NO_DIGIT
    # Decoding shrinks big photos to a working size: report boxes in the original's own pixels.
    found.to_original(image.scale)
    return found.inputs, found, None


def read_all(paths: list[Path], read: Callable, quiet: bool, label: str) -> list:
    """``read(path)`` for every path on a thread pool (OpenCV releases the GIL), in order."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(read, paths)
        if not quiet and len(paths) >= PROGRESS_MIN_FILES:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc=label, unit="image",
                           file=sys.stderr, leave=False)
        return list(results)


# --------------------------------------------------------------------------------------------
# Classify: one digit per image, or several (--multi)


def predict_in_chunks(classifier: runtime.DigitClassifier, images: list[np.ndarray]) -> np.ndarray:
    if not images:
        return np.zeros((0, *classifier.output_shape), np.float32)
    batch = np.stack(images)
    return contract.check_probabilities(
        np.concatenate([classifier.predict(batch[start:start + INFERENCE_CHUNK])
                        for start in range(0, len(batch), INFERENCE_CHUNK)]),
        classifier.model_path)


def fill_digit(row: Row, probabilities: np.ndarray) -> Row:
    """Put one image's reading (digit, confidence, top 3) into its row."""
    row.digit = int(np.argmax(probabilities))
    row.confidence = round(float(probabilities.max()), 4)
    row.top3 = numbers.top_k(probabilities)
    return row


def fill_number(row: Row, candidates: numbers.Candidates, probabilities: np.ndarray) -> list[int]:
    """Put a --multi reading into its row: the split of the candidates the classifier is surest
    of, or what the number reader read in the lines (a detection per digit, left to right, and
    the number). Returns the chosen candidates' indices, left to right (none for lines)."""
    reading = candidates.choose(probabilities)
    if not reading.detections:  # the number reader saw ink but no digit in it
        row.error = NO_DIGIT
        return []
    row.detections = reading.detections
    row.number = reading.number
    row.confidence = reading.confidence
    return reading.indices


def classify_files(classifier: runtime.DigitClassifier, paths: list[Path],
                   quiet: bool) -> list[Row]:
    """One row per path: the digit the whole image shows, its confidence and top 3."""
    prepared = read_all(paths, read_digit, quiet, "reading")
    rows = [Row(str(path), error=error) for path, (_, error) in zip(paths, prepared, strict=True)]
    good = [i for i, (digit, _) in enumerate(prepared) if digit is not None]
    probabilities = predict_in_chunks(classifier, [prepared[i][0] for i in good])
    for i, p in zip(good, probabilities, strict=True):
        fill_digit(rows[i], p)
    return rows


def classify_multi(classifier: runtime.DigitClassifier, paths: list[Path],
                   quiet: bool) -> list[Row]:
    """One row per path: the number its digits spell left to right, with a box per digit."""
    read = functools.partial(read_digits, model_type=classifier.model_type)
    prepared = read_all(paths, read, quiet, "segmenting")
    rows = [Row(str(path), error=prepared[i][2]) for i, path in enumerate(paths)]
    crops = [c for crops, _, _ in prepared if crops is not None for c in crops]
    probabilities = predict_in_chunks(classifier, crops)  # one batch for every candidate
    start = 0
    for row, (crops, candidates, _) in zip(rows, prepared, strict=True):
        if crops is not None:
            fill_number(row, candidates, probabilities[start:start + len(crops)])
            start += len(crops)
    return rows


def classify_inputs(classifier: runtime.DigitClassifier, patterns: list[str], multi: bool,
                    quiet: bool) -> list[Row]:
    """A row for every input of :func:`find_images`, in order; names that match nothing too."""
    inputs = find_images(patterns)
    paths = [item for item in inputs if isinstance(item, Path)]
    work = classify_multi if multi else classify_files
    read = iter(work(classifier, paths, quiet))
    return [next(read) if isinstance(item, Path) else item for item in inputs]


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


def summary_line(rows: list[Row], classifier: runtime.DigitClassifier, seconds: float) -> str:
    failed = sum(row.error is not None for row in rows)
    text = (f"{len(rows)} input{'s' if len(rows) != 1 else ''}: {len(rows) - failed} read, "
            f"{failed} failed in {seconds:.2f} s")
    return f"{text} | {classifier.describe()}"
