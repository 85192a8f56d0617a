"""Real images to MNIST format: what every inference entry point feeds the classifier.

MNIST digits are white ink on black, the ink size-normalised into a 20x20 box (aspect kept,
anti-aliased) and pasted into 28x28 so that the ink's centre of mass is at the centre. A photo
of a digit on paper is nothing like that, so this module:

1. reads the file safely (:mod:`edgedigits.image.decode`, re-exported here as :func:`read_image`):
   format and size checked from the header before decoding, memory bounded, EXIF orientation
   honoured, alpha composited over white, 16-bit and palette converted, large images shrunk;
2. separates ink from paper (:func:`ink_mask`): the paper estimated by a wide median filter
   and subtracted (uneven lighting and shadow edges go with it), polarity decided by which side
   of the paper the ink lies, Otsu threshold, blank images detected;
3. normalises the ink like MNIST (:func:`mask_to_mnist`): specks dropped, cropped, strokes
   thickened to MNIST's width, scaled into a DIGIT_BOX (19 px) box, centred by centre of mass.

:func:`to_mnist_format` does 2 and 3 for a whole image (a photo, a webcam ROI);
:mod:`edgedigits.image.segment` calls :func:`mask_to_mnist` directly on each digit it finds.
Everything returns ``None`` for "no digit here" rather than a guess.
"""

from __future__ import annotations

import cv2
import numpy as np

# Reading files is edgedigits.image.decode's (bounded in time and memory); its names stay importable
# from here for the code that always used them.
from edgedigits.image.decode import (  # noqa: F401
    MAX_IMAGE_PIXELS,
    DecodedImage,
    decode_image,
    read_image,
)
from edgedigits.image.gray import WORKING_MAX_SIDE, shrink, to_grayscale  # noqa: F401

MNIST_SIZE = 28
# MNIST fits the anti-aliased ink into 20x20 inside the 28x28 field. Our ink is a binary mask,
# whose box is ~1 px tighter than MNIST's grey fringe: 19 measured best on every set (README).
DIGIT_BOX = 19

# Ink that differs from paper by this many grey levels (of 255) is ink.
MIN_CONTRAST = 40
# Fainter ink (down to MIN_FAINT_CONTRAST) counts only when it is FAINT_SIGNAL_TO_NOISE times
# the paper's own noise (standard deviation) and looks like strokes: its STROKE_PIECES largest
# pieces hold STROKE_SHARE of it, and it covers STROKE_COVERAGE of the image. Grain, JPEG noise
# and an empty page fail these (their Otsu "ink" is scattered, barely above the noise).
MIN_FAINT_CONTRAST = 12
FAINT_SIGNAL_TO_NOISE = 4.0
STROKE_PIECES = 3
STROKE_SHARE = 0.8
STROKE_COVERAGE = (0.01, 0.5)
# Images at least this large on their shorter side have their lighting flattened before the
# threshold (smaller ones are scans or tiny crops: nothing to flatten, too few pixels).
FLATTEN_MIN_SIDE = 48
# The paper's level is a median over a window this fraction of the shorter side, computed on a
# copy shrunk to BACKGROUND_SIDE. The window must be much wider than the digit's strokes, or a
# bold digit becomes its own background: on the rendered photos (mnist-paper, seed 0) a window
# of 0.25 / 0.34 / 0.5 / 0.75 / 1.0 read 95.3 / 97.4 / 99.0 / 99.2 / 99.2 %; 0.5 keeps it local
# enough for lighting that is not a plane. Shrinking to 32 or 64 px read the same.
BACKGROUND_WINDOW = 0.5
BACKGROUND_SIDE = 64
# Polarity is judged on a copy shrunk by an integer factor to 1-2x this on its shorter side,
# against a median POLARITY_WINDOW of its shorter side wide: narrower than the flattening's, so
# that a deep shadow leaves less broad residual to outweigh a thin digit (webcam frames with
# shadows, /tmp/pp6/shadowseg.py: 0.5 missed 6-7 digits of ~490, 0.25-0.35 missed 3-4), and at
# least 17 px, where OpenCV's median switches to its constant-time algorithm (3x faster).
POLARITY_SIDE = FLATTEN_MIN_SIDE
POLARITY_WINDOW = 0.35
# Pieces smaller than this fraction of the largest ink piece are specks (dust, paper texture).
SPECK_FRACTION = 0.05
# Stroke width, in output pixels, that ink is thickened or thinned to. MNIST's own strokes
# measure 2.9 px median (stroke_width() on test digits binarised at 128, p10-p90 2.4-3.7);
# 2.4 measured best across photos, semeion and optdigits (thicker merges loops of 6/8/9).
TARGET_STROKE = 2.4
# Strokes are measured and thickened at this multiple of the 20-px box, then averaged down,
# which gives MNIST-like anti-aliased edges.
SUPERSAMPLE = 4

