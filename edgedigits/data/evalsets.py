"""Labelled evaluation sets: the folder layout users bring, and loaders for public scan sets.

The user-facing contract is the folder layout ``DIR/<digit>/<any name>.<image>`` (the layout of
image-classification data sets). Semeion and UCI optdigits come as text files; they load here as
raw images and can be written into the folder layout with :func:`write_folder`, so every set is
evaluated through the same reading and preprocessing as a user's photos.

Images from the text formats are returned like paper: dark ink (0) on white (255), uint8, at
their original size (16x16 semeion, 32x32 optdigits). Preprocessing decides polarity and scale
itself, exactly as for a photo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedigits.errors import UserError
from edgedigits.files import atomic_path

# Extensions OpenCV's imread handles in the standard opencv-python build.
IMAGE_EXTENSIONS = frozenset({
    ".bmp", ".dib", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".pbm", ".pgm",
    ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tiff", ".tif", ".exr", ".hdr", ".pic", ".gif",
})
DIGITS = tuple(str(digit) for digit in range(10))

SEMEION_SIDE = 16
OPTDIGITS_SIDE = 32


@dataclass
class LabelledFolder:
    """Images found in a ``DIR/<digit>/`` folder: (path, label) pairs and files skipped."""

    root: Path
    samples: list[tuple[Path, int]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.uint8)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_labelled_folder(root: str | os.PathLike) -> LabelledFolder:
    """List the images of a labelled folder ``root/<digit>/**/<image>``, sorted.

    Raises UserError when ``root`` is missing, has no digit sub-folders, or has no image in
    any of them. Non-image files (by extension) and sub-folders that are not digits are listed
    in ``skipped``; empty digit folders too, so the caller can warn. Whether each image decodes
    is left to the caller (it reads every file anyway and reports failures per file).
    """
    root = Path(root)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise UserError(f"{root} {what}; expected a folder with one sub-folder per digit "
                        f"({root}/0/, {root}/1/, ... {root}/9/)")
    digit_folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name in DIGITS)
    if not digit_folders:
        found = sorted(p.name for p in root.iterdir())[:5]
        raise UserError(
            f"{root} has no digit sub-folders (0/ ... 9/); expected {root}/<digit>/<image>"
            + (f", found: {', '.join(found)}" if found else ", the folder is empty")
        )
    samples: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir()):
        if entry not in digit_folders:
            skipped.append((entry, "not a digit sub-folder (0-9)"))
    for folder in digit_folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        images = [p for p in files if is_image_file(p)]
        skipped += [(p, "not an image file (by extension)") for p in files if not is_image_file(p)]
        if not images:
            skipped.append((folder, "digit folder holds no image"))
        samples += [(p, int(folder.name)) for p in images]
    if not samples:
        raise UserError(f"{root}: the digit sub-folders hold no image files "
                        f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return LabelledFolder(root, samples, skipped)


def _paper(ink: np.ndarray) -> np.ndarray:
    """1 = ink bitmap -> dark ink (0) on white paper (255), uint8."""
    return np.where(ink > 0, 0, 255).astype(np.uint8)


def load_semeion(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Semeion Handwritten Digit data: per line 256 pixel values (16x16, 1 = ink; written as 0/1
    or 0.0000/1.0000) then 10 one-hot label values. Returns (images N x 16 x 16, labels N)."""
    path = Path(path)
    lines = _read_lines(path)
    images, labels = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            values = np.array(line.split(), dtype=np.float32)
        except ValueError:
            raise UserError(f"{path}:{number}: not a semeion line (non-numeric value)") from None
        if values.size != SEMEION_SIDE**2 + 10:
            raise UserError(f"{path}:{number}: expected 266 values (256 pixels + 10 one-hot "
                            f"label), found {values.size}; is this semeion.data?")
        one_hot = values[SEMEION_SIDE**2 :]
        if np.count_nonzero(one_hot) != 1:
            raise UserError(f"{path}:{number}: the label part is not one-hot")
        images.append(_paper(values[: SEMEION_SIDE**2].reshape(SEMEION_SIDE, SEMEION_SIDE)))
        labels.append(int(np.argmax(one_hot)))
    if not images:
        raise UserError(f"{path}: no samples")
    return np.stack(images), np.array(labels, dtype=np.uint8)


def load_optdigits(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """UCI optdigits-orig (.tra/.tes/.wdep/.windep): optional header (a count line or the NIST
    preamble), then per sample 32 lines of 32 '0'/'1' (1 = ink) and a line with the label.
    Returns (images N x 32 x 32, labels N)."""
    path = Path(path)
    lines = [line.strip() for line in _read_lines(path)]
    images, labels = [], []
    rows: list[str] = []
    for number, line in enumerate(lines, 1):
        if len(line) == OPTDIGITS_SIDE and set(line) <= {"0", "1"}:
            rows.append(line)
            continue
        if rows:
            if len(rows) != OPTDIGITS_SIDE or not (line.isdigit() and len(line) == 1):
                raise UserError(f"{path}:{number}: expected a 32x32 bitmap followed by a label "
                                f"0-9, got {len(rows)} rows then {line[:20]!r}")
            bitmap = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8) - ord("0")
            bitmap = bitmap.reshape(OPTDIGITS_SIDE, OPTDIGITS_SIDE)
            images.append(_paper(bitmap))
            labels.append(int(line))
            rows = []
        # any other line before the first bitmap is header (count line or NIST preamble)
    if rows:
        raise UserError(f"{path}: ends inside a bitmap (truncated file)")
    if not images:
        raise UserError(f"{path}: no 32x32 bitmaps found; is this an optdigits-orig file?")
    return np.stack(images), np.array(labels, dtype=np.uint8)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="ascii", errors="strict").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None


