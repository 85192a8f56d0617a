"""The one image object every reading starts from: decoded once, grey once, shrunk once.

A file or an upload is decoded by :mod:`edgedigits.image.decode` (bounded in time and memory,
big photos shrunk to a working size on the way); a video frame or an array is taken as it is.
Everything downstream asks this object, which computes each form once and keeps it:

- ``pixels``: the working image (gray, BGR or BGRA, as decoded or given);
- :attr:`Image.gray`: the working image in 8-bit gray;
- :meth:`Image.analysis`: a gray copy at most ``side`` pixels long, for finding ink (for a uint8
  frame it is shrunk before the gray conversion: a quarter of the pixels to convert);
- one map back: :meth:`Image.to_original` turns a box in working pixels (times a factor, for
  the analysis copy) into the original image's pixels, where every reported box lives.
"""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from edgedigits.errors import UserError
from edgedigits.image import decode
from edgedigits.image.gray import shrink, shrink_factor, to_grayscale

Box = tuple[int, int, int, int]


class Image:
    """One image. ``scale``: working pixels per original pixel (<= 1 when decoding shrank it)."""

    def __init__(self, pixels: np.ndarray, *, scale: float = 1.0, name: str = "image") -> None:
        pixels = np.asarray(pixels)
        if pixels.ndim not in (2, 3) or pixels.size == 0:
            raise UserError(f"{name}: expected an image array (H, W) or (H, W, 1-4 channels), "
                            f"got shape {pixels.shape}")
        self.pixels = pixels
        self.scale = scale
        self.name = name
        self._analysis: dict[int, tuple[np.ndarray, float]] = {}

    @classmethod
    def read(cls, path: str | os.PathLike, max_pixels: int = decode.MAX_IMAGE_PIXELS) -> Image:
        """An image file, decoded safely (UserError when it is bad)."""
        decoded = decode.read(path, max_pixels)
        return cls(decoded.gray, scale=decoded.scale, name=str(path))

    @classmethod
    def decode(cls, data: bytes, name: str = "image",
               max_pixels: int = decode.MAX_IMAGE_PIXELS) -> Image:
        """An encoded image in memory (an upload), decoded like :meth:`read`."""
        decoded = decode.decode(data, name=name, max_pixels=max_pixels)
        return cls(decoded.gray, scale=decoded.scale, name=name)

    @classmethod
    def of(cls, image: Image | np.ndarray, name: str = "image") -> Image:
        """``image`` itself, or an array (a frame, gray/BGR/BGRA) wrapped as one."""
        return image if isinstance(image, Image) else cls(image, name=name)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.pixels.shape

    @cached_property
    def gray(self) -> np.ndarray:
        """The working image in 8-bit gray (computed once)."""
        return to_grayscale(self.pixels)

    def gray_region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Gray pixels of a region of the working image. A uint8 gray or BGR image converts
        pixel by pixel, so only the region is converted while :attr:`gray` has not been made
        (a webcam frame's whole-frame conversion was ~0.12 ms of its ~2.5); other images are
        converted whole, once (alpha and float images are judged as a whole)."""
        pixels = self.pixels
        per_pixel = pixels.dtype == np.uint8 and (pixels.ndim == 2 or pixels.shape[2] in (1, 3))
        if "gray" in self.__dict__ or not per_pixel:
            return self.gray[top:bottom, left:right]
        return to_grayscale(pixels[top:bottom, left:right])

    def analysis(self, side: int) -> tuple[np.ndarray, float]:
        """(gray copy with its longer side at most ``side`` (a long strip keeps more:
        :func:`shrink_factor`), working pixels per copy pixel), computed once per side."""
        cached = self._analysis.get(side)
        if cached is not None:
            return cached
        pixels = self.pixels
        factor = shrink_factor(*pixels.shape[:2], side)
        if "gray" in self.__dict__:
            small = shrink(self.gray, side)
        elif pixels.dtype == np.uint8:  # shrink first: a quarter of the pixels to convert
            small = to_grayscale(shrink(pixels, side))
        else:
            small = shrink(self.gray, side)
        self._analysis[side] = (small, factor)
        return small, factor

    def to_original(self, box: Box, factor: float = 1.0) -> Box:
        """A box in working pixels (times ``factor``: the analysis copy's) -> original pixels."""
        ratio = factor / self.scale
        if ratio == 1.0:
            return tuple(int(v) for v in box)  # type: ignore[return-value]
        return _scaled(box, ratio)

    def to_working(self, box: Box, factor: float) -> Box:
        """A box in analysis pixels (``factor`` working pixels each) -> working pixels."""
        if factor == 1.0:
            return box
        return tuple(int(round(v * factor)) for v in box)  # type: ignore[return-value]


def _scaled(box: Box, ratio: float) -> Box:
    """``box`` times ``ratio``, its edges rounded (not its size: boxes that touch still touch,
    and never overlap)."""
    x, y, w, h = box
    left, top = round(x * ratio), round(y * ratio)
    return left, top, round((x + w) * ratio) - left, round((y + h) * ratio) - top
