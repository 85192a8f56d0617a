"""Image files to grayscale arrays, bounded in time and memory whatever the file says.

Anyone can hand the project an image (a folder to classify, an upload to the server), so a
file is never trusted to be what it claims:

1. only formats on an allow-list are decoded, recognised by their bytes (not their name;
   the header readers and their limits are :mod:`edgedigits.image.headers`):
   PNG, JPEG, GIF, BMP, WebP, TIFF, PNM (PBM/PGM/PPM) and Sun raster. Their headers say how
   big the image is *before* anything is decoded; JPEG 2000, Radiance HDR, OpenEXR, PFM and
   AVIF are refused (their decoders allocate several times the image before any check);
2. the header's size is checked against MAX_IMAGE_PIXELS and the memory the decode will take
   (pixels x channels x bytes per sample) against MAX_DECODE_BYTES; OpenCV's own limit
   (``OPENCV_IO_MAX_IMAGE_PIXELS``, set in ``edgedigits/__init__.py`` before cv2 loads) backs
   this up; a PNG whose chunk lengths run past the end of the file is refused as corrupt;
3. a file is read header first: its size is checked (MAX_FILE_BYTES) before it is read whole;
4. decodes running at the same time (classify's thread pool, the server) share one memory
   budget, so more threads never multiply the peak;
5. the decoded image becomes 8-bit gray (EXIF orientation honoured; alpha, 16-bit and palette
   converted and shrunk by :mod:`edgedigits.image.gray`); :class:`DecodedImage` also says the
   original size and the scale, so later steps can map boxes back without re-reading the file.

Everything a bad file can cause is a ``UserError`` (one line naming the file).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedigits.errors import UserError, first_line
from edgedigits.image import headers
from edgedigits.image.gray import shrink_then_gray
from edgedigits.image.headers import HEADER_BYTES, MAX_DECODE_BYTES, MAX_IMAGE_PIXELS, Header

# Refuse files larger than this before reading them whole.
MAX_FILE_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image ready for preprocessing, and where it came from."""

    gray: np.ndarray  # uint8 HxW, longer side at most gray.WORKING_MAX_SIDE (see shrink_factor)
    original_size: tuple[int, int]  # (width, height) of the file's image, as displayed
    format: str

    @property
    def scale(self) -> float:
        """Working pixels per original pixel (<= 1): divide a box by it for the file's pixels."""
        return max(self.gray.shape[:2]) / max(self.original_size)


# --------------------------------------------------------------------------------------------
# One memory budget for every decode in the process


