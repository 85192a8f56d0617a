"""Touching digits for the digit classifier: split where the classifier agrees.

Digits written fast touch or overlap, so one piece of ink may hold several digits. Rather than
guess where to cut from the ink alone, every plausible cut is tried and the single-digit
classifier chooses (recognition-driven segmentation):

1. :func:`find_candidates`: the ink groups of :func:`segment.find_ink_groups`. A cheap first
   test (:func:`may_hold_several`: wider than SPLIT_GATE x its height) decides which groups
   can hold more than one digit; any other group is one digit, one candidate, never split. In
   a group that may hold several, the columns where the ink is thinnest (valleys of the column
   ink profile) are candidate cuts, and every stretch between two cuts that is as wide as a
   digit can be becomes a candidate digit in MNIST format;
2. one batched inference over all candidates of the image, by the caller (the task layer);
3. :func:`choose`: per group, dynamic programming picks the left-to-right split whose digits
   the classifier is jointly surest of (sum of log confidences, wide stretches penalised).

The digit classifier's task (:mod:`edgedigits.tasks.digit_classifier`) runs these steps for
every consumer: ``classify.py --multi``, the video pipeline, the server, DigitReader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgedigits.image import preprocess, segment
from edgedigits.image.image import Image
from edgedigits.tasks.result import Box, Digit, Reading

# The cheap first test (may_hold_several): a group of ink at most SPLIT_GATE x its height wide
# is one digit, one candidate, never split; one wider than SURE_GATE x its height may hold
# several; in between, only when its undilated ink is at least two pieces PIECE_HEIGHT of the
# group tall (two digits close enough for the dilation to join them). SURE_GATE is 6d73554's
# bound for one digit (it read groups up to 1.6 x their height whole). Measured with the robust
# model (tools/split_gate.py, docs/infer.md): every group wider than 0.55 x its height cut (main
# before issue 18) split 15 of 400 single MNIST test digits and read 185 of 400 numbers of
# touching digits exactly; these gates split 1 and read 136. The number reader reads numbers.
SPLIT_GATE = 1.0
SURE_GATE = 1.6
PIECE_HEIGHT = 0.5
# A digit is at least this fraction of its group's height wide (a '1'), at most this much.
MIN_DIGIT_WIDTH = 0.25
MAX_DIGIT_WIDTH = 1.3
# Valleys closer than this fraction of the height are one valley; at most MAX_CUTS per group.
CUT_SPACING = 0.1
MAX_CUTS = 12
# A candidate spans at most this many gaps between cuts (keeps the candidates per group few).
MAX_SPAN = 4
# Score penalty per unit of width beyond WIDE (in heights) — a stretch that wide is rarely one
# digit, however sure the classifier is of it. The whole of a group in one piece (tried only
# when wider than SURE_GATE) from SURE_GATE, as wide as a single flattened digit can still be
# (from WIDE, the 1,000-frame guard video had 2 more wrong detections than 6d73554 with the
# robust model).
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
    wide: float = WIDE  # the whole group read as one digit is penalised beyond this width


@dataclass
class Candidates:
    """Every candidate digit of an image, ready for one batched inference."""

    boxes: list[Box]  # in the original image's pixels
    digits: np.ndarray  # (M, 28, 28) uint8, MNIST format
    groups: list[Group] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)


def may_hold_several(width: int, height: int, own: np.ndarray | None = None) -> bool:
    """The cheap first test: can this group of ink (``own``, its mask) hold several digits?"""
    return width > SURE_GATE * height or (width > SPLIT_GATE * height and
                                          (own is None or _in_tall_pieces(own, height)))


def _in_tall_pieces(own: np.ndarray, height: int) -> bool:
    _, _, stats, _ = cv2.connectedComponentsWithStats(own, connectivity=8)
    return int(np.count_nonzero(stats[1:, cv2.CC_STAT_HEIGHT] >= PIECE_HEIGHT * height)) >= 2


def find_candidates(image: Image | np.ndarray, dark_ink: bool | None = None,
                    max_digits: int | None = None, detect_side: int | None = None,
                    max_candidates: int | None = None) -> Candidates:
    """Candidate digits of every way to split the ink groups of ``image`` (arguments as
    :func:`segment.find_ink_groups`; ``max_digits`` limits the groups, not the digits), boxes
    in the original image's pixels.
    ``max_candidates``: once splitting would pass this many, the groups left are taken whole
    (one batch of bounded size per frame for the webcam and a remote server)."""
    found = segment.find_ink_groups(image, dark_ink, max_digits, detect_side)
    boxes: list[Box] = []
    digits: list[np.ndarray] = []
    groups: list[Group] = []
    for own, (x, y, w, h) in found.groups:
        cuts = cut_positions(own) if may_hold_several(w, h, own) else [0, w]
        groups_left = len(found.groups) - len(groups)
        if len(cuts) > 2 and max_candidates is not None and \
                len(boxes) + MAX_SPAN * len(cuts) + groups_left > max_candidates:
            cuts = [0, w]
        group = Group(len(cuts), [], [],
                      wide=WIDE if len(cuts) > 2 and _in_tall_pieces(own, h) else SURE_GATE)
        last = len(cuts) - 1
        # every stretch of up to MAX_SPAN gaps, and always the whole group (a fallback split)
        spans = [(start, end) for start in range(last)
                 for end in range(start + 1, min(last, start + MAX_SPAN) + 1)]
        if (0, last) not in spans:
            spans.append((0, last))
        for start, end in spans:
            left, right = cuts[start], cuts[end]
            width = (right - left) / h
            whole = start == 0 and end == last
            if not whole and not MIN_DIGIT_WIDTH <= width <= MAX_DIGIT_WIDTH:
                continue
            part = own if whole else _without_fragments(own[:, left:right])
            digit = preprocess.mask_to_mnist(part)
            if digit is None:
                continue
            if whole:
                bx, by, bw, bh = 0, 0, w, h
            else:
                bx, by, bw, bh = cv2.boundingRect(part)
                bx += left
                if bh < segment.SEPARATOR_HEIGHT * h:
                    continue  # a bar or a tail cut off a digit, not a digit
            group.spans.append((start, end, len(boxes)))
            group.widths.append(width)
            boxes.append(found.to_original((x + bx, y + by, bw, bh)))
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


def choose(candidates: Candidates, probabilities: np.ndarray) -> Reading:
    """The best split of every group given the classifier's ``probabilities`` (M, 10) for the
    candidates: left to right, the digits whose summed log confidence is highest."""
    indices: list[int] = []
    for group in candidates.groups:
        if len(group.spans) == 1:  # one digit, never split
            indices.append(group.spans[0][2])
            continue
        best = [-math.inf] * group.cuts
        back: list[tuple[int, int] | None] = [None] * group.cuts
        best[0] = 0.0
        for (start, end, index), width in sorted(zip(group.spans, group.widths, strict=True)):
            if best[start] == -math.inf:
                continue
            confidence = max(float(probabilities[index].max()), CONFIDENCE_FLOOR)
            wide = group.wide if start == 0 and end == group.cuts - 1 else WIDE
            score = (best[start] + math.log(confidence) - DIGIT_COST
                     - WIDE_PENALTY * max(0.0, width - wide))
            if score > best[end]:
                best[end], back[end] = score, (start, index)
        chosen = []
        position = group.cuts - 1
        while position > 0 and back[position] is not None:
            start, index = back[position]
            chosen.append(index)
            position = start
        if position > 0:  # no split reaches across the group: it is read whole
            chosen = [index for start, end, index in group.spans
                      if start == 0 and end == group.cuts - 1][:1]
        indices += chosen[::-1]
    indices.sort(key=lambda i: candidates.boxes[i][0])
    digits = Digit.many(probabilities[indices], [candidates.boxes[i] for i in indices])
    return Reading(digits, inputs=candidates.digits[indices] if indices else None,
                   indices=indices)


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
