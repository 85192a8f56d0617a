"""Find the groups of ink in a larger image or video frame: where digits (or rows of touching
digits) are.

The tasks use it (:mod:`edgedigits.tasks`: the digit classifier's candidates, the number
reader's lines) for ``classify.py --multi``, the webcam per frame, the server and DigitReader,
so it must stay well under a millisecond for a 640x480 frame:

1. the image's analysis copy (:meth:`Image.analysis`: gray, at most DETECT_MAX_SIDE); polarity
   decided as for one image (which side of the median-filtered paper the ink lies, so a shadow
   across the frame does not flip it);
2. adaptive threshold (a local mean, so uneven lighting does not matter), kept only where the
   ink is also a thin structure (black-hat), so a shadow's edge is not taken for ink;
3. a small dilation joins broken strokes into one outline (for finding pieces only: the crops
   keep the undilated ink);
4. form boxes are erased; components smaller than a speck are dropped; pieces stacked above
   each other (the bar of a 5, a broken 4) are merged; what is left is filtered by size;
5. each group's own ink (inside its pieces' outlines) is handed to the task.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgedigits.image import preprocess
from edgedigits.image.image import Image

# Frames are analysed at most this large: a 640x480 webcam frame at half size, which keeps a
# digit 40 px tall at 20 px (the MNIST box) and costs a quarter of the time.
DETECT_MAX_SIDE = 320
# Ink must be this many grey levels darker (or lighter) than its neighbourhood's mean.
LOCAL_CONTRAST = 12
# A digit is at least this fraction of the frame's shorter side tall (and 8 px), at most 95 %.
MIN_HEIGHT_FRACTION = 0.05
MIN_HEIGHT_PIXELS = 8
MAX_HEIGHT_FRACTION = 0.95
# Ink is at least this fraction of the image's strongest contrast (its 99.5th percentile).
RELATIVE_CONTRAST = 0.25
# A group less than this fraction of the median group height is a separator or a mark.
SEPARATOR_HEIGHT = 0.5
# A tight crop is analysed inside a margin of its paper this fraction of its shorter side wide.
TIGHT_MARGIN = 0.25
# Ruled lines: straight horizontal ink at least this fraction of the image wide.
RULED_LINE_WIDTH = 0.5
# Form boxes: straight edges this fraction of the box's height long at its top and bottom
# (a digit's bar is shorter), walls this fraction of its height tall (a digit is shorter).
FRAME_EDGE = 0.7
FRAME_WALL = 0.85
# ... and those edges span this fraction of its width (touching digits' bars do not).
FRAME_SPAN = 0.75


Box = tuple[int, int, int, int]  # x, y, width, height in the input image's pixels


@dataclass
class InkGroups:
    """The ink of an image (at the analysis scale) and the digit-sized groups of pieces in it."""

    ink: np.ndarray  # uint8 0/255, the undilated ink, analysis scale
    groups: list[tuple[np.ndarray, Box]]  # (this group's own ink, cropped to box; box)
    scale: float  # working pixels per analysis pixel
    dark_ink: bool = True  # the polarity the ink was found with
    image: Image | None = None  # what was analysed
    at_edge: int = 0  # digit-tall groups dropped for touching the image's edge (or filling it)

    def to_input(self, box: Box) -> Box:
        """A box of the analysis copy in the image's working pixels."""
        return _rescale(box, self.scale)

    def to_original(self, box: Box) -> Box:
        """A box of the analysis copy in the original image's pixels."""
        return self.image.to_original(box, self.scale)


