"""Read whole written numbers, touching digits included: split where the classifier agrees.

Digits written fast touch or overlap, so one piece of ink may hold several digits. Rather than
guess where to cut from the ink alone, every plausible cut is tried and the single-digit
classifier chooses (recognition-driven segmentation):

1. :func:`find_candidates`: the ink groups of :func:`segment.find_ink_groups`; in each, the
   columns where the ink is thinnest (valleys of the column ink profile) are candidate cuts,
   and every stretch between two cuts that is as wide as a digit can be becomes a candidate
   digit in MNIST format (a lone digit is a group with no cut: one candidate);
2. one batched inference over all candidates of the image (any backend: OpenVINO, TensorFlow,
   a remote server), done by the caller or by :func:`read_number`;
3. :func:`choose`: per group, dynamic programming picks the left-to-right split whose digits
   the classifier is jointly surest of (sum of log confidences, wide stretches penalised).

``read_number(image, classifier)`` does all three for an in-memory image; ``classify.py
--multi``, the webcam and the server's ``digit-reader`` (``multi``) all read numbers here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgedigits import contract
from edgedigits.image import preprocess, segment
from edgedigits.image.segment import Box

# A digit is at least this fraction of its group's height wide (a '1'), at most this much.
MIN_DIGIT_WIDTH = 0.25
MAX_DIGIT_WIDTH = 1.3
# Groups narrower than this times their height are one digit: no cut is tried.
SPLIT_MIN_WIDTH = 0.55
# Valleys closer than this fraction of the height are one valley; at most MAX_CUTS per group.
CUT_SPACING = 0.1
MAX_CUTS = 12
# A candidate spans at most this many gaps between cuts (keeps the candidates per group few).
MAX_SPAN = 4
# Score penalty per unit of width beyond WIDE (in heights) — a stretch that wide is rarely one
# digit, however sure the classifier is of it.
WIDE = 0.9
WIDE_PENALTY = 4.0
CONFIDENCE_FLOOR = 1e-6
# In a stretch cut from a group, pieces smaller than this fraction of its largest piece are
# what the cuts left of the neighbours (the speck filter alone keeps them; string accuracy on
# the numbers set, 400 numbers: 43.8 -> 44.8 %).
FRAGMENT = 0.2
# Score cost of each digit: a split must make the classifier surer by more than this.
DIGIT_COST = 0.5


@dataclass
class Group:
    """One group of ink: its candidate stretches as (start cut, end cut, candidate index)."""

    cuts: int  # cut positions, both ends included
    spans: list[tuple[int, int, int]]
    widths: list[float]  # each candidate's width in units of the group's height


@dataclass
class Candidates:
    """Every candidate digit of an image, ready for one batched inference."""

    boxes: list[Box]  # in the input image's pixels
    digits: np.ndarray  # (M, 28, 28) uint8, MNIST format
    groups: list[Group] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def inputs(self) -> np.ndarray:
        """What the model reads: the candidate digits (M, 28, 28)."""
        return self.digits

    def to_original(self, scale: float) -> None:
        """Boxes in the pixels of an image ``scale`` times larger than the one read."""
        self.boxes = [tuple(round(value / scale) for value in box) for box in self.boxes]

    def choose(self, probabilities: np.ndarray) -> NumberReading:
        return choose(self, probabilities)


@dataclass
class NumberReading:
    """What :func:`read_number` read: the digits left to right (JSON-ready dicts with ``box``
    [x, y, w, h], ``digit``, ``confidence``, ``top3``) and the number they spell."""

    detections: list[dict]
    number: str
    indices: list[int] = field(default_factory=list)  # the candidates chosen, left to right

    @property
    def confidence(self) -> float | None:
        return min((d["confidence"] for d in self.detections), default=None)


def find_inputs(image: np.ndarray, model_type: str = contract.MODEL_TYPE,
                dark_ink: bool | None = None, max_digits: int | None = None,
                detect_side: int | None = None, max_candidates: int | None = None):
    """What a model of ``model_type`` reads to find the number in ``image``: the candidate
    digits of every split (:func:`find_candidates`, a digit classifier) or the lines of ink
    (:func:`sequence.find`, the number reader). Either has ``inputs`` for one batched
    inference, ``boxes``, ``to_original`` and ``choose(probabilities) -> NumberReading``."""
    if model_type == contract.NUMBER_READER:
        from edgedigits.tasks import number_reader as sequence

        return sequence.find(image, dark_ink, detect_side, max_lines=max_digits)
    return find_candidates(image, dark_ink, max_digits, detect_side, max_candidates)


def find_candidates(image: np.ndarray, dark_ink: bool | None = None,
                    max_digits: int | None = None, detect_side: int | None = None,
                    max_candidates: int | None = None) -> Candidates:
    """Candidate digits of every way to split the ink groups of ``image`` (arguments as
    :func:`segment.find_digits`; ``max_digits`` limits the groups, not the digits).
    ``max_candidates``: once splitting would pass this many, the groups left are taken whole
    (one batch of bounded size per frame for the webcam and a remote server)."""
    found = segment.find_ink_groups(image, dark_ink, max_digits, detect_side)
    boxes: list[Box] = []
    digits: list[np.ndarray] = []
    groups: list[Group] = []
    for own, (x, y, _, h) in found.groups:
        cuts = cut_positions(own)
        groups_left = len(found.groups) - len(groups)
        if max_candidates is not None and len(boxes) + MAX_SPAN * len(cuts) + groups_left > \
                max_candidates:
            cuts = [0, own.shape[1]]
        group = Group(len(cuts), [], [])
        for start in range(len(cuts) - 1):
            for end in range(start + 1, min(len(cuts), start + MAX_SPAN + 1)):
                left, right = cuts[start], cuts[end]
                width = (right - left) / h
                whole = start == 0 and end == len(cuts) - 1
                if not whole and not MIN_DIGIT_WIDTH <= width <= MAX_DIGIT_WIDTH:
                    continue
                part = own if whole else _without_fragments(own[:, left:right])
                digit = preprocess.mask_to_mnist(part)
                if digit is None:
                    continue
                bx, by, bw, bh = cv2.boundingRect(part)
                bx += left
                if bh < segment.SEPARATOR_HEIGHT * h:
                    continue  # a bar or a tail cut off a digit, not a digit
                group.spans.append((start, end, len(boxes)))
                group.widths.append(width)
                boxes.append(found.to_input((x + bx, y + by, bw, bh)))
                digits.append(digit)
        if group.spans:
            groups.append(group)
    if not digits:
        empty = np.zeros((0, preprocess.MNIST_SIZE, preprocess.MNIST_SIZE), np.uint8)
        return Candidates([], empty, [])
    return Candidates(boxes, np.stack(digits), groups)


def cut_positions(own: np.ndarray) -> list[int]:
    """Columns where a group of ink may be split: both ends, and the valleys of its column ink
    profile (a local minimum, at least a thin digit's width from either end)."""
    height, width = own.shape
    if width < SPLIT_MIN_WIDTH * height:
        return [0, width]
    profile = np.count_nonzero(own, axis=0).astype(np.float32)
    profile = np.convolve(profile, np.ones(3, np.float32) / 3, mode="same")
    reach = max(1, height // 16)
    margin = max(1, int(MIN_DIGIT_WIDTH * height))
    if width - margin <= margin:
        return [0, width]
    # a valley: no lower column within ``reach`` (the windows clipped at the ends, as +inf pads)
    padded = np.pad(profile, reach, constant_values=np.inf)
    lowest = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1).min(axis=1)
    columns = np.arange(margin, width - margin)
    columns = columns[profile[columns] <= lowest[columns]]
    valleys = [(float(profile[column]), int(column)) for column in columns]
    chosen: list[int] = []
    spacing = max(1, int(CUT_SPACING * height))
    for _, column in sorted(valleys):
        if all(abs(column - other) >= spacing for other in chosen):
            chosen.append(column)
        if len(chosen) == MAX_CUTS:
            break
    return [0, *sorted(chosen), width]


def choose(candidates: Candidates, probabilities: np.ndarray) -> NumberReading:
    """The best split of every group given the classifier's ``probabilities`` (M, 10) for the
    candidates: left to right, the digits whose summed log confidence is highest."""
    indices: list[int] = []
    for group in candidates.groups:
        best = [-math.inf] * group.cuts
        back: list[tuple[int, int] | None] = [None] * group.cuts
        best[0] = 0.0
        for (start, end, index), width in sorted(zip(group.spans, group.widths, strict=True)):
            if best[start] == -math.inf:
                continue
            confidence = max(float(probabilities[index].max()), CONFIDENCE_FLOOR)
            score = (best[start] + math.log(confidence) - DIGIT_COST
                     - WIDE_PENALTY * max(0.0, width - WIDE))
            if score > best[end]:
                best[end], back[end] = score, (start, index)
        chosen = []
        position = group.cuts - 1
        while position > 0 and back[position] is not None:
            start, index = back[position]
            chosen.append(index)
            position = start
        indices += chosen[::-1]
    indices.sort(key=lambda i: candidates.boxes[i][0])
    detections = [detection(candidates.boxes[i], probabilities[i]) for i in indices]
    return NumberReading(detections, "".join(str(d["digit"]) for d in detections), indices)


def detection(box: Box, probabilities: np.ndarray) -> dict:
    """One digit read: the JSON object of ``--multi`` detections."""
    return {"box": [int(v) for v in box], "digit": int(np.argmax(probabilities)),
            "confidence": round(float(probabilities.max()), 4), "top3": top_k(probabilities)}


def top_k(probabilities: np.ndarray, k: int = 3) -> list[dict]:
    order = np.argsort(probabilities)[::-1][:k]
    return [{"digit": int(d), "confidence": round(float(probabilities[d]), 4)} for d in order]


def read_number(image: np.ndarray, classifier, dark_ink: bool | None = None,
                detect_side: int | None = None) -> NumberReading:
    """Read the number written in ``image`` (gray, BGR, BGRA: any array
    :func:`preprocess.to_grayscale` accepts) with ``classifier`` (any
    :class:`edgedigits.runtime.DigitClassifier`, or the number reader): one batched inference.
    Boxes are in ``image``'s pixels. No digit found: no detections and an empty number."""
    found = find_inputs(image, classifier.model_type, dark_ink, detect_side=detect_side)
    if not len(found):
        return NumberReading([], "")
    return found.choose(classifier.predict(found.inputs))


def _without_fragments(part: np.ndarray) -> np.ndarray:
    # labels and a pixel count: ~2x faster than connectedComponentsWithStats on a crop this small
    count, labels = cv2.connectedComponents(part, connectivity=8)
    if count <= 2:
        return part
    areas = np.bincount(labels.ravel(), minlength=count)[1:]
    keep = np.flatnonzero(areas >= FRAGMENT * areas.max()) + 1
    lookup = np.zeros(count, np.uint8)
    lookup[keep] = 255
    return lookup[labels]
