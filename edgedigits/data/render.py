"""Digits on paper: the one renderer behind the evaluation sets, the video benchmark and tests.

Everything here draws MNIST digits (white ink on black, 28x28) as dark ink on paper:

- :func:`paper_scene`: digits placed at given positions on a lit sheet (a webcam frame, a test
  photo, the video benchmark's frames) — mild conditions, exact positions known;
- :func:`photograph`: any ink layer (a digit, a written number) as a camera would photograph
  it — perspective, uneven light, a shadow edge, defocus, sensor noise, JPEG;
- :func:`render_on_paper`: one digit through :func:`photograph` (the ``mnist-paper`` set);
- :func:`written_number`: a whole number written fast — digits of varied size, touching or
  overlapping, slanted, with separators, on ruled paper, in form boxes or over a printed
  security pattern — then photographed (the ``numbers`` set);
- :func:`scanned_amount`: a number as a cheque's amount field is scanned — grey paper, a light
  guilloche, hatching or ruled line behind it, any pen, slanted and wavy strokes, separators,
  cut tight to the writing (the number reader's training lines, with MNIST *training* digits).

The evaluation sets use MNIST *test* digits only; the number reader's training lines
(:func:`written_number` and :func:`scanned_amount`) are drawn with MNIST *training* digits.
"""

from __future__ import annotations

import cv2
import numpy as np

# Darkness of the ink in paper_scene: the paper's level times (1 - ink), plus INK_LEVEL x ink.
INK_LEVEL = 35
BACKGROUNDS = ("plain", "ruled", "boxes", "pattern")
SEPARATORS = (".", ",", "-")


# --------------------------------------------------------------------------------------------
# A lit sheet with digits at known places


def paper_scene(digits, positions, size=(480, 640), digit_px=120,
                seed: np.random.Generator | int = 0, grain: float = 5.0) -> np.ndarray:
    """BGR photo-like image: warm paper, a lighting gradient, dark ink, grain, slight blur.

    ``digits`` are 28x28 MNIST images, drawn ``digit_px`` square with their top-left corner at
    ``positions`` [(x, y)]; ``seed`` a seed or a generator for the grain.
    """
    height, width = size
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 195 + 40 * cols / width - 25 * rows / height
    paper = light[..., None] * np.array([0.93, 0.98, 1.0], np.float32)
    for digit, (x, y) in zip(digits, positions, strict=True):
        ink = cv2.resize(digit, (digit_px, digit_px), interpolation=cv2.INTER_CUBIC)
        ink = ink.astype(np.float32)[..., None] / 255.0
        region = paper[y : y + digit_px, x : x + digit_px]
        paper[y : y + digit_px, x : x + digit_px] = region * (1 - ink) + INK_LEVEL * ink
    paper += rng.normal(0, grain, paper.shape)
    return cv2.GaussianBlur(np.clip(paper, 0, 255).astype(np.uint8), (3, 3), 0)


def ink_box(digit: np.ndarray, position, digit_px=120) -> list[int]:
    """Where :func:`paper_scene` put the digit's ink: [x, y, w, h]."""
    x, y, w, h = cv2.boundingRect((digit > 60).astype(np.uint8))
    scale = digit_px / 28
    return [round(position[0] + x * scale), round(position[1] + y * scale),
            round(w * scale), round(h * scale)]


# --------------------------------------------------------------------------------------------
# A camera's photo of an ink layer


