"""Image files to grayscale arrays, bounded in time and memory whatever the file says.

(Over 400 lines on purpose: each allowed format's header reader sits beside the limits it
enforces; split up, the checks a hostile file must pass would no longer read as one list.)

Anyone can hand the project an image (a folder to classify, an upload to the server), so a
file is never trusted to be what it claims:

1. only formats on an allow-list are decoded, recognised by their bytes (not their name):
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
import re
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedigits.errors import UserError, first_line
from edgedigits.image.gray import shrink_factor, shrink_then_gray

# Refuse images above this many pixels before decoding them (a 100-megapixel photo is ~10000 x
# 10000; bigger is almost surely a decompression bomb). OpenCV's own default limit is 2^30.
MAX_IMAGE_PIXELS = 100_000_000
# Refuse images whose decode would take more memory than this: an 8-bit RGBA PNG of 26
# megapixels (the decoder holds it twice), a 16-bit one of 13. JPEGs decode reduced, and PNGs
# without alpha straight to 8-bit gray, so those pass up to MAX_IMAGE_PIXELS.
MAX_DECODE_BYTES = 200 * 1024 * 1024
# Refuse PNG and TIFF images whose decoder must inflate more raw bytes than this (their time
# grows with it: 64 MiB took ~2.5 s on this shared 2-core machine): an 8-bit RGBA PNG of
# 16 megapixels, an 8-bit RGB one of 22, a 16-bit RGB one of 11.
MAX_INFLATE_BYTES = 64 * 1024 * 1024
# A JPEG's decoder passes over every block once per scan (progressive JPEGs have about 10; one
# can repeat a scan thousands of times in a few bytes each: 56 KB took 8 s here). Refused: more
# scans than this, or scans x pixels over the cost of the biggest image allowed with 10 scans.
MAX_JPEG_SCANS = 32
JPEG_SCANS_AT_MAX_PIXELS = 10
# A PNG's chunks are walked before decoding; files cut into more chunks than this are refused
# (a 100 MB image in libpng's usual 8 KiB IDAT chunks has ~13,000).
MAX_PNG_CHUNKS = 100_000
# Refuse files larger than this before reading them whole.
MAX_FILE_BYTES = 100 * 1024 * 1024
# Bytes read first: the header (a JPEG's frame size may follow up to 64 KiB of EXIF).
HEADER_BYTES = 1 << 17
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8"
_SUN_RASTER = b"\x59\xa6\x6a\x95"
# Formats OpenCV reads that are refused: recognised to say so in plain words.
_REFUSED = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"), (b"v/1\x01", "OpenEXR"),
    (b"PF\n", "PFM"), (b"Pf\n", "PFM"), (b"ftypavif", "AVIF"),
)


@dataclass(frozen=True)
class Header:
    """What a file's header says, before any pixel is decoded."""

    format: str
    width: int
    height: int
    decode_bytes: int  # memory the decode will take
    flags: int = cv2.IMREAD_UNCHANGED  # how to decode it (gray, reduced, or everything)
    inflate_bytes: int = 0  # raw bytes a lossless decoder must produce (PNG, TIFF): its time


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
            if len(data) < size and _header_or_none(data) is None:
                # e.g. a JPEG whose frame size follows more metadata than HEADER_BYTES
                data += image_file.read(size - len(data) + 1)
            header = parse_header(data, name, max_pixels)
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
    header = parse_header(data, name, max_pixels)
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
        _check_png_chunks(data, name)
    elif header.format == "JPEG":
        _check_jpeg_scans(data, name, header, max_pixels)
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
    _check_pixels(original, name, max_pixels)
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
# Headers


def _header_or_none(data: bytes) -> Header | None:
    try:
        return _header(data)
    except (struct.error, IndexError, ValueError):
        return None