def check_new_folder(output: str | os.PathLike) -> Path:
    """UserError unless ``output`` is absent or an empty folder (never mix two sets)."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"{output} already exists and is not an empty folder; "
                        f"choose a new output folder")
    return output


def write_folder(images, labels: np.ndarray, output: str | os.PathLike,
                 prefix: str = "") -> Path:
    """Write images as ``output/<label>/<prefix><index>.png`` (atomically: all or nothing).

    Images are written as given (the loaders here give dark ink on white, like paper).
    Refuses to write into an existing non-empty folder.
    """
    output = check_new_folder(output)
    if len(images) != len(labels):
        raise UserError(f"{len(images)} images but {len(labels)} labels")
    width = len(str(max(len(images) - 1, 0)))
    try:
        with atomic_path(output) as staged:
            for digit in sorted(set(int(label) for label in labels)):
                (staged / str(digit)).mkdir(parents=True)
            for index, (image, label) in enumerate(zip(images, labels, strict=True)):
                target = staged / str(int(label)) / f"{prefix}{index:0{width}d}.png"
                if not cv2.imwrite(str(target), image):
                    raise UserError(f"could not write {target}")
    except OSError as error:
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    return output


# --------------------------------------------------------------------------------------------
# Number sets: a folder of images and labels.csv (file,number)

NUMBER_LABELS = "labels.csv"


@dataclass
class NumberFolder:
    """Images of written numbers listed in ``root/labels.csv``: (path, number) pairs."""

    root: Path
    samples: list[tuple[Path, str]]


NUMBER_HEADER = ["file", "number"]


def _has_number_header(labels: Path) -> bool:
    try:
        with labels.open("rb") as source:
            first = source.readline(256).decode("ascii", errors="replace")
    except OSError:
        return False
    return [cell.strip() for cell in first.split(",")] == NUMBER_HEADER


def is_number_folder(root: str | os.PathLike) -> bool:
    """A numbers set: its ``labels.csv`` opens with the header ``file,number``. A ``labels.csv``
    of another kind (an index many data sets ship, e.g. ``file,label,writer``) beside digit
    sub-folders leaves it a labelled digit folder; with no digit sub-folder beside it, it is a
    numbers set with a wrong header (and loading it says so)."""
    root = Path(root)
    labels = root / NUMBER_LABELS
    if not labels.is_file():
        return False
    if _has_number_header(labels):
        return True
    return not any((root / str(digit)).is_dir() for digit in range(10))


def load_number_folder(root: str | os.PathLike) -> NumberFolder:
    """Read ``root/labels.csv``: a header ``file,number``, then one image name (relative to
    ``root``) and the digits it shows per line. Numbers are text: leading zeros count."""
    root = Path(root)
    labels = root / NUMBER_LABELS
    lines = _read_lines(labels)
    if not lines or [cell.strip() for cell in lines[0].split(",")] != NUMBER_HEADER:
        raise UserError(f"{labels}: the first line must be the header 'file,number'")
    samples = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.rsplit(",", 1)]
        if len(cells) != 2 or not cells[1].isdigit():
            raise UserError(f"{labels}:{number}: expected 'file,digits', got {line[:40]!r}")
        path = root / cells[0]
        if not path.is_file():
            raise UserError(f"{labels}:{number}: {cells[0]} is not a file in {root}")
        samples.append((path, cells[1]))
    if not samples:
        raise UserError(f"{labels}: lists no image")
    return NumberFolder(root, samples)


def write_number_folder(images: list[np.ndarray], numbers: list[str],
                        output: str | os.PathLike, names: list[str]) -> Path:
    """Write each image as ``output/<name>`` and ``output/labels.csv`` (atomically)."""
    output = check_new_folder(output)
    rows = ["file,number"]
    try:
        with atomic_path(output) as staged:
            staged.mkdir(parents=True)
            for image, number, name in zip(images, numbers, names, strict=True):
                if not cv2.imwrite(str(staged / name), image):
                    raise UserError(f"could not write {staged / name}")
                rows.append(f"{name},{number}")
            (staged / NUMBER_LABELS).write_text("\n".join(rows) + "\n", encoding="ascii")
    except OSError as error:
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    return output


def split_number_folder(root: str | os.PathLike, output: str | os.PathLike, held_out: int,
                        seed: int = 0) -> tuple[Path, Path]:
    """Split a numbers set into ``output/train`` and ``output/held-out`` (``held_out`` numbers
    chosen with ``seed``), each a numbers set of its own: the images copied unchanged, their
    own ``labels.csv``. The same folder and seed give the same split. Written atomically."""
    import shutil

    folder = load_number_folder(root)
    if not 0 < held_out < len(folder.samples):
        raise UserError(f"--held-out must be between 1 and {len(folder.samples) - 1} "
                        f"({len(folder.samples)} numbers in {folder.root})")
    output = check_new_folder(output)
    order = np.random.default_rng(seed).permutation(len(folder.samples))
    parts = {"held-out": sorted(order[:held_out]), "train": sorted(order[held_out:])}
    try:
        with atomic_path(output) as staged:
            for part, indices in parts.items():
                (staged / part / "images").mkdir(parents=True)
                rows = ["file,number"]
                for index in indices:
                    path, number = folder.samples[index]
                    name = f"images/{path.name}"
                    shutil.copyfile(path, staged / part / name)
                    rows.append(f"{name},{number}")
                (staged / part / NUMBER_LABELS).write_text("\n".join(rows) + "\n",
                                                          encoding="ascii")
    except OSError as error:
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    return output / "train", output / "held-out"
