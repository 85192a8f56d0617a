"""Image arrays to the working 8-bit gray: any channels and depth to one uint8 channel (alpha
composited), shrunk by area averaging to a working size first (edgedigits.image.decode decodes
files with it; edgedigits.image.Image makes its copies with it)."""

from __future__ import annotations

import cv2
import numpy as np

from edgedigits.errors import UserError

# Images are shrunk to this longer side before any processing: a 20x20 digit needs no more, and
# shrinking with pixel-area averaging also removes sensor noise.
WORKING_MAX_SIDE = 512
# ... except a long strip (a line of many digits, 20000x200): shrunk by its longer side alone
# it would keep 5 rows and nothing to read. Its shorter side stays at least this many pixels
# (times max_side / WORKING_MAX_SIDE for a smaller copy), within WORKING_MAX_PIXELS pixels.
WORKING_MIN_SHORT_SIDE = 64
WORKING_MAX_PIXELS = 4 * WORKING_MAX_SIDE * WORKING_MAX_SIDE
# Alpha is composited over black instead of white when ink and paper differ by less than this
# many grey levels over white (white ink on transparency).
ALPHA_MIN_CONTRAST = 40


def shrink_then_gray(image: np.ndarray) -> np.ndarray:
    """A decoded image to working-size gray. Shrunk first, so that no conversion ever copies a
    big image at full size (area averaging and gray conversion are both linear)."""
    if image.dtype == np.uint16:  # one 8-bit copy instead of 16-bit temporaries
        image = cv2.convertScaleAbs(image, alpha=1 / 257)
    return to_grayscale(shrink(image))


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Any image array to 2-D uint8 gray: 1-4 channels (gray, gray+alpha, BGR, BGRA), bool,
    integer or float pixels (floats up to 1.0 are taken as 0-1). Alpha is composited over white
    (or over black when the ink is only visible that way, e.g. white ink on transparency).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (2, 3, 4)):
        raise UserError(f"expected an image shaped HxW or HxWxC with C in 1-4, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise UserError(f"image is empty ({image.shape[1]}x{image.shape[0]} pixels)")
    image = _to_uint8(image)
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray = image[:, :, 0] if channels == 2 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    alpha = image[:, :, -1]
    if alpha.min() == 255:
        return np.ascontiguousarray(gray)
    over_white = _composite(gray, alpha, 255)
    if _contrast(over_white) < ALPHA_MIN_CONTRAST:
        over_black = _composite(gray, alpha, 0)
        if _contrast(over_black) > _contrast(over_white):
            return over_black
    return over_white


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.complexfloating):
        values = np.nan_to_num(np.real(image).astype(np.float64), nan=0.0, posinf=255, neginf=0)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(values, 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, 255).astype(np.uint8)
    raise UserError(f"unsupported pixel type {image.dtype}")


def _composite(gray: np.ndarray, alpha: np.ndarray, background: int) -> np.ndarray:
    weight = alpha.astype(np.uint16)
    mixed = (gray.astype(np.uint16) * weight + background * (255 - weight) + 127) // 255
    return mixed.astype(np.uint8)


def _contrast(gray: np.ndarray) -> float:
    low, high = np.percentile(gray[:: max(1, gray.shape[0] // 64), :: max(1, gray.shape[1] // 64)],
                              (1, 99))
    return float(high - low)


def shrink_factor(height: int, width: int, max_side: int = WORKING_MAX_SIDE) -> float:
    """How many pixels of an image ``height`` x ``width`` become one when it is shrunk for
    ``max_side`` (>= 1): its longer side to ``max_side``, unless that leaves a long strip fewer
    than WORKING_MIN_SHORT_SIDE rows (scaled to ``max_side``); such a strip keeps that many,
    or as many as fit in WORKING_MAX_PIXELS (scaled likewise)."""
    longer, shorter = max(height, width), min(height, width)
    factor = longer / max_side
    if factor <= 1:
        return 1.0
    ratio = max_side / WORKING_MAX_SIDE
    if shorter / factor >= WORKING_MIN_SHORT_SIDE * ratio:
        return factor
    kept = max(shorter / (WORKING_MIN_SHORT_SIDE * ratio),
               float(np.sqrt(height * width / (WORKING_MAX_PIXELS * ratio * ratio))), 1.0)
    return min(factor, kept)


def shrink(gray: np.ndarray, max_side: int = WORKING_MAX_SIDE) -> np.ndarray:
    """Downscale (pixel-area averaging) so the longer side is at most ``max_side`` (a long
    strip: see :func:`shrink_factor`)."""
    height, width = gray.shape[:2]
    factor = shrink_factor(height, width, max_side)
    if factor == 1.0:
        return gray
    longer = max(height, width)
    scale = max_side / longer if factor == longer / max_side else 1 / factor
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