# A tight crop (ink touching the border) is read again inside a margin of its paper this
# fraction of its longer side wide.
TIGHT_MARGIN = 0.25
# ... and when nothing at all was found in it, its ink inside that margin must stand this many
# times the spread of the paper around it above that paper (see _tight_crop_ink).
TIGHT_CONTRAST_TO_SPREAD = 1.5
# ... and it is tried only when its darkest and lightest twentieths are this many MIN_CONTRASTs
# apart (the tight crops read this way: 89-158 levels; empty camera ROIs 18-20, empty pages <= 72).
TIGHT_SPREAD = 2

# --------------------------------------------------------------------------------------------
# Ink versus paper


def dark_ink_on_light(gray: np.ndarray) -> bool:
    """True when the paper is lighter than the ink.

    Large images (a photo, a webcam frame or ROI): the paper is what a wide median filter leaves
    (:func:`paper_background`), and the ink lies on the side of it where the residual has the
    most energy (noise and JPEG ringing are symmetric, ink is one-sided). Judged on a copy
    shrunk by an integer factor to POLARITY_SIDE-2x that. A median keeps lighting gradients and
    shadow edges as background, so a shadow does not flip the decision. (The paper as "the
    larger of Otsu's two classes" was flipped by a shadow over half the page: Otsu split lit
    from shadowed paper and the shadow was the majority. Black-hat against top-hat energy was
    tried and lost: the paper inside loops counts as thin light structure.)
    Small images (scans, < FLATTEN_MIN_SIDE) have no lighting to speak of: there the paper is
    the larger of Otsu's classes. (Judging by the image border instead measured the same on
    photos and optdigits, worse on semeion, whose digits touch the border.)
    """
    height, width = gray.shape
    if min(height, width) >= FLATTEN_MIN_SIDE:
        step = max(1, min(height, width) // POLARITY_SIDE)
        if step > 1:  # an exact integer factor takes OpenCV's fast area-averaging path
            height, width = height - height % step, width - width % step
            gray = cv2.resize(gray[:height, :width], (width // step, height // step),
                              interpolation=cv2.INTER_AREA)
        darker, lighter = _residuals(gray, POLARITY_WINDOW)
        return cv2.norm(darker, cv2.NORM_L2) >= cv2.norm(lighter, cv2.NORM_L2)
    _, bright = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return 2 * int(np.count_nonzero(bright)) >= bright.size


def paper_background(gray: np.ndarray, window: float = BACKGROUND_WINDOW) -> np.ndarray:
    """The paper without the ink: a median filter ``window`` x the shorter side wide (half by
    default), same size as ``gray``.

    Ink is a minority of any window that wide, so the median is the paper's own level there,
    for dark and for light ink alike; a median keeps lighting gradients and straight shadow
    edges as they are, so subtracting it removes them. Computed on a copy shrunk to
    BACKGROUND_SIDE (lighting is smooth) and enlarged back: ~0.1 ms whatever the image size.
    """
    height, width = gray.shape
    small = gray
    if min(height, width) > BACKGROUND_SIDE:
        factor = BACKGROUND_SIDE / min(height, width)
        small = cv2.resize(gray, (max(1, round(width * factor)), max(1, round(height * factor))),
                           interpolation=cv2.INTER_AREA)
    window = max(3, int(min(small.shape) * window) | 1)
    background = cv2.medianBlur(small, window)
    if background.shape != gray.shape:
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    return background


def _residuals(gray: np.ndarray,
               window: float = BACKGROUND_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(how much darker, how much lighter) than the paper each pixel is, uint8."""
    background = paper_background(gray, window)
    return cv2.subtract(background, gray), cv2.subtract(gray, background)


def ink_mask(gray: np.ndarray, dark_ink: bool | None = None,
             flatten: bool = True) -> np.ndarray | None:
    """Binary mask (uint8 0/255) of the ink in a grayscale image, or None if it is blank.

    ``dark_ink``: True for dark ink on light paper, False for light on dark, None to decide
    from the image. ``flatten``: take out uneven lighting first (images at least
    FLATTEN_MIN_SIDE on their shorter side); False for a crop set in a flat margin of its own
    paper, where a bold digit would be most of the window the paper's level is taken over.
    """
    if gray.size < 4 or min(gray.shape) < 2:
        return None
    if dark_ink is None:
        dark_ink = dark_ink_on_light(gray)
    if flatten and min(gray.shape) >= FLATTEN_MIN_SIDE:
        # Flatten uneven lighting and shadows: keep only how far each pixel is from the paper
        # beside it (in the ink's direction), then smooth sensor noise. Otsu then splits ink
        # from paper, never lit paper from shadowed paper.
        darker, lighter = _residuals(gray)
        ink = cv2.GaussianBlur(darker if dark_ink else lighter, (3, 3), 0)
    else:
        ink = cv2.bitwise_not(gray) if dark_ink else gray  # ink bright from here on
    _, mask = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    inside = mask > 0
    if not inside.any() or inside.all():
        return None
    paper = ink[~inside]
    contrast = float(ink[inside].mean()) - float(paper.mean())
    if contrast >= MIN_CONTRAST:
        return mask
    # Faint ink (pencil, a light scan) is still ink when it stands far above the paper's own
    # noise and forms strokes: a few solid pieces, not grain scattered over the page.
    if contrast < MIN_FAINT_CONTRAST or contrast < FAINT_SIGNAL_TO_NOISE * float(paper.std()):
        return None
    if min(gray.shape) >= FLATTEN_MIN_SIDE and touches_border(mask):
        return None  # a faint band across a photo is a shadow's edge more often than a digit
    return mask if _looks_like_strokes(mask) else None


def touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _looks_like_strokes(mask: np.ndarray) -> bool:
    """A few solid pieces holding most of the ink, covering a plausible part of the image."""
    coverage = np.count_nonzero(mask) / mask.size
    if not STROKE_COVERAGE[0] <= coverage <= STROKE_COVERAGE[1]:
        return False
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    return areas[:STROKE_PIECES].sum() >= STROKE_SHARE * areas.sum()


# --------------------------------------------------------------------------------------------
# Ink mask to MNIST


def to_mnist_format(image: np.ndarray, dark_ink: bool | None = None) -> np.ndarray | None:
    """One image holding one digit (a photo, a webcam ROI, any array) -> 28x28 uint8 MNIST-style
    digit (white on black, ink in a DIGIT_BOX (19 px) box, centred by centre of mass), or None
    if there is no digit.
    """
    gray = shrink(to_grayscale(image))
    mask = ink_mask(gray, dark_ink)
    if mask is not None and max(gray.shape) >= FLATTEN_MIN_SIDE and touches_border(mask):
        # A tight crop (a box cut from a form, a close webcam ROI): the ink fills the image,
        # so the paper's level and the ink's side are misjudged. Give it the margin it lacks.
        # A tight '1' is narrow (73x20): judged by its long side, it is a crop, not a scan
        # (tight crops of mnist-paper, robust FP32: 90.9 -> 93.7 %; the other sets unchanged).
        # (Small scans are thresholded as they are: semeion and optdigits read worse padded.)
        # The crop is small and evenly lit, so it is thresholded as it is, not flattened: a bold
        # digit is most of the flattening window and lost its strokes' middles to it (tight
        # crops, robust FP32: 96.7 -> 98.6 %; 98.8 with a margin; the other sets unchanged).
        padded = ink_mask(with_margin(gray), dark_ink, flatten=False)
        if padded is not None:
            mask = padded
    elif mask is None and max(gray.shape) >= FLATTEN_MIN_SIDE:
        # Nothing found: a tight crop whose bold ink fills it (the paper's median was the ink)
        # is found inside a margin; a shadow's edge on an empty page is not (below).
        mask = _tight_crop_ink(gray, dark_ink)
    if mask is None:
        return None
    return mask_to_mnist(mask)


def _tight_crop_ink(gray: np.ndarray, dark_ink: bool | None) -> np.ndarray | None:
    """The ink mask of ``gray`` read inside a margin of its paper, when it is ink: it stays
    off the margin (a shadow's edge runs into it: the margin's paper is the median of a lit
    and a shadowed border), and it differs from the paper around it by MIN_CONTRAST and by
    TIGHT_CONTRAST_TO_SPREAD times that paper's spread (a shadow's paper spans both levels)."""
    # A bold digit filling its crop holds ink and paper in large shares: its 5th and 95th
    # percentiles are the two, far apart. An empty frame or page is not read a second time
    # (a camera's empty ROI: 18-20 levels apart; read twice, --roi ran 10-15 % slower).
    sample = gray[::4, ::4] if min(gray.shape) >= 4 * FLATTEN_MIN_SIDE else gray
    low, high = np.percentile(sample, (5, 95))
    if high - low < TIGHT_SPREAD * MIN_CONTRAST:
        return None
    margin = max(2, int(round(TIGHT_MARGIN * max(gray.shape))))
    mask = ink_mask(with_margin(gray, margin=margin, paper_grain=False), dark_ink)
    if mask is None:
        return None
    inner = mask[margin:-margin, margin:-margin] > 0
    if np.count_nonzero(mask) != np.count_nonzero(inner) or inner.all():
        return None
    ink, paper = gray[inner], gray[~inner]
    contrast = abs(float(ink.mean()) - float(paper.mean()))
    if contrast < MIN_CONTRAST or contrast < TIGHT_CONTRAST_TO_SPREAD * float(paper.std()):
        return None
    return mask


def with_margin(gray: np.ndarray, fraction: float = TIGHT_MARGIN,
                margin: int | None = None, paper_grain: bool = True) -> np.ndarray:
    """``gray`` inside a margin of its own paper (the median of its border pixels: the paper,
    even where ink touches the edge), ``fraction`` of its longer side wide (or ``margin``
    pixels); flat unless ``paper_grain`` (the grain costs ~10 ms for a 440x360 result)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]).astype(np.float32)
    level = float(np.median(border))
    if margin is None:
        margin = max(2, int(round(fraction * max(gray.shape))))
    padded = cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                                value=int(round(level)))
    # The margin gets the paper's own grain (robust sigma of the border), so that the blank
    # test still compares the ink with real paper, not with a perfectly flat margin.
    # (from differences of neighbouring border pixels: a lighting gradient is not grain)
    steps = np.concatenate([np.diff(gray[0].astype(np.float32)),
                            np.diff(gray[-1].astype(np.float32)),
                            np.diff(gray[:, 0].astype(np.float32)),
                            np.diff(gray[:, -1].astype(np.float32))])
    sigma = 1.4826 * float(np.median(np.abs(steps))) / np.sqrt(2)
    if sigma > 0 and paper_grain:
        grain = np.random.default_rng(0).normal(level, sigma, padded.shape)
        outside = np.ones(padded.shape, bool)
        outside[margin:-margin, margin:-margin] = False
        padded[outside] = np.clip(grain[outside], 0, 255).astype(np.uint8)
    return padded