class _MemoryBudget:
    """Decodes wait until their bytes fit beside the ones running (one always may run)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = threading.Condition()

    def acquire(self, amount: int) -> int:
        amount = min(amount, self.total)
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + amount <= self.total)
            self.used += amount
        return amount

    def release(self, amount: int) -> None:
        with self._changed:
            self.used -= amount
            self._changed.notify_all()


_BUDGET = _MemoryBudget(MAX_DECODE_BYTES + MAX_FILE_BYTES)


# --------------------------------------------------------------------------------------------
# Reading files and bytes


def read(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> DecodedImage:
    """Read an image file, header first (see the module's docstring). UserError if it is bad."""
    path = Path(path)
    name = str(path)
    try:
        with path.open("rb") as image_file:
            size = os.fstat(image_file.fileno()).st_size
            if size == 0:
                raise UserError(f"{name}: empty file (0 bytes)")
            if size > MAX_FILE_BYTES:
                raise UserError(f"{name}: file is {size / 1e6:.0f} MB, over the limit of "
                                f"{MAX_FILE_BYTES / 1e6:.0f} MB for one image")
            data = image_file.read(HEADER_BYTES)
            if len(data) < size and headers.header_or_none(data) is None:
                # e.g. a JPEG whose frame size follows more metadata than HEADER_BYTES
                data += image_file.read(size - len(data) + 1)
            header = headers.parse_header(data, name, max_pixels)
            held = _BUDGET.acquire(header.decode_bytes + size)
            try:
                data += image_file.read(size - len(data) + 1)
                return _decode_checked(data, name, max_pixels, header)
            finally:
                _BUDGET.release(held)
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not an image") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None


def decode(data: bytes, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> DecodedImage:
    """Decode an encoded image (the bytes of a file, e.g. an upload) like :func:`read`."""
    if len(data) == 0:
        raise UserError(f"{name}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{name}: {len(data) / 1e6:.0f} MB, over the limit of "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB for one image")
    header = headers.parse_header(data, name, max_pixels)
    held = _BUDGET.acquire(header.decode_bytes)
    try:
        return _decode_checked(bytes(data), name, max_pixels, header)
    finally:
        _BUDGET.release(held)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """:func:`read`'s gray array only (uint8, longer side at most gray.WORKING_MAX_SIDE)."""
    return read(path, max_pixels).gray


def decode_image(data: bytes, name: str = "image",
                 max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """:func:`decode`'s gray array only."""
    return decode(data, name, max_pixels).gray


def _decode_checked(data: bytes, name: str, max_pixels: int, header: Header) -> DecodedImage:
    if header.format == "PNG":
        headers.check_png_chunks(data, name)
    elif header.format == "JPEG":
        headers.check_jpeg_scans(data, name, header, max_pixels)
    flags = header.flags
    buffer = np.frombuffer(data, np.uint8)
    try:
        with _quiet_libraries():
            if flags == cv2.IMREAD_UNCHANGED:
                image, types, metadata = cv2.imdecodeWithMetadata(buffer, flags)
            else:  # every flag but IMREAD_UNCHANGED applies the EXIF orientation itself
                image, types, metadata = cv2.imdecode(buffer, flags), (), ()
    except cv2.error as error:
        raise UserError(f"{name}: cannot decode {header.format} image "
                        f"({first_line(error)})") from None
    del data
    if image is None or image.size == 0:
        raise UserError(f"{name}: not a {header.format} image OpenCV can read, or "
                        "truncated/corrupt")
    if flags == cv2.IMREAD_UNCHANGED:
        image = _apply_exif_orientation(image, types, metadata)
    original = (header.width, header.height)
    if (image.shape[1] > image.shape[0]) != (header.width > header.height):
        original = (header.height, header.width)  # turned by its EXIF orientation
    headers.check_pixels(original, name, max_pixels)
    return DecodedImage(shrink_then_gray(image), original, header.format)


_quiet_lock = threading.Lock()
_quiet_users = 0
_saved_stderr: int | None = None
_quieting = True


def keep_library_messages() -> None:
    """Leave file descriptor 2 alone while decoding, for a process whose own log lines matter
    more than libpng's: the server (its lines written while any upload decodes went to
    /dev/null with the libraries')."""
    global _quieting
    _quieting = False


@contextlib.contextmanager
def _quiet_libraries():
    """Keep libpng's and libtiff's own messages ("libpng error: IDAT: incorrect data check")
    off the console while decoding: the UserError says it, with the file's name. They print to
    file descriptor 2 directly, so it points at /dev/null while any decode runs (counted, for
    the thread pool). Not done when OPENCV_LOG_LEVEL was set to anything but OFF."""
    global _quiet_users, _saved_stderr
    if not _quieting or os.environ.get("OPENCV_LOG_LEVEL", "OFF").upper() != "OFF":
        yield
        return
    with _quiet_lock:
        if _quiet_users == 0:
            sys.stderr.flush()
            _saved_stderr = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0 and _saved_stderr is not None:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = None


# --------------------------------------------------------------------------------------------
# EXIF orientation (OpenCV applies it itself except with IMREAD_UNCHANGED)


def _apply_exif_orientation(image: np.ndarray, types, metadata) -> np.ndarray:
    """Rotate/flip as the EXIF Orientation tag (0x0112) says."""
    for kind, block in zip(types, metadata, strict=False):
        if kind == cv2.IMAGE_METADATA_EXIF:
            orientation = _exif_orientation(bytes(np.asarray(block).ravel()))
            return _ORIENT.get(orientation, lambda im: im)(image)
    return image


_ORIENT = {
    2: lambda im: cv2.flip(im, 1),
    3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
    4: lambda im: cv2.flip(im, 0),
    5: lambda im: cv2.flip(cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE), 1),
    6: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
    7: lambda im: cv2.flip(cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
    8: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _exif_orientation(exif: bytes) -> int:
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    if exif[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if exif[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(order + "I", exif[4:8])
        (count,) = struct.unpack(order + "H", exif[offset : offset + 2])
        for index in range(count):
            start = offset + 2 + 12 * index
            tag, _kind, _n, value = struct.unpack(order + "HHIH", exif[start : start + 10])
            if tag == 0x0112:
                return value
    except struct.error:
        return 1
    return 1