def photograph(ink: np.ndarray, rng: np.random.Generator, printed: np.ndarray | None = None,
               tilt: float = 0.12) -> np.ndarray:
    """A camera-like gray photo of ``ink`` (float 0-1, 1 = ink) written on paper.

    Dark ink on paper with a lighting gradient and a soft shadow, perspective from a tilted
    camera (each corner moved by up to ``tilt`` of the side), defocus blur, sensor noise and
    JPEG compression. ``printed`` (float 0-1, same shape) is what was on the paper before the
    writing (ruled lines, boxes, a pattern), already scaled to its darkness.
    """
    height, width = ink.shape
    # Perspective: move each corner, and shrink the content a little.
    sides = np.array([width, height], np.float64)
    margin = sides * rng.uniform(0.05, 0.2)
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    target = corners * (1 - 2 * margin / sides) + margin
    target += rng.uniform(-tilt, tilt, (4, 2)).astype(np.float32) * sides
    warp = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    ink = cv2.warpPerspective(ink, warp, (width, height))
    # Paper: bright, lit unevenly from a random direction, with a soft shadow across it.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    angle = rng.uniform(0, 2 * np.pi)
    lighting = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) * rng.uniform(20, 70)
    paper = rng.uniform(175, 235) + lighting
    edge = rng.uniform(0.2, 0.8)
    shadow = 1.0 / (1.0 + np.exp(-(x * np.cos(angle + 1) + y * np.sin(angle + 1) - edge) * 25))
    paper *= 1.0 - rng.uniform(0.0, 0.35) * shadow
    if printed is not None:
        paper *= 1.0 - cv2.warpPerspective(printed, warp, (width, height))
    photo = paper * (1.0 - ink * rng.uniform(0.55, 0.9))
    sigma = rng.uniform(0.3, 2.0)
    photo = cv2.GaussianBlur(photo, (0, 0), sigma) + rng.normal(0, rng.uniform(2, 8), photo.shape)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    quality = int(rng.integers(40, 95))
    _, encoded = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)


