"""Find the digits in a larger image or video frame, ready for one batched inference.

Used by ``classify.py --multi`` (a photo of a written number) and by ``webcam.py`` per frame,
so it must stay well under a millisecond for a 640x480 frame:

1. gray, shrunk to at most DETECT_MAX_SIDE; polarity decided as for one image (which side of
   the median-filtered paper the ink lies, so a shadow across the frame does not flip it);
2. adaptive threshold (a local mean, so uneven lighting does not matter), kept only where the
   ink is also a thin structure (black-hat), so a shadow's edge is not taken for ink;
3. a small dilation joins broken strokes into one outline (for finding pieces only: the crops
   keep the undilated ink);
4. components smaller than a speck are dropped; pieces stacked above each other (the bar of a
   5, a broken 4) are merged; what is left is filtered by size and shape;
5. each digit's own ink is turned into MNIST format by :func:`preprocess.mask_to_mnist`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgedigits import preprocess

# Frames are analysed at most this large: a 640x480 webcam frame at half size, which keeps a
# digit 40 px tall at 20 px (the MNIST box) and costs a quarter of the time.
DETECT_MAX_SIDE = 320
# Ink must be this many grey levels darker (or lighter) than its neighbourhood's mean.
LOCAL_CONTRAST = 12
# A digit is at least this fraction of the frame's shorter side tall (and 8 px), at most 95 %.
MIN_HEIGHT_FRACTION = 0.05
MIN_HEIGHT_PIXELS = 8
MAX_HEIGHT_FRACTION = 0.95
# Wider than this times the height is a line or a row of touching digits, not one digit.
MAX_WIDTH_TO_HEIGHT = 1.6


Box = tuple[int, int, int, int]  # x, y, width, height in the input image's pixels


@dataclass
class Segmentation:
    """Digits found in one image, left to right."""

    boxes: list[Box]
    digits: np.ndarray  # (N, 28, 28) uint8, MNIST format, one per box

    def __len__(self) -> int:
        return len(self.boxes)


def find_digits(image: np.ndarray, dark_ink: bool | None = None,
                max_digits: int | None = None,
                detect_side: int | None = None) -> Segmentation:
    """Digit candidates in ``image`` (any array :func:`preprocess.to_grayscale` accepts).

    ``dark_ink``: True for dark ink on light paper, False for light on dark, None to decide
    from the frame. ``max_digits`` keeps the largest candidates only (webcam overload guard).
    ``detect_side``: longer side the image is analysed at (default DETECT_MAX_SIDE; give more
    for a large photo with small digits). Boxes are always in ``image``'s own pixels.
    """
    detect_side = detect_side or DETECT_MAX_SIDE
    image = np.asarray(image)
    scale = 1.0
    if image.ndim >= 2 and max(image.shape[:2]) > detect_side:
        # shrink before the colour conversion: a quarter of the pixels to convert
        scale = max(image.shape[:2]) / detect_side
        image = preprocess.shrink(image, detect_side) if image.dtype == np.uint8 else image
    gray = preprocess.shrink(preprocess.to_grayscale(image), detect_side)
    height, width = gray.shape
    if min(height, width) < MIN_HEIGHT_PIXELS:
        return _empty()
    if dark_ink is None:
        dark_ink = preprocess.dark_ink_on_light(gray)
    block = max(3, (min(height, width) // 8) | 1)
    ink = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C,
        cv2.THRESH_BINARY_INV if dark_ink else cv2.THRESH_BINARY,
        block, LOCAL_CONTRAST if dark_ink else -LOCAL_CONTRAST,
    )
    ink = cv2.bitwise_and(ink, _thin_ink(gray, block, dark_ink))
    join = max(3, (min(height, width) // 160) | 1)
    joined = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (join, join)))
    # Outer contours, not connectedComponentsWithStats: same pieces, ~25x faster here.
    contours, _ = cv2.findContours(joined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_height = max(MIN_HEIGHT_PIXELS, MIN_HEIGHT_FRACTION * min(height, width))
    groups = _group_pieces([cv2.boundingRect(c) for c in contours], min_height, width, height)
    if max_digits is not None and len(groups) > max_digits:
        groups = sorted(groups, key=lambda g: g[1][2] * g[1][3], reverse=True)[:max_digits]
    groups.sort(key=lambda g: g[1][0])

    boxes: list[Box] = []
    digits: list[np.ndarray] = []
    for members, (x, y, w, h) in groups:
        # this digit's own ink: inside its pieces' outlines (a neighbour may reach into the box)
        own = np.zeros((h, w), np.uint8)
        cv2.drawContours(own, [contours[i] for i in members], -1, 255, cv2.FILLED,
                         offset=(-x, -y))
        digit = preprocess.mask_to_mnist(cv2.bitwise_and(own, ink[y : y + h, x : x + w]))
        if digit is None:
            continue
        boxes.append(_rescale((x, y, w, h), scale))
        digits.append(digit)
    if not digits:
        return _empty()
    return Segmentation(boxes, np.stack(digits))


def _empty() -> Segmentation:
    return Segmentation([], np.zeros((0, preprocess.MNIST_SIZE, preprocess.MNIST_SIZE), np.uint8))


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
    _, thin = cv2.threshold(contrast, LOCAL_CONTRAST, 255, cv2.THRESH_BINARY)
    return thin


def _group_pieces(rects: list[Box], min_height: float, width: int,
                  height: int) -> list[tuple[list[int], Box]]:
    """Drop specks, merge pieces stacked vertically, keep digit-sized and -shaped groups.

    Returns (piece indices, box) per digit candidate.
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
    for members, (x, y, w, h) in merged:
        touches_edge = x == 0 or y == 0 or x + w >= width or y + h >= height
        if touches_edge or h < min_height or h > MAX_HEIGHT_FRACTION * height:
            continue
        if w > MAX_WIDTH_TO_HEIGHT * h:
            continue
        kept.append((members, (x, y, w, h)))
    return kept


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
# The webcam's simple mode: one fixed box in the middle of the frame


def roi_box(frame_shape: tuple[int, ...], fraction: float = 0.5) -> Box:
    """A centred square of side ``fraction`` x the frame's shorter side."""
    height, width = frame_shape[:2]
    side = max(1, int(min(height, width) * fraction))
    return (width - side) // 2, (height - side) // 2, side, side


def crop_roi(frame: np.ndarray, fraction: float = 0.5,
             dark_ink: bool | None = None) -> tuple[Box, np.ndarray | None]:
    """(box, MNIST-format digit or None) for the centred ROI of ``frame``."""
    x, y, w, h = roi_box(frame.shape, fraction)
    return (x, y, w, h), preprocess.to_mnist_format(frame[y : y + h, x : x + w], dark_ink)