def parse_header(data: bytes, name: str = "image",
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Header:
    """The format and size from the first bytes of a file; ``UserError`` when the format is not
    accepted, the header is cut short, or the image is too big to decode safely."""
    header = _header_or_none(data)
    if header is None:
        for magic, format_name in _REFUSED:
            if data.startswith(magic) or (magic == b"ftypavif" and data[4:12] in (
                    b"ftypavif", b"ftypavis")):
                raise UserError(f"{name}: {format_name} images are not accepted (their size "
                                "cannot be checked before decoding); save it as PNG or JPEG")
        if _sniff(data):
            raise UserError(f"{name}: {_sniff(data)} file with a header cut short or corrupt")
        raise UserError(f"{name}: not an image format edgedigits reads (PNG, JPEG, GIF, BMP, "
                        "WebP, TIFF, PNM, Sun raster), or corrupt")
    _check_pixels((header.width, header.height), name, max_pixels)
    if header.inflate_bytes > MAX_INFLATE_BYTES:
        raise UserError(
            f"{name}: {header.format} image of {header.width}x{header.height} holds "
            f"{header.inflate_bytes / 1e6:.0f} MB of raw pixels, over the limit of "
            f"{MAX_INFLATE_BYTES / 1e6:.0f} MB (its decode would take too long; shrink it or "
            "save it as JPEG)")
    if header.decode_bytes > MAX_DECODE_BYTES:
        raise UserError(
            f"{name}: {header.format} image of {header.width}x{header.height} would take "
            f"{header.decode_bytes / 1e6:.0f} MB to decode, over the limit of "
            f"{MAX_DECODE_BYTES / 1e6:.0f} MB (refused to protect memory; shrink it first)")
    return header


def size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an accepted format's header, else None."""
    header = _header_or_none(data)
    return (header.width, header.height) if header else None


def _sniff(data: bytes) -> str | None:
    if data.startswith(_PNG):
        return "PNG"
    if data.startswith(_JPEG):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(_SUN_RASTER):
        return "Sun raster"
    return None


def _header(data: bytes) -> Header | None:
    if data.startswith(_PNG) and data[12:16] == b"IHDR":
        return _png_header(data)
    if data.startswith(_JPEG):
        return _jpeg_header(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return Header("GIF", width, height, width * height * 8)  # canvas + frame, BGRA
    if data[:2] == b"BM" and len(data) >= 30:
        width, height, _, bits = struct.unpack("<iiHH", data[18:30])
        return Header("BMP", width, abs(height), width * abs(height) * (4 if bits == 32 else 3))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
        return Header("WebP", *size, size[0] * size[1] * 8) if size else None
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_header(data)
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return _pnm_header(data)
    if data.startswith(_SUN_RASTER):
        width, height = struct.unpack(">II", data[4:12])
        return Header("Sun raster", width, height, width * height * 3 * 2)
    return None


def _png_header(data: bytes) -> Header:
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    has_alpha = color_type in (4, 6) or b"tRNS" in data[: min(len(data), HEADER_BYTES)]
    sample = 2 if bit_depth == 16 else 1
    stored = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color_type, 4)  # samples per pixel in the file
    inflate = width * height * stored * max(sample, bit_depth / 8)
    if has_alpha:  # decoded whole (alpha kept; the decoder holds a second copy), gray after
        return Header("PNG", width, height, width * height * 4 * sample * 2, inflate_bytes=inflate)
    # Without alpha the decoder gives 8-bit gray directly: one byte per pixel.
    return Header("PNG", width, height, width * height, cv2.IMREAD_GRAYSCALE, inflate)


def _check_png_chunks(data: bytes, name: str) -> None:
    """A chunk whose length runs past the end of the file is a lie the decoder would allocate."""
    position = len(_PNG)
    chunks = 0
    while position + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise UserError(f"{name}: PNG cut into more than {MAX_PNG_CHUNKS:,} chunks "
                            "(refused: reading them would take too long)")
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if position + 12 + length > len(data):
            raise UserError(f"{name}: corrupt PNG: chunk {kind!r} claims {length} bytes, more "
                            f"than the {len(data)}-byte file holds")
        if kind == b"IEND":
            return
        position += 12 + length


def _jpeg_header(data: bytes) -> Header | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width, components = struct.unpack(">HHB", data[position + 5 : position + 10])
            flags, factor = _jpeg_flags(width, height)
            decoded = (width // factor + 1) * (height // factor + 1)
            if marker in (0xC2, 0xC6, 0xCA, 0xCE):  # progressive: every coefficient is buffered
                decoded += width * height * components * 2
            return Header("JPEG", width, height, decoded, flags)
        position += 2 + length
    return None


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # ends a scan's entropy-coded data


def jpeg_scans(data: bytes) -> int:
    """How many scans (SOS segments) a JPEG holds, from its segment lengths (a thumbnail's
    inside APP1 is skipped); entropy-coded data holds no marker but RSTn (0xFF is stuffed)."""
    scans = 0
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
        if marker == 0xDA:
            scans += 1
            following = _JPEG_MARKER.search(data, position)
            if following is None:
                break
            position = following.start()
    return scans


def _check_jpeg_scans(data: bytes, name: str, header: Header, max_pixels: int) -> None:
    scans = jpeg_scans(data)
    pixels = header.width * header.height
    allowed = min(MAX_JPEG_SCANS, max(1, JPEG_SCANS_AT_MAX_PIXELS * max_pixels // pixels))
    if scans > allowed:
        raise UserError(f"{name}: JPEG of {header.width}x{header.height} in {scans} scans, over "
                        f"the limit of {allowed} at that size (its decode would take too long; "
                        "re-save it as a baseline JPEG or PNG)")


def _jpeg_flags(width: int, height: int) -> tuple[int, int]:
    """Decode straight to gray, shrunk by 2/4/8 inside the decoder when the image is big."""
    shrunk = shrink_factor(height, width)
    for factor, flag in ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                         (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)):
        if shrunk >= factor:
            return flag, factor
    return cv2.IMREAD_GRAYSCALE, 1


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _tiff_header(data: bytes) -> Header | None:
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    found = {}
    for index in range(count):
        entry = data[offset + 2 + 12 * index : offset + 14 + 12 * index]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        # ImageWidth, ImageLength, BitsPerSample, SamplesPerPixel: SHORT (3) or LONG (4)
        if tag in (256, 257, 258, 277):
            value_format = order + ("H" if kind == 3 else "I")
            end = 8 + struct.calcsize(value_format)
            found[tag] = struct.unpack(value_format, entry[8:end])[0]
    if 256 not in found or 257 not in found:
        return None
    width, height = found[256], found[257]
    samples = max(3, min(found.get(277, 1), 16))
    sample_bytes = max(1, (found.get(258, 8) if found.get(277, 1) == 1 else 16) // 8)
    return Header("TIFF", width, height, width * height * samples * max(sample_bytes, 2) * 2,
                  inflate_bytes=width * height * found.get(277, 1) * sample_bytes)


def _pnm_header(data: bytes) -> Header | None:
    """P1-P6: the magic, then width, height (and maxval but for P1/P4), separated by blanks."""
    fields: list[int] = []
    position = 2
    needed = 2 if data[1:2] in b"14" else 3
    while len(fields) < needed and position < len(data):
        while position < len(data) and data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":  # a comment to the end of the line
            while position < len(data) and data[position : position + 1] not in b"\r\n":
                position += 1
            continue
        start = position
        while position < len(data) and data[position : position + 1].isdigit():
            position += 1
        if start == position or position - start > 9:
            return None
        fields.append(int(data[start:position]))
    if len(fields) < needed:
        return None
    width, height = fields[:2]
    channels = 3 if data[1:2] in b"36" else 1
    sample = 2 if needed == 3 and fields[2] > 255 else 1
    return Header("PNM", width, height, width * height * channels * sample * 2)


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise UserError(f"{name}: header says the image is {width}x{height}")
    if width * height > max_pixels:
        raise UserError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.0f} (refused to protect memory; shrink it first)"
        )


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