def render_on_paper(digit: np.ndarray, rng: np.random.Generator, size: int = 160) -> np.ndarray:
    """A camera-like photo (:func:`photograph`) of one MNIST digit, ``size`` x ``size`` gray."""
    ink = cv2.resize(digit, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    return photograph(ink, rng)


def render_mnist_on_paper(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """:func:`render_on_paper` for every image, reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack([render_on_paper(image, rng) for image in images])


def cropped_to_ink(photo: np.ndarray) -> np.ndarray:
    """``photo`` cut to the box of its ink, as a form's box or a scanner's per-digit crop is:
    the ink touches the edges. Ink here: darker than halfway from the paper (median) to the
    darkest 1 %, specks removed."""
    paper, ink = float(np.median(photo)), float(np.percentile(photo, 1))
    mask = (photo < (paper + ink) / 2).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    if not mask.any():
        return photo
    x, y, w, h = cv2.boundingRect(mask)
    return photo[y : y + h, x : x + w]


def faded(photo: np.ndarray, levels: float) -> np.ndarray:
    """``photo`` with its ink only ``levels`` grey levels darker than its paper (light pencil,
    a pale scan): the paper stays, the ink's contrast is scaled down."""
    paper, ink = float(np.median(photo)), float(np.percentile(photo, 1))
    scale = levels / max(paper - ink, 1.0)
    return np.clip(paper - (paper - photo.astype(np.float32)) * scale, 0, 255).astype(np.uint8)


def hard_variant(photo: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    """One of VARIANTS of a camera-like photo: "tight" (cropped to the ink), "faint" (ink 30-70
    levels darker than the paper), "faint-small" (both, then shrunk to 28x28 like a scan)."""
    if variant == "tight":
        return cropped_to_ink(photo)
    if variant == "faint":
        return faded(photo, rng.uniform(30, 70))
    if variant == "faint-small":
        small = faded(cropped_to_ink(photo), rng.uniform(30, 70))
        return cv2.resize(small, (28, 28), interpolation=cv2.INTER_AREA)
    raise ValueError(f"unknown variant {variant!r}")


VARIANTS = ("tight", "faint", "faint-small")


# --------------------------------------------------------------------------------------------
# A whole written number


def written_number(digits: np.ndarray, rng: np.random.Generator, height: int = 64,
                   background: str | None = None, gap: tuple[float, float] = (-0.22, 0.08),
                   separators: bool = True) -> np.ndarray:
    """A camera-like gray photo of the MNIST digits ``digits`` (N x 28 x 28) written as one
    number, left to right.

    Each digit is cropped to its ink, scaled to about ``height`` px (+-12 %), and placed
    ``gap`` x its width after the previous one (negative: overlapping, so most neighbours touch);
    the line is slanted, may hold a separator ('.', ',', '-': not part of the number), and sits
    on ``background`` (one of BACKGROUNDS; random when None). In "boxes" each digit gets its own
    form box, so the digits stand apart there.
    """
    background = background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    in_boxes = background == "boxes"
    pieces = _sized_pieces(digits, rng, height, 0.12)
    separator_after = -1
    if separators and len(digits) >= 3 and rng.random() < 0.3:
        separator_after = int(rng.integers(0, len(digits) - 1))
    cell = int(height * 1.25)
    margin = height // 2
    width = margin * 2 + sum(p.shape[1] for p in pieces) + len(pieces) * cell
    canvas_height = height * 2 + margin
    ink = np.zeros((canvas_height, width), np.float32)
    baseline = margin + height
    x = margin
    lefts = []
    for index, piece in enumerate(pieces):
        h, w = piece.shape
        if in_boxes:
            left = x + (cell - w) // 2 + int(rng.integers(-3, 4))
            x += cell + int(height * 0.15)
        else:
            left = x
            x = left + w + int(round(w * rng.uniform(*gap)))
        top = baseline - h + int(rng.integers(-height // 16, height // 16 + 1))
        lefts.append(left)
        region = ink[top : top + h, left : left + w]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        if index == separator_after:
            x = _draw_separator(ink, rng, x, baseline, height) if not in_boxes else x
    used = min(width, x + margin)
    ink = ink[:, :used]
    # Slant: shear about the baseline, as fast handwriting leans.
    shear = rng.uniform(-0.25, 0.25)
    matrix = np.float32([[1, -shear, shear * baseline], [0, 1, 0]])
    ink = cv2.warpAffine(ink, matrix, (ink.shape[1], ink.shape[0]))
    printed = _printed(background, ink.shape, rng, baseline, height, lefts, cell, pieces)
    return photograph(ink, rng, printed, tilt=0.04)


def _sized_pieces(digits: np.ndarray, rng: np.random.Generator, height: int,
                  spread: float) -> list[np.ndarray]:
    """Each digit cut to its ink (float 0-1) and scaled to ``height`` px, +-``spread``."""
    pieces = []
    for digit in digits:
        x, y, w, h = cv2.boundingRect((digit > 40).astype(np.uint8))
        piece = digit[y : y + h, x : x + w].astype(np.float32) / 255
        scale = height * rng.uniform(1 - spread, 1 + spread) / h
        pieces.append(cv2.resize(piece, (max(1, round(w * scale)), max(1, round(h * scale))),
                                 interpolation=cv2.INTER_CUBIC))
    return pieces


def _draw_separator(ink: np.ndarray, rng: np.random.Generator, x: int, baseline: int,
                    height: int, kinds: tuple[str, ...] = SEPARATORS) -> int:
    kind = kinds[int(rng.integers(len(kinds)))]
    stroke = max(2, height // 12)
    x += height // 8
    if kind == "-":
        y = baseline - height // 2
        cv2.line(ink, (x, y), (x + height // 3, y), 1.0, stroke)
        return x + height // 3 + height // 6
    cv2.circle(ink, (x + stroke, baseline - stroke), stroke, 1.0, -1)
    if kind == ",":
        cv2.line(ink, (x + stroke * 2, baseline - stroke), (x, baseline + height // 6), 1.0,
                 max(1, stroke - 1))
    return x + stroke * 2 + height // 6


def _printed(background: str, shape: tuple[int, int], rng: np.random.Generator, baseline: int,
             height: int, lefts: list[int], cell: int, pieces: list) -> np.ndarray | None:
    """What is printed on the paper under the number, as darkness 0-1."""
    if background == "plain":
        return None
    canvas = np.zeros(shape, np.float32)
    rows, cols = shape
    if background == "ruled":
        spacing = int(height * rng.uniform(1.1, 1.5))
        thickness = int(rng.integers(1, 3))
        first = baseline + int(rng.integers(-height // 10, height // 10 + 1))
        for y in range(first % spacing, rows, spacing):
            cv2.line(canvas, (0, y), (cols, y), 1.0, thickness)
        return canvas * rng.uniform(0.15, 0.45)
    if background == "boxes":
        top, bottom = baseline - int(height * 1.2), baseline + int(height * 0.2)
        for left, piece in zip(lefts, pieces, strict=True):
            centre = left + piece.shape[1] // 2
            cv2.rectangle(canvas, (centre - cell // 2, top), (centre + cell // 2, bottom), 1.0,
                          int(rng.integers(1, 3)))
        return canvas * rng.uniform(0.3, 0.6)
    # "pattern": a guilloche of fine interlaced waves, printed light (security paper, cheques)
    waves = int(rng.integers(6, 14))
    xs = np.arange(cols, dtype=np.float32)
    for k in range(waves):
        period = rng.uniform(0.6, 2.0) * height
        amplitude = rng.uniform(0.2, 0.6) * height
        centre = rng.uniform(0, rows)
        phase = rng.uniform(0, 2 * np.pi)
        ys = centre + amplitude * np.sin(2 * np.pi * xs / period + phase + k)
        points = np.stack([xs, ys], axis=1).astype(np.int32)
        cv2.polylines(canvas, [points], False, 1.0, 1, cv2.LINE_AA)
    return np.clip(canvas, 0, 1) * rng.uniform(0.1, 0.3)


# --------------------------------------------------------------------------------------------
# A scanned amount


def scanned_amount(digits: np.ndarray, rng: np.random.Generator, height: int = 64) -> np.ndarray:
    """A gray scan of the MNIST digits ``digits`` (N x 28 x 28) written as a cheque's amount.

    What real amounts have and :func:`written_number` does not: a flat scan (no perspective or
    shadow) of grey paper with a light printed background (a dense guilloche, diagonal hatching,
    a ruled line, or nothing), the ink at low or full contrast, thick or thin pens, strokes
    slanted either way and bent (a smooth random warp: faster, rounder writing), separators
    ('.', ',' between thousands; '.', '-', '.-' after the number), and, most of the time, the image
    cut tight to the writing so the digits touch its top, bottom and ends."""
    pieces = _sized_pieces(digits, rng, height, 0.15)
    margin = height // 2
    width = margin * 2 + sum(p.shape[1] for p in pieces) * 2 + height * (len(pieces) + 2)
    ink = np.zeros((height * 2 + margin, width), np.float32)
    baseline = margin + height
    separators = len(digits) >= 2 and rng.random() < 0.5
    x = margin
    for index, piece in enumerate(pieces):
        h, w = piece.shape
        top = baseline - h + int(rng.integers(-height // 12, height // 12 + 1))
        region = ink[top : top + h, x : x + w]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        x += w + int(round(w * rng.uniform(-0.2, 0.45)))
        if separators and len(pieces) - index - 1 in (3, 6) and rng.random() < 0.8:
            x = _draw_separator(ink, rng, x, baseline, height, (".", ","))  # thousands
    if rng.random() < 0.35:  # a closing mark: ".", "-" or ".-" (a '/' would pass for a 1)
        x = _draw_separator(ink, rng, x, baseline, height, (".", "-"))
        if rng.random() < 0.4:
            x = _draw_separator(ink, rng, x, baseline, height, ("-",))
    ink = ink[:, : min(width, x + margin)]
    pen = rng.uniform(-1.0, 1.0)  # thin .. thick
    size = max(1, int(round(abs(pen) * height / 25)))
    if size > 1 or pen > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        ink = cv2.dilate(ink, kernel) if pen > 0 else cv2.erode(ink, kernel)
    ink = _bent(ink, rng, height)
    shear = rng.uniform(-0.45, 0.3)
    matrix = np.float32([[1, -shear, shear * baseline], [0, 1, 0]])
    ink = cv2.warpAffine(ink, matrix, (ink.shape[1], ink.shape[0]))
    return _scan(ink, rng, baseline, height)


def _bent(ink: np.ndarray, rng: np.random.Generator, height: int) -> np.ndarray:
    """``ink`` under a smooth random displacement of up to ~6 % of ``height``."""
    rows, cols = ink.shape
    amplitude = rng.uniform(0.0, 0.06) * height
    if amplitude < 0.5:
        return ink
    coarse = (max(2, cols // height + 2), 4)
    dx = cv2.resize(rng.uniform(-1, 1, coarse[::-1]).astype(np.float32), (cols, rows),
                    interpolation=cv2.INTER_CUBIC) * amplitude
    dy = cv2.resize(rng.uniform(-1, 1, coarse[::-1]).astype(np.float32), (cols, rows),
                    interpolation=cv2.INTER_CUBIC) * amplitude
    grid_y, grid_x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return cv2.remap(ink, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR)


def _scan(ink: np.ndarray, rng: np.random.Generator, baseline: int, height: int) -> np.ndarray:
    """A flatbed scan of ``ink`` (float 0-1): grey paper, a printed background, sensor noise,
    JPEG, then most often cut tight to the writing."""
    rows, cols = ink.shape
    paper = np.full((rows, cols), rng.uniform(140, 235), np.float32)
    paper += np.linspace(0, rng.uniform(-20, 20), cols, dtype=np.float32)[None, :]
    printed = _security_print(rng, (rows, cols), baseline, height)
    paper *= 1.0 - printed
    photo = paper * (1.0 - ink * rng.uniform(0.35, 0.85))
    photo = cv2.GaussianBlur(photo, (0, 0), rng.uniform(0.3, 1.3))
    photo += rng.normal(0, rng.uniform(1, 7), photo.shape)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    _, encoded = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 96))])
    photo = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    box = cv2.boundingRect((ink > 0.3).astype(np.uint8))
    if rng.random() < 0.7 and box[2] > 0 and box[3] > 0:
        # cut to the writing, give or take a few pixels: ink touches the crop's edges
        x, y, w, h = box
        grow = [int(rng.integers(-height // 24, height // 8 + 1)) for _ in range(4)]
        left, top = max(0, x - grow[0]), max(0, y - grow[1])
        right, bottom = min(cols, x + w + grow[2]), min(rows, y + h + grow[3])
        photo = photo[top:bottom, left:right]
    return photo


def _security_print(rng: np.random.Generator, shape: tuple[int, int], baseline: int,
                    height: int) -> np.ndarray:
    """The light print behind a cheque's amount, as darkness 0-1: a dense guilloche, diagonal
    hatching, a ruled line under the writing, or nothing."""
    rows, cols = shape
    canvas = np.zeros(shape, np.float32)
    kind = rng.choice(["plain", "guilloche", "hatching", "ruled"], p=[0.2, 0.35, 0.25, 0.2])
    if kind == "guilloche":
        xs = np.arange(cols, dtype=np.float32)
        for _ in range(int(rng.integers(10, 40))):
            period = rng.uniform(0.8, 4.0) * height
            ys = rng.uniform(-0.2, 1.2) * rows + rng.uniform(0.2, 1.0) * height * np.sin(
                2 * np.pi * xs / period + rng.uniform(0, 2 * np.pi))
            cv2.polylines(canvas, [np.stack([xs, ys], axis=1).astype(np.int32)], False, 1.0, 1,
                          cv2.LINE_AA)
        return np.clip(canvas, 0, 1) * rng.uniform(0.05, 0.3)
    if kind == "hatching":
        spacing = rng.uniform(3, 8)
        angle = rng.uniform(-1.2, 1.2)
        grid_y, grid_x = np.mgrid[0:rows, 0:cols].astype(np.float32)
        phase = (grid_x * np.cos(angle) + grid_y * np.sin(angle)) / spacing
        canvas = (np.cos(2 * np.pi * phase) > 0.4).astype(np.float32)
        return canvas * rng.uniform(0.05, 0.25)
    if kind == "ruled":
        y = baseline + int(rng.integers(-height // 8, height // 4 + 1))
        cv2.line(canvas, (0, y), (cols, y), 1.0, int(rng.integers(1, 3)))
        return canvas * rng.uniform(0.2, 0.7)
    return canvas
