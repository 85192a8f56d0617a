"""What an image file's header says, and the limits a file must pass before it is decoded.

Each format's header reader sits beside the limits it enforces (:mod:`edgedigits.image.decode`
reads files and decodes them; see its docstring for the whole list): the format is recognised by
its bytes, the size and the memory and time the decode will take are known before any pixel is
decoded, and a PNG's chunks and a JPEG's scans are counted before its decoder runs.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import cv2

from edgedigits.errors import UserError
from edgedigits.image.gray import shrink_factor

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


def header_or_none(data: bytes) -> Header | None:
    try:
        return _header(data)
    except (struct.error, IndexError, ValueError):
        return None


def parse_header(data: bytes, name: str = "image",
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Header:
    """The format and size from the first bytes of a file; ``UserError`` when the format is not
    accepted, the header is cut short, or the image is too big to decode safely."""
    header = header_or_none(data)
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
    check_pixels((header.width, header.height), name, max_pixels)
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


def check_png_chunks(data: bytes, name: str) -> None:
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


def check_jpeg_scans(data: bytes, name: str, header: Header, max_pixels: int) -> None:
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


def check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise UserError(f"{name}: header says the image is {width}x{height}")
    if width * height > max_pixels:
        raise UserError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.0f} (refused to protect memory; shrink it first)"
        )
