"""Classify image files: find them, prepare each for the model, one batched inference, rows.

Used by ``infer/classify.py`` (files, folders, globs; ``--multi`` for several digits per photo),
by :mod:`edgedigits.reading.evaluate` and by the server's ``digit-reader``. Each file becomes an
:class:`~edgedigits.image.image.Image` and the model's task (:mod:`edgedigits.tasks`) prepares
it, on a thread pool (OpenCV releases the GIL); inference is one batch for every input of the
run; the task reads the outputs back into one Reading per file. Every input gets a
:class:`Row` (the JSON object of ``--json``): its digit(s), or why it could not be read.
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
from edgedigits.image import decode
from edgedigits.image.image import Image
from edgedigits.tasks import MULTI, SINGLE, Prepared, Reading, Task

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
# Read and prepare: one image, what the model reads in it (the task layer's one preprocessing)


def _error_text(name: str | Path, error: Exception) -> str:
    message = str(error)
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def prepare(load: Callable[[], Image], name: str | Path, task: Task,
            mode: str) -> tuple[Prepared | None, str | None]:
    """``load()`` (an Image) -> (what ``task``'s model reads in it, None) or (None, why not)."""
    try:
        prepared = task.prepare(load(), mode)
    except UserError as error:
        return None, _error_text(name, error)
    except cv2.error as error:  # OpenCV refusing a malformed file is still the file's fault
        return None, f"OpenCV cannot process this image ({error.err or error})"
    if not len(prepared):
        return None, NO_DIGIT
    return prepared, None


def prepare_file(path: Path, task: Task, mode: str) -> tuple[Prepared | None, str | None]:
    """One image file -> :func:`prepare`."""
    return prepare(lambda: Image.read(path), path, task, mode)


def prepare_bytes(data: bytes, name: str, task: Task, mode: str,
                  max_pixels: int = decode.MAX_IMAGE_PIXELS
                  ) -> tuple[Prepared | None, str | None]:
    """An encoded image in memory (an upload, a request's BYTES) -> :func:`prepare`."""
    return prepare(lambda: Image.decode(data, name=name, max_pixels=max_pixels), name, task,
                   mode)


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


def predict_in_chunks(classifier: runtime.DigitClassifier, inputs: list[np.ndarray]) -> np.ndarray:
    """One batched inference over every input of the run (in chunks of INFERENCE_CHUNK)."""
    if not inputs:
        return np.zeros((0, *classifier.output_shape), np.float32)
    batch = np.concatenate(inputs)
    return contract.check_probabilities(
        np.concatenate([classifier.predict(batch[start:start + INFERENCE_CHUNK])
                        for start in range(0, len(batch), INFERENCE_CHUNK)]),
        classifier.model_path)


def fill_row(row: Row, reading: Reading, mode: str) -> Row:
    """Put a reading into its row: the digit (single), or the number and a detection per digit
    (multi). A reading with no digit (the number reader saw ink but read none) is NO_DIGIT."""
    if not reading.digits:
        row.error = NO_DIGIT
        return row
    if mode == SINGLE:
        digit = reading.digits[0]
        row.digit, row.confidence, row.top3 = digit.digit, digit.confidence, digit.top3
        return row
    row.detections = reading.detections
    row.number = reading.number
    row.confidence = reading.confidence
    return row


def read_prepared(task: Task, classifier: runtime.DigitClassifier,
                  prepared: list[Prepared | None]) -> list[Reading | None]:
    """Every prepared image read with one batched inference: a Reading each (None stays None)."""
    present = [p for p in prepared if p is not None]
    outputs = predict_in_chunks(classifier, [p.inputs for p in present])
    readings: list[Reading | None] = []
    start = 0
    for item in prepared:
        if item is None:
            readings.append(None)
            continue
        readings.append(task.read(item, outputs[start:start + len(item)]))
        start += len(item)
    return readings


def read_image(classifier: runtime.DigitClassifier, image: Image | np.ndarray,
               mode: str = MULTI) -> Reading:
    """One image in memory (an Image, or a gray/BGR/BGRA array) read with ``classifier``: one
    batched inference, boxes in the image's pixels. No digit found: an empty Reading."""
    task = classifier.reading_task
    prepared = task.prepare(Image.of(image), mode)
    if not len(prepared):
        return Reading([])
    return read_prepared(task, classifier, [prepared])[0]


def classify_files(classifier: runtime.DigitClassifier, paths: list[Path], quiet: bool,
                   mode: str = SINGLE) -> list[Row]:
    """One row per path: the digit the whole image shows (single), or the number its digits
    spell with a box per digit (multi)."""
    task = classifier.reading_task
    read = functools.partial(prepare_file, task=task, mode=mode)
    prepared = read_all(paths, read, quiet, "reading" if mode == SINGLE else "segmenting")
    rows = [Row(str(path), error=error) for path, (_, error) in zip(paths, prepared, strict=True)]
    readings = read_prepared(task, classifier, [item for item, _ in prepared])
    for row, reading in zip(rows, readings, strict=True):
        if reading is not None:
            fill_row(row, reading, mode)
    return rows


def classify_inputs(classifier: runtime.DigitClassifier, patterns: list[str], multi: bool,
                    quiet: bool) -> list[Row]:
    """A row for every input of :func:`find_images`, in order; names that match nothing too."""
    inputs = find_images(patterns)
    paths = [item for item in inputs if isinstance(item, Path)]
    read = iter(classify_files(classifier, paths, quiet, MULTI if multi else SINGLE))
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
