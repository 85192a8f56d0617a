"""The number reader's task: a line of handwritten digits read whole by a CTC sequence model.

Touching and overlapping digits have no clean place to cut, so this reader does not cut. It
finds the lines of ink (:func:`find_lines`: the ink groups of :func:`segment.find_ink_groups`
that share a row), normalises each the same way for training and inference
(:func:`line_input`: paper flattened away, ink white on black, the line's height scaled to
INK_HEIGHT, padded to LINE_WIDTH columns) and a small CNN reads it column by column: every
STRIDE input columns one output step with the probabilities of "digit 0-9" or "no new digit"
(the CTC blank). :func:`ctc_decode` takes the best class per step and collapses repeats and
blanks: the number.

The model (``train/train.py --arch number-reader``, :mod:`edgedigits.training.number_reader`) is
trained on lines composed from MNIST *training* digits and read back through the same
:func:`find_lines` and :func:`line_input`.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgedigits import contract
from edgedigits.tasks.base import MULTI, SINGLE, Prepared, Task
from edgedigits.tasks.result import Box, Digit, Reading

if TYPE_CHECKING:  # OpenCV and the image code load when a line is first read, not before:
    from edgedigits.image.image import Image  # the runtime imports this module's task

LINE_HEIGHT, LINE_WIDTH = contract.LINE_SHAPE[:2]

# The ink of a line fills this many of the LINE_HEIGHT rows (a margin above and below, as
# MNIST's 20 of 28).
INK_HEIGHT = 24
# Input columns per output step: the model halves the width twice.
STRIDE = 4
STEPS = LINE_WIDTH // STRIDE
BLANK = 10  # the CTC blank: the model's eleventh class
NUM_CLASSES = 11
# Longest number a line holds in training (and the longest label a model file declares).
MAX_DIGITS = 10
# Groups share a line when they overlap vertically by this fraction of the shorter one ...
SAME_LINE = 0.5
# ... and stand closer than this many line heights apart (farther: two numbers on one row;
# the reader is trained on gaps up to 0.7 of a digit's width).
LINE_GAP = 1.5
# A line wider than this many of its heights would be squeezed in the line input beyond what
# training shows (10 digits spaced apart); it is read in parts of at most PART_WIDTH heights
# (the line input holds LINE_WIDTH / INK_HEIGHT = 8 with its margins), cut between groups.
LONG_LINE = 16
PART_WIDTH = 6
# One ink group narrower than this many of its heights is one digit (no group read as several
# digits in 1,600 numbers was under 0.95; flagged 1s read '11' on real photos: 0.41-0.63).
ONE_DIGIT_WIDTH = 0.7


@dataclass
class Line:
    """One line of ink ready for the number reader (boxes in the image's working pixels)."""

    box: Box  # the line
    pixels: np.ndarray  # (LINE_HEIGHT, LINE_WIDTH) uint8, white ink on black
    scale: float  # working pixels per line-input column
    left: int  # the working column of the line input's first column
    groups: list[Box] = field(default_factory=list)  # its ink groups
    joined: bool = False  # the next part of the line before it (a long line read in parts)


@dataclass
class LineReading:
    """One line decoded: its digits, each digit's confidence and output step, the probabilities
    of the digits at those steps (blank left out, renormalised)."""

    number: str
    confidences: list[float]
    steps: list[int]
    digit_probabilities: list[np.ndarray]


def find_lines(image: Image | np.ndarray, dark_ink: bool | None = None,
               detect_side: int | None = None, max_lines: int | None = None) -> list[Line]:
    """The lines of digits in ``image`` (an Image, or any array it takes), in reading order,
    each normalised for the number reader; boxes in the image's working pixels."""
    from edgedigits.image import segment
    from edgedigits.image.image import Image

    image = Image.of(image)
    found = segment.find_ink_groups(image, dark_ink, detect_side=detect_side)
    if found.at_edge:
        # digits at the image's edge, or filling its height: a tight crop (a form's amount
        # field), read inside a margin of its own paper, edge digits kept
        found = segment.find_ink_groups(image, found.dark_ink, detect_side=detect_side,
                                        tight=True)
    if not found.groups:
        return []
    if dark_ink is None:
        dark_ink = found.dark_ink
    boxes = [found.to_input(box) for _, box in found.groups]
    rows = group_rows(boxes)
    if max_lines is not None and len(rows) > max_lines:  # the largest, in reading order
        largest = sorted(range(len(rows)), key=lambda k: -sum(b[2] * b[3] for b in rows[k]))
        rows = [rows[k] for k in sorted(largest[:max_lines])]
    lines = []
    for row in rows:
        for index, part in enumerate(_parts(row)):
            box = _union(part)
            pixels, scale, left = line_input(image, box, dark_ink)
            lines.append(Line(box, pixels, scale, left, sorted(part), joined=index > 0))
    return lines


def _parts(row: list[Box]) -> list[list[Box]]:
    """A row as it is read: whole, or when it is longer than LONG_LINE heights, in parts of at
    most PART_WIDTH heights (a group wider than that is a part of its own)."""
    height = max(box[3] for box in row)
    row = sorted(row)
    if _union(row)[2] <= LONG_LINE * height:
        return [row]
    parts: list[list[Box]] = [[]]
    for box in row:
        if parts[-1] and _union(parts[-1] + [box])[2] > PART_WIDTH * height:
            parts.append([])
        parts[-1].append(box)
    return parts


def group_rows(boxes: list[Box]) -> list[list[Box]]:
    """Boxes sharing a row (overlapping vertically by SAME_LINE of the shorter) and standing
    within LINE_GAP row heights of each other; a small mark (a separator, a speck) joins the
    row it sits in. Rows top to bottom, a row's lines left to right."""
    rows = sorted(_rows(boxes), key=lambda row: min(box[1] for box in row))
    return [part for row in rows for part in _split_at_gaps(row)]


def _split_at_gaps(row: list[Box]) -> list[list[Box]]:
    from edgedigits.image import segment

    height = max(box[3] for box in row)
    parts: list[list[Box]] = []
    right = None
    for box in sorted(row):
        if right is None or box[0] - right > LINE_GAP * height:
            parts.append([])
        parts[-1].append(box)
        right = box[0] + box[2] if right is None else max(right, box[0] + box[2])
    # a mark left alone by a gap (a separator, a speck) is no line of its own
    return [part for part in parts
            if max(box[3] for box in part) >= segment.SEPARATOR_HEIGHT * height]


def _rows(boxes: list[Box]) -> list[list[Box]]:
    """Boxes sharing a row, tallest first."""
    rows: list[list[Box]] = []
    spans: list[list[int]] = []  # each row's [top, bottom]
    for box in sorted(boxes, key=lambda b: -b[3]):
        _, y, _, h = box
        for row, span in zip(rows, spans, strict=True):
            overlap = min(y + h, span[1]) - max(y, span[0])
            if overlap >= SAME_LINE * min(h, span[1] - span[0]):
                row.append(box)
                break
        else:
            rows.append([box])
            spans.append([y, y + h])
    return rows


def line_input(image: Image, box: Box, dark_ink: bool) -> tuple[np.ndarray, float, int]:
    """The model's input for the line of ink at ``box`` (working pixels) in ``image``:
    (LINE_HEIGHT, LINE_WIDTH) uint8, white ink on black; working pixels per column; the working
    column of column 0.

    The box grows by a margin (strokes the segmentation missed), is scaled so the line's height
    is INK_HEIGHT rows (or narrower when the line is long), the paper is estimated by a
    grey-level closing wider than a stroke and subtracted, and the ink is stretched to 0-255.
    """
    import cv2

    x, y, w, h = box
    margin = LINE_HEIGHT - INK_HEIGHT
    pad = round(h * margin / INK_HEIGHT / 2)
    top, bottom = max(0, y - pad), min(image.shape[0], y + h + pad)
    left, right = max(0, x - pad), min(image.shape[1], x + w + pad)
    crop = image.gray_region(top, bottom, left, right)
    if not dark_ink:
        crop = 255 - crop
    scale = max(h / INK_HEIGHT, crop.shape[1] / LINE_WIDTH, 1e-6)
    width = max(1, min(LINE_WIDTH, round(crop.shape[1] / scale)))
    height = max(1, min(LINE_HEIGHT, round(crop.shape[0] / scale)))
    small = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    # the paper: a closing removes strokes thinner than the kernel (ink is ~2-3 rows here)
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE,
                             cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    ink = np.clip(paper.astype(np.float32) - small, 0, None)
    peak = float(np.percentile(ink, 99.5)) if ink.size else 0.0
    pixels = np.zeros((LINE_HEIGHT, LINE_WIDTH), np.uint8)
    if peak > 0:
        ink = np.clip(ink * (255.0 / peak), 0, 255)
        row = (LINE_HEIGHT - height) // 2
        pixels[row : row + height, :width] = ink.astype(np.uint8)
    return pixels, scale, left


def ctc_decode(probabilities: np.ndarray) -> LineReading:
    """Greedy CTC decoding of one line's (STEPS, 11) probabilities: the best class per step,
    repeats merged, blanks dropped. A digit held over several steps is placed at its most
    confident one."""
    best = probabilities.argmax(axis=1)
    steps: list[int] = []
    for step, label in enumerate(best):
        if label == BLANK:
            continue
        if step > 0 and best[step - 1] == label:
            if probabilities[step, label] > probabilities[steps[-1], label]:
                steps[-1] = step
        else:
            steps.append(step)
    rows = [probabilities[step, :BLANK] / max(float(probabilities[step, :BLANK].sum()), 1e-12)
            for step in steps]
    return LineReading("".join(str(best[step]) for step in steps),
                   [float(probabilities[step, best[step]]) for step in steps], steps, rows)


def one_digit_if_narrow(line: Line, reading: LineReading) -> LineReading:
    """``reading`` cut to its most confident digit when the line is one ink group narrower than
    ONE_DIGIT_WIDTH of its height (a 1's long flag was read as a second 1); else as it is."""
    _, _, width, height = line.box
    if len(reading.number) < 2 or len(line.groups) != 1 or width > ONE_DIGIT_WIDTH * height:
        return reading
    k = int(np.argmax(reading.confidences))
    return LineReading(reading.number[k], [reading.confidences[k]], [reading.steps[k]],
                       [reading.digit_probabilities[k]])


def digit_boxes(line: Line, reading: LineReading) -> list[Box]:
    """A box per digit read, in working pixels: the ink group under the digit's output step,
    cut between neighbouring digits when several digits share one group (at the midpoint of
    their steps, or in equal parts when a step lies outside the group), so no two overlap."""
    centres = [line.left + (step + 0.5) * STRIDE * line.scale for step in reading.steps]
    owners = [min(range(len(line.groups)), key=lambda k: _distance(line.groups[k], centre))
              for centre in centres]
    boxes: list[Box] = []
    start = 0
    while start < len(centres):  # each run of digits read in the same group
        end = start
        while end + 1 < len(centres) and owners[end + 1] == owners[start]:
            end += 1
        x, y, w, h = line.groups[owners[start]]
        cuts = [x] + [round((centres[k] + centres[k + 1]) / 2) for k in range(start, end)] \
            + [x + w]
        if any(right <= left for left, right in itertools.pairwise(cuts)):
            count = end - start + 1
            cuts = [x + round(k * w / count) for k in range(count + 1)]
        boxes += [(int(left), int(y), int(max(1, right - left)), int(h))
                  for left, right in itertools.pairwise(cuts)]
        start = end + 1
    return boxes


def _distance(box: Box, x: float) -> float:
    return 0.0 if box[0] <= x <= box[0] + box[2] else min(abs(x - box[0]),
                                                            abs(x - box[0] - box[2]))


def _union(boxes: list[Box]) -> Box:
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return left, top, right - left, bottom - top


# --------------------------------------------------------------------------------------------
# The task


class NumberReaderTask(Task):
    def __init__(self) -> None:
        super().__init__(
            model_type=contract.NUMBER_READER, description="number reader",
            input_shape=contract.LINE_SHAPE,
            output_shape=(contract.LINE_STEPS, contract.LINE_CLASSES), modes=(MULTI,),
            one_digit_per_input=False,
            where_to_use=" (it reads whole numbers: use it with --multi, the webcam or the "
                         "server's multi reading)",
            default_folder=contract.NUMBER_READER_DIR,
            input_polarity="one line of digits, white on black, 24 of the 32 rows high, "
                           "left-aligned",
            output_kind="per step (4 columns) softmax over the digits 0-9 and the CTC blank "
                        "(class 10)",
            unit="line", accuracy_header="lines exact", counts="lines read exactly",
            test_set_text=f"lines of handwritten digits rendered from MNIST test digits (seed "
                          f"{LINE_SEED}); accuracy = lines read exactly (the whole number, "
                          "after CTC decoding), agreement = the same decoded number as Keras",
            peers=False, int8_max_drop_pt=0.5, speed_goals=False)

    def prepare(self, image: Image, mode: str = MULTI, *,
                max_items: int | None = None) -> Prepared:
        if mode == SINGLE:
            raise ValueError("the number reader reads lines (multi), not single digits")
        lines = find_lines(image, max_lines=max_items)
        inputs = (np.stack([line.pixels for line in lines]) if lines
                  else np.zeros((0, LINE_HEIGHT, LINE_WIDTH), np.uint8))
        return Prepared(inputs, image, lines, MULTI)

    def read(self, prepared: Prepared, outputs: np.ndarray) -> Reading:
        """A digit per digit read (box, confidence, top 3), lines top to bottom, digits left to
        right; the text is the lines' digits, lines joined by a space; the inputs, every line."""
        image = prepared.image
        digits, texts = [], []
        joined = False
        for line, steps in zip(prepared.state, outputs, strict=True):
            reading = one_digit_if_narrow(line, ctc_decode(steps))
            joined = joined and line.joined  # the line before, or a part of it, was read
            if not reading.number:
                continue
            if joined:
                texts[-1] += reading.number
            else:
                texts.append(reading.number)
            joined = True
            for box, row in zip(digit_boxes(line, reading), reading.digit_probabilities,
                                strict=True):
                digits.append(Digit.from_probabilities(row, image.to_original(box)))
        # what the model saw: every line, read or not
        return Reading(digits, text=" ".join(texts), inputs=prepared.inputs,
                       indices=list(range(len(prepared.inputs))))

    def answers(self, outputs: np.ndarray) -> np.ndarray:
        return np.array([ctc_decode(steps).number for steps in outputs], dtype=str)

    def test_set(self, mnist, count: int | None) -> tuple[np.ndarray, np.ndarray]:
        lines, texts = render_lines(mnist.x_test, mnist.y_test, count or FULL_LINES,
                                    seed=LINE_SEED, log=lambda _: None)
        return lines[..., None], np.array(texts, dtype=str)

    def calibration(self, x_pool: np.ndarray, y_pool: np.ndarray, size: int) -> np.ndarray:
        return render_lines(x_pool, y_pool, size, seed=CALIBRATION_SEED,
                            log=lambda _: None)[0][..., None]


# The test lines: rendered from MNIST *test* digits with this seed; the first 1,000 are the
# lines convert/to_ir.py scores its IRs on. Calibration lines come from training digits.
LINE_SEED = 0
FULL_LINES = 1000  # a full (not --quick) run: rendering costs ~6 ms a line
CALIBRATION_SEED = 1  # conversion's seed (0) + 1, as before the task layer


# --------------------------------------------------------------------------------------------
# Lines rendered from MNIST digits: training, calibration and test lines


def synthetic_line(images: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, str] | None:
    """One training line: random MNIST digits written as a number and photographed
    (:func:`render.written_number`, with a random spacing) or scanned as a cheque's amount
    (:func:`render.scanned_amount`), found and normalised exactly as at inference.
    None when the segmentation found no line (the sample is skipped)."""
    from edgedigits.data import render

    count = int(rng.choice(np.arange(1, MAX_DIGITS + 1), p=_LENGTH_WEIGHTS))
    chosen = rng.integers(0, len(images), count)
    if rng.random() < SCANNED_SHARE:  # a scanned amount field, most often cut tight
        if count > 1 and rng.random() < ROUND_SHARE:  # a round amount: 1-3 trailing zeros
            zeros = min(count - 1, int(rng.choice((1, 2, 3), p=(0.25, 0.25, 0.5))))
            chosen[-zeros:] = rng.choice(np.flatnonzero(labels == 0), zeros)
        photo = render.scanned_amount(images[chosen], rng, height=int(rng.integers(30, 90)))
    else:  # a photographed number with a margin of paper
        gap = (-0.22, 0.08) if rng.random() < 0.6 else (0.0, 0.7)
        photo = render.written_number(images[chosen], rng, height=int(rng.integers(40, 80)),
                                      gap=gap)
        if rng.random() < 0.15:
            photo = 255 - photo  # light ink on a dark board
    lines = find_lines(photo, max_lines=1)
    if not lines:
        return None
    return lines[0].pixels, "".join(str(int(d)) for d in labels[chosen])


# The share of lines that are scanned amounts (render.scanned_amount) rather than photos.
SCANNED_SHARE = 0.5
# The share of those ending in 1-3 zeros, as money amounts often do: CTC needs a blank step
# between two equal digits, and random digits almost never teach it a tight run of zeros (a
# reader trained without them misread 67 of 84 real `...000` amounts, most a zero short).
ROUND_SHARE = 0.4
_LENGTH_WEIGHTS = np.array([4, 6, 8, 8, 8, 8, 5, 3, 2, 1], np.float64)
_LENGTH_WEIGHTS /= _LENGTH_WEIGHTS.sum()


def synthetic_lines(images: np.ndarray, labels: np.ndarray, count: int,
                    seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``count`` training lines (see :func:`synthetic_line`), reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    pixels, texts = [], []
    while len(texts) < count:
        made = synthetic_line(images, labels, rng)
        if made is not None:
            pixels.append(made[0])
            texts.append(made[1])
    return np.stack(pixels), texts


_worker_digits: tuple[np.ndarray, np.ndarray] | None = None


def _keep_digits(images: np.ndarray, labels: np.ndarray) -> None:
    global _worker_digits
    _worker_digits = (images, labels)


def _make_lines(job: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    count, seed = job
    return synthetic_lines(*_worker_digits, count, seed)


def render_lines(images: np.ndarray, labels: np.ndarray, count: int, seed: int,
                 workers: int = 0, log: Callable[[str], None] = print
                 ) -> tuple[np.ndarray, list[str]]:
    """``count`` synthetic lines made in ``workers`` processes (0: one per core), in chunks of
    1,000 so progress shows; the same seed gives the same lines, whatever the workers.

    Workers are spawned, not forked (TensorFlow's threads may be running in this process), and
    get the digits once each, not with every chunk."""
    workers = workers or os.cpu_count() or 1
    chunk = 1000
    jobs = [(min(chunk, count - start), seed * 100_003 + start)
            for start in range(0, count, chunk)]
    pixels, texts = [], []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                initializer=_keep_digits, initargs=(images, labels)))
            results = pool.map(_make_lines, jobs)
        else:
            results = (synthetic_lines(images, labels, n, s) for n, s in jobs)
        for made in results:
            pixels.append(made[0])
            texts += made[1]
            log(f"  lines rendered: {len(texts):,}/{count:,} "
                f"({time.perf_counter() - started:.0f} s)")
    return np.concatenate(pixels), texts