def mask_to_mnist(mask: np.ndarray) -> np.ndarray | None:
    """Binary ink mask (nonzero = ink) of one digit -> 28x28 uint8 MNIST-style digit, or None.

    This is the per-crop step of segmentation, so it stays cheap: everything after the speck
    filter works on at most (SUPERSAMPLE * 20)^2 pixels.
    """
    mask = _drop_specks(mask)
    if mask is None:
        return None
    x, y, width, height = cv2.boundingRect(mask)
    ink = mask[y : y + height, x : x + width]
    # Work at SUPERSAMPLE x the 20-px box: shrink big crops (area averaging keeps thin strokes
    # as partial coverage, re-binarised below), enlarge tiny ones (nearest keeps them crisp).
    work_side = SUPERSAMPLE * DIGIT_BOX
    scale = work_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1:
        ink = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
        _, ink = cv2.threshold(ink, 63, 255, cv2.THRESH_BINARY)
    else:
        ink = cv2.resize(ink, size, interpolation=cv2.INTER_NEAREST)
    ink = _match_stroke(ink, TARGET_STROKE * SUPERSAMPLE)
    x, y, width, height = cv2.boundingRect(ink)
    if width == 0:
        return None
    ink = ink[y : y + height, x : x + width]
    scale = DIGIT_BOX / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
    return _centre_by_mass(digit)