def find_ink_groups(image: Image | np.ndarray, dark_ink: bool | None = None,
                    max_digits: int | None = None,
                    detect_side: int | None = None, tight: bool = False) -> InkGroups:
    """The ink of ``image`` and its groups of pieces that are digit-sized (one digit, or a row
    of touching digits), left to right.

    ``dark_ink``: True for dark ink on light paper, False for light on dark, None to decide
    from the image. ``max_digits`` keeps the largest groups only (webcam overload guard).
    ``detect_side``: longer side the image is analysed at (default DETECT_MAX_SIDE; give more
    for a large photo with small digits). Boxes are in the analysis copy's pixels
    (:meth:`InkGroups.to_input`, :meth:`InkGroups.to_original` map them back).
    ``tight``: the image is a tight crop (ink may touch its edges, a digit may fill its
    height): it is analysed inside a flat margin of its paper (:func:`preprocess.with_margin`),
    so groups at its edges are kept; boxes and ink stay in the image's own analysis pixels."""
    image = Image.of(image)
    gray, scale = image.analysis(detect_side or DETECT_MAX_SIDE)
    if min(gray.shape) < MIN_HEIGHT_PIXELS:
        return InkGroups(np.zeros_like(gray), [], scale, image=image)
    if dark_ink is None:
        dark_ink = preprocess.dark_ink_on_light(gray)
    margin = 0
    if tight:
        margin = max(2, round(TIGHT_MARGIN * min(gray.shape)))
        # flat: the segmentation's thresholds are relative, the paper's grain does not matter there
        # (and drawing it cost ~10 ms a frame)
        gray = preprocess.with_margin(gray, margin=margin, paper_grain=False)
    height, width = gray.shape
    block = max(3, (min(height, width) // 8) | 1)
    ink = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C,
        cv2.THRESH_BINARY_INV if dark_ink else cv2.THRESH_BINARY,
        block, LOCAL_CONTRAST if dark_ink else -LOCAL_CONTRAST,
    )
    ink = cv2.bitwise_and(ink, _thin_ink(gray, block, dark_ink))
    join = max(3, (min(height, width) // 160) | 1)
    joiner = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (join, join))
    joined = cv2.dilate(ink, joiner)
    # Outer contours, not connectedComponentsWithStats: same pieces, ~25x faster here.
    contours, _ = cv2.findContours(joined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_height = max(MIN_HEIGHT_PIXELS, MIN_HEIGHT_FRACTION * min(height, width))
    rects = [cv2.boundingRect(c) for c in contours]
    if _remove_frames(ink, joined, rects, min_height):
        joined = cv2.dilate(ink, joiner)
        contours, _ = cv2.findContours(joined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rects = [cv2.boundingRect(c) for c in contours]
    groups, at_edge = _group_pieces(rects, min_height, width, height)
    if max_digits is not None and len(groups) > max_digits:
        groups = sorted(groups, key=lambda g: g[1][2] * g[1][3], reverse=True)[:max_digits]
    groups.sort(key=lambda g: g[1][0])
    cropped = []
    for members, (x, y, w, h) in groups:
        # this group's own ink: inside its pieces' outlines (a neighbour may reach into the box)
        own = np.zeros((h, w), np.uint8)
        cv2.drawContours(own, [contours[i] for i in members], -1, 255, cv2.FILLED,
                         offset=(-x, -y))
        cropped.append((cv2.bitwise_and(own, ink[y : y + h, x : x + w]), (x, y, w, h)))
    if margin:
        ink, cropped = _inside_margin(ink, cropped, margin)
    return InkGroups(ink, cropped, scale, dark_ink, image, at_edge)


def _inside_margin(ink: np.ndarray, groups: list[tuple[np.ndarray, Box]], margin: int
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, Box]]]:
    """The ink and groups of an image analysed inside a ``margin``: in the image's own pixels,
    each group's box clipped to the image (ink is never found in the margin's flat paper, but a
    dilated outline may reach into it)."""
    inner = ink[margin:-margin, margin:-margin]
    height, width = inner.shape
    kept = []
    for own, (x, y, w, h) in groups:
        left, top = max(x - margin, 0), max(y - margin, 0)
        right, bottom = min(x + w - margin, width), min(y + h - margin, height)
        if right <= left or bottom <= top:
            continue
        part = own[top + margin - y : bottom + margin - y, left + margin - x : right + margin - x]
        kept.append((part, (left, top, right - left, bottom - top)))
    return inner, kept


def _remove_frames(ink: np.ndarray, joined: np.ndarray, rects: list[Box],
                   min_height: float) -> bool:
    """Erase form boxes drawn around digits (``ink`` and ``joined`` are changed in place);
    returns whether any was.

    A box is a piece with straight horizontal edges near its top and near its bottom, longer
    than FRAME_EDGE x the piece's height (a digit's bar is shorter) and together spanning
    FRAME_SPAN of its width (touching digits' bars do not), and straight walls near both of its
    sides (a '3' or '5' written with a flat top and bottom has none); its
    straight edges are erased: horizontal ones that long, and vertical ones longer than
    FRAME_WALL x the height (a digit written in a box is shorter than the box).
    """
    erased = False
    for x, y, w, h in rects:
        if h < min_height or w < FRAME_EDGE * h:
            continue
        region = joined[y : y + h, x : x + w]
        margin = max(2, int(0.15 * h))
        # necessary before any opening: ink across FRAME_SPAN of the columns at top and bottom
        if min(region[:margin].any(axis=0).mean(),
               region[-margin:].any(axis=0).mean()) < FRAME_SPAN:
            continue
        edges = cv2.morphologyEx(region, cv2.MORPH_OPEN, np.ones((1, int(FRAME_EDGE * h)),
                                                                 np.uint8))
        top, bottom = edges[:margin].any(axis=0), edges[-margin:].any(axis=0)
        if min(top.mean(), bottom.mean()) < FRAME_SPAN:
            continue
        walls = cv2.morphologyEx(region, cv2.MORPH_OPEN, np.ones((int(FRAME_WALL * h), 1),
                                                                 np.uint8))
        side = max(2, int(0.15 * w))
        if not (walls[:, :side].any() and walls[:, -side:].any()):
            continue  # a box has walls: a digit with a flat top and bottom ('3', '5') has none
        lines = cv2.dilate(cv2.bitwise_or(edges, walls), np.ones((3, 3), np.uint8))
        keep = cv2.bitwise_not(lines)
        for target in (ink, joined):
            window = target[y : y + h, x : x + w]
            cv2.bitwise_and(window, keep, dst=window)
        erased = True
    return erased


def _thin_ink(gray: np.ndarray, block: int, dark_ink: bool) -> np.ndarray:
    """Mask of ink that is a thin structure on the paper: LOCAL_CONTRAST darker (lighter) than
    the paper where strokes narrower than ``block`` are filled in by a grey closing (opening).

    A shadow's edge is darker than the local mean all along its dark side, so the adaptive
    threshold alone marks a band there (which swallows any digit it touches). A closing keeps a
    step edge exactly where it is, so a shadow's edge is no darker than it. The closing's
    erosion is one pixel wider than its dilation so that the pixels straddling a sharp edge
    (half lit, half shadowed) are compared with the shadowed side, not the lit one.
    """
    # smoothed first: a closing takes the maximum of the sensor noise around each pixel
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    grow, shrink = (cv2.dilate, cv2.erode) if dark_ink else (cv2.erode, cv2.dilate)
    paper = shrink(grow(gray, cv2.getStructuringElement(cv2.MORPH_RECT, (block, block))),
                   cv2.getStructuringElement(cv2.MORPH_RECT, (block + 2, block + 2)))
    contrast = cv2.subtract(paper, gray) if dark_ink else cv2.subtract(gray, paper)
    contrast = _without_ruled_lines(contrast)
    # Relative contrast: noise, paper grain and light printing (a security pattern) are much
    # fainter than the writing on the same page.
    threshold = _ink_threshold(contrast)
    _, thin = cv2.threshold(contrast, threshold, 255, cv2.THRESH_BINARY)
    return thin


def _without_ruled_lines(contrast: np.ndarray) -> np.ndarray:
    """``contrast`` less ruled lines: thin straight horizontal ink across half the image or more.

    Averaged along rows over a stretch longer than a digit's bar, a line is a thin ridge (its
    rows much darker than the rows a few pixels above and below), where a row of digits is a
    thick band. Subtracting the line's own contrast (its median ridge) removes it and keeps
    the strokes that cross it (darker than the line). The stretch is short enough for a line
    that slopes a little.
    """
    height, width = contrast.shape
    along = cv2.blur(contrast, (max(16, width // 8), 1))
    reach = max(4, height // 30)
    padded = cv2.copyMakeBorder(along, reach, reach, 0, 0, cv2.BORDER_REPLICATE)
    beside = cv2.max(padded[: height], padded[2 * reach :])
    ridge = cv2.subtract(along, beside)
    _, line = cv2.threshold(ridge, LOCAL_CONTRAST // 2, 255, cv2.THRESH_BINARY)
    # Most frames have no ruled line: outer contours say so ~30x faster than labelling the
    # components (an 8-connected component is as wide as its outer contour).
    contours, _ = cv2.findContours(line, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if all(cv2.boundingRect(c)[2] < RULED_LINE_WIDTH * width for c in contours):
        return contrast
    count, labels, stats, _ = cv2.connectedComponentsWithStats(line, connectivity=8)
    lines = np.flatnonzero(stats[1:, cv2.CC_STAT_WIDTH] >= RULED_LINE_WIDTH * width) + 1
    if not len(lines):
        return contrast
    # each line's own contrast: the median of its ridge (a digit's bar on it is far above)
    level = np.zeros(count, np.uint8)
    for index in lines:
        level[index] = np.median(ridge[labels == index])
    estimate = cv2.dilate(level[labels], np.ones((2 * reach + 1, 1), np.uint8))
    flattened = cv2.subtract(contrast, estimate)
    return flattened


STRONGEST_PERCENTILE = 99.5


def _ink_threshold(contrast: np.ndarray) -> float:
    """``max(LOCAL_CONTRAST, RELATIVE_CONTRAST * the 99.5th percentile of contrast)``, bit for
    bit as ``np.percentile`` (linear interpolation) would give it, without a whole histogram.

    The percentile matters only when it is at least LOCAL_CONTRAST / RELATIVE_CONTRAST; ink is a
    few percent of a frame, so only the pixels at least that high are counted (a histogram of a
    320x240 frame cost ~0.1 ms, a quarter of the added segmentation time since 6d73554).
    """
    floor = int(np.ceil(LOCAL_CONTRAST / RELATIVE_CONTRAST))
    size = contrast.size
    position = (size - 1) * (STRONGEST_PERCENTILE / 100)
    below = int(np.floor(position))
    high = contrast[contrast >= floor]
    lower = size - high.size  # pixels under the floor: ranks 0 .. lower - 1
    fraction = position - below
    if below < lower:  # the percentile's lower neighbour is under the floor
        if below + 1 < lower or high.size == 0:
            return float(LOCAL_CONTRAST)  # so is the upper one, so is the percentile
        # the largest value under the floor, then the smallest above it (rare: computed here)
        low, upper = float(contrast[contrast < floor].max()), float(high.min())
    else:
        counts = np.cumsum(np.bincount(high, minlength=256)[floor:])
        low = floor + float(np.searchsorted(counts, below - lower, side="right"))
        upper = floor + float(np.searchsorted(counts, min(below + 1, size - 1) - lower,
                                              side="right"))
    # numpy's own lerp: from the nearer end, so the result is the same to the last bit
    value = upper - (upper - low) * (1 - fraction) if fraction >= 0.5 else \
        low + (upper - low) * fraction
    return max(LOCAL_CONTRAST, RELATIVE_CONTRAST * value)


def _group_pieces(rects: list[Box], min_height: float, width: int,
                  height: int) -> tuple[list[tuple[list[int], Box]], int]:
    """Drop specks, merge pieces stacked vertically, keep digit-sized and -shaped groups.

    Returns (piece indices, box) per digit candidate, and how many digit-tall groups were
    dropped for touching the image's edge or filling its height.
    """
    speck = max(2.0, min_height / 5)
    pieces = [([index], rect) for index, rect in enumerate(rects) if max(rect[2:]) >= speck]
    pieces.sort(key=lambda piece: piece[1][0])
    merged: list[tuple[list[int], Box]] = []
    for members, box in pieces:
        for index, (other_members, other) in enumerate(merged):
            if _stacked(box, other):
                merged[index] = (other_members + members, _union(box, other))
                break
        else:
            merged.append((members, box))
    kept = []
    at_edge = 0
    for members, (x, y, w, h) in merged:
        if h < min_height:
            continue
        touches_edge = x == 0 or y == 0 or x + w >= width or y + h >= height
        if touches_edge or h > MAX_HEIGHT_FRACTION * height:
            at_edge += 1
            continue
        kept.append((members, (x, y, w, h)))
    if len(kept) >= 2:
        # Separators ('.', ',', '-') and stray marks are much shorter than the digits they
        # stand between.
        typical = float(np.median([box[3] for _, box in kept]))
        kept = [(members, box) for members, box in kept if box[3] >= SEPARATOR_HEIGHT * typical]
    return kept, at_edge


def _stacked(a: Box, b: Box) -> bool:
    """Pieces of one digit: mostly the same columns, and close vertically."""
    overlap = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    if overlap < 0.5 * min(a[2], b[2]):
        return False
    gap = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])
    return gap <= 0.25 * max(a[3], b[3])


def _union(a: Box, b: Box) -> Box:
    x, y = min(a[0], b[0]), min(a[1], b[1])
    return x, y, max(a[0] + a[2], b[0] + b[2]) - x, max(a[1] + a[3], b[1] + b[3]) - y


def _rescale(box: Box, scale: float) -> Box:
    if scale == 1.0:
        return box
    return tuple(int(round(value * scale)) for value in box)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# The webcam's simple mode: one fixed box in the middle of the frame, read as one digit


def roi_box(frame_shape: tuple[int, ...], fraction: float = 0.5) -> Box:
    """A centred square of side ``fraction`` x the frame's shorter side."""
    height, width = frame_shape[:2]
    side = max(1, int(min(height, width) * fraction))
    return (width - side) // 2, (height - side) // 2, side, side