def _drop_specks(mask: np.ndarray) -> np.ndarray | None:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask > 0).view(np.uint8), connectivity=8
    )
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= SPECK_FRACTION * areas.max()) + 1
    if len(keep) == count - 1:
        return np.where(labels > 0, 255, 0).astype(np.uint8)
    lookup = np.zeros(count, np.uint8)
    lookup[keep] = 255
    return lookup[labels]


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary mask in pixels: 2 x area / perimeter (exact for long
    strokes; short ones read a little thin, equally so for MNIST and for the input)."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(contour, True) for contour in contours)
    return 2.0 * area / max(perimeter, 1.0)


def _match_stroke(ink: np.ndarray, target: float) -> np.ndarray:
    """Dilate thin ink up to ``target`` px stroke width; erode ink much thicker than it.

    Phone photos shrunk to 20 px have hair-thin strokes, bold scans have fat ones; MNIST-trained
    networks read MNIST-like widths best (thickening alone: photos 93 -> 98 %).
    """
    width = stroke_width(ink)
    if width > target + 2.0:
        diameter = int(round(width - target))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))
        thinner = cv2.erode(ink, kernel)
        return thinner if thinner.any() else ink
    missing = target - width
    if missing < 1.0:
        return ink
    diameter = int(round(missing)) + 1
    padded = cv2.copyMakeBorder(ink, diameter, diameter, diameter, diameter,
                                cv2.BORDER_CONSTANT, value=0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))
    return cv2.dilate(padded, kernel)


def _centre_by_mass(digit: np.ndarray) -> np.ndarray | None:
    """Paste the scaled digit into 28x28 with its centre of mass at the centre (integer shift,
    as MNIST's own normalisation did)."""
    moments = cv2.moments(digit)
    if moments["m00"] <= 0:
        return None
    height, width = digit.shape
    left = int(round(MNIST_SIZE / 2 - moments["m10"] / moments["m00"]))
    top = int(round(MNIST_SIZE / 2 - moments["m01"] / moments["m00"]))
    # Keep the whole box inside the field (MNIST's box always fits: 20 + 2 x 4 = 28).
    left = min(max(left, 0), MNIST_SIZE - width)
    top = min(max(top, 0), MNIST_SIZE - height)
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    out[top : top + height, left : left + width] = digit
    return out
