"""MNIST loading: Keras' download, or a local folder of IDX files / mnist.npz, validated.

Everything here returns uint8 images shaped (N, 28, 28) and uint8 labels shaped (N,).
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedigits.errors import UserError, first_line

MNIST_DIR_ENV = "MNIST_DIR"
IMAGE_SIZE = 28
NUM_CLASSES = 10

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# More images than any digit set has (MNIST 70,000, EMNIST digits 280,000): a header that
# promises more is corrupt, and is refused before anything that size is read or inflated.
MAX_SAMPLES = 1_000_000

_SPLITS = {"train": "train", "test": "t10k"}
_KINDS = {"images": "idx3-ubyte", "labels": "idx1-ubyte"}

HOW_TO_POINT_AT_DATA = (
    "point at a local copy with --data-dir DIR or the MNIST_DIR environment variable "
    "(a folder with the four IDX files, gzipped or not, or a Keras mnist.npz)"
)


@dataclass
class Mnist:
    """The MNIST train and test sets, and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def split_validation(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Carve the last ``size`` training images off as a validation set.

        Returns (x_train, y_train, x_val, y_val). The test set is never touched.
        """
        if size < 0 or size >= len(self.x_train):
            raise UserError(
                f"validation size must be between 0 and {len(self.x_train) - 1}, got {size}"
            )
        cut = len(self.x_train) - size
        return self.x_train[:cut], self.y_train[:cut], self.x_train[cut:], self.y_train[cut:]


def _read_exactly(stream, count: int, path: Path) -> np.ndarray:
    """``count`` bytes from ``stream`` into one array, never more (no whole-file read)."""
    out = np.empty(count, dtype=np.uint8)
    view, filled = memoryview(out), 0
    while filled < count:
        got = stream.readinto(view[filled : filled + (1 << 24)])
        if not got:
            raise UserError(f"{path}: header promises {count} bytes of data, file has {filled} "
                            "(truncated or corrupt)")
        filled += got
    return out


def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Read one IDX file (raw or gzipped) as uint8, checking magic number and size.

    The 16-byte header is read first and the data read up to the size it promises, no further:
    a small .gz that inflates to gigabytes costs at most what a real MNIST file would.
    """
    path = Path(path)
    kind = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as stream:
            head = stream.read(4)
            if len(head) < 4:
                raise UserError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
            (magic,) = struct.unpack(">I", head)
            if magic != expected_magic:
                raise UserError(
                    f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                    f"(IDX unsigned-byte {kind})"
                )
            ndim = magic & 0xFF
            dims = stream.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise UserError(f"{path}: truncated header")
            shape = struct.unpack(f">{ndim}I", dims)
            if kind == "images" and shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
                raise UserError(f"{path}: expected images shaped N x 28 x 28, got "
                                f"{' x '.join(map(str, shape))}")
            if shape[0] > MAX_SAMPLES:
                raise UserError(f"{path}: header promises {shape[0]:,} {kind}, more than the "
                                f"{MAX_SAMPLES:,} a digit set can hold (corrupt?)")
            expected_bytes = int(np.prod(shape, dtype=np.int64))
            data = _read_exactly(stream, expected_bytes, path)
            if stream.read(1):
                raise UserError(f"{path}: longer than its header says "
                                f"({'x'.join(map(str, shape))} = {expected_bytes} bytes; corrupt)")
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise UserError(f"{path}: corrupt or truncated gzip data ({error})") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None
    return data.reshape(shape)


def _find_idx(folder: Path, split: str, kind: str) -> Path | None:
    prefix = f"{_SPLITS[split]}-{kind}"
    # train-images-idx3-ubyte (LeCun's naming) or train-images.idx3-ubyte (a common variant)
    for name in (f"{prefix}-{_KINDS[kind]}", f"{prefix}.{_KINDS[kind]}"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def validate(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """Check shapes, counts and label range of one split; raise UserError naming the file."""
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise UserError(
            f"{images_name}: expected images shaped N x 28 x 28, "
            f"got {' x '.join(map(str, images.shape))}"
        )
    if labels.ndim != 1:
        raise UserError(f"{labels_name}: expected a 1-D label list, got shape {labels.shape}")
    if len(images) != len(labels):
        raise UserError(
            f"{images_name} has {len(images)} images but {labels_name} has {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise UserError(f"{labels_name}: label {int(labels.max())} is outside 0-9")


def load_idx_folder(folder: str | os.PathLike) -> Mnist:
    """Load the four standard IDX files from ``folder`` (gzipped or not, either naming)."""
    folder = Path(folder)
    arrays = {}
    for split in _SPLITS:
        paths = {}
        for kind in _KINDS:
            path = _find_idx(folder, split, kind)
            if path is None:
                raise UserError(
                    f"{folder}: no {_SPLITS[split]}-{kind}-{_KINDS[kind]}[.gz] file "
                    f"(nor mnist.npz); {HOW_TO_POINT_AT_DATA}"
                )
            paths[kind] = path
        images = read_idx(paths["images"], IDX_IMAGES_MAGIC)
        labels = read_idx(paths["labels"], IDX_LABELS_MAGIC)
        validate(images, labels, str(paths["images"]), str(paths["labels"]))
        arrays[split] = (images, labels)
    return Mnist(*arrays["train"], *arrays["test"], source=f"idx:{folder.resolve()}")


def load_npz(path: str | os.PathLike) -> Mnist:
    """Load a Keras-style mnist.npz (x_train, y_train, x_test, y_test).

    Each array's header (shape, type) is checked before its data is read, and only the bytes it
    promises are inflated; a truncated or corrupt file (a half-finished download) is a UserError.
    """
    path = Path(path)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(names)
            if missing:
                raise UserError(f"{path}: missing arrays {', '.join(sorted(missing))}")
            for key in ("x_train", "y_train", "x_test", "y_test"):
                with archive.open(names[key]) as member:
                    arrays[key] = _read_npy(member, f"{path}[{key}]", images=key[0] == "x")
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable mnist.npz ({first_line(error)})") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        validate(x, y, f"{path}[x_{split}]", f"{path}[y_{split}]")
        arrays[f"x_{split}"] = x.astype(np.uint8, copy=False)
        arrays[f"y_{split}"] = y.astype(np.uint8, copy=False)
    return Mnist(
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        source=f"npz:{path.resolve()}",
    )


def _read_npy(member, name: str, images: bool) -> np.ndarray:
    """One .npy member: header checked (shape, integer type, size) before its data is read."""
    version = np.lib.format.read_magic(member)
    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = header(member)
    if dtype.hasobject or dtype.kind not in "ui":
        raise UserError(f"{name}: expected integer pixels or labels, got {dtype}")
    if not shape or shape[0] > MAX_SAMPLES or (images and tuple(shape[1:]) != (28, 28)):
        raise UserError(f"{name}: unexpected shape {shape}")
    count = int(np.prod(shape, dtype=np.int64))
    data = _read_exactly(member, count * dtype.itemsize, Path(name)).view(dtype)
    return data.reshape(shape, order="F" if fortran else "C")


def load_mnist(data_dir: str | os.PathLike | None = None) -> Mnist:
    """Load MNIST from ``data_dir``, else ``$MNIST_DIR``, else Keras' download/cache.

    ``data_dir`` may be a folder (IDX files or mnist.npz inside) or an .npz file.
    """
    location = data_dir or os.environ.get(MNIST_DIR_ENV)
    if location:
        path = Path(location).expanduser()
        if path.is_file():
            return load_npz(path)
        if not path.is_dir():
            raise UserError(f"MNIST data folder {path} does not exist; {HOW_TO_POINT_AT_DATA}")
        if (path / "mnist.npz").is_file() and _find_idx(path, "train", "images") is None:
            return load_npz(path / "mnist.npz")
        return load_idx_folder(path)
    return _load_keras_download()


def _load_keras_download() -> Mnist:
    from edgedigits.tensorflow_import import import_tensorflow

    import_tensorflow()
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # network errors come in many types (URLError, OSError, ...)
        raise UserError(
            f"could not download MNIST ({type(error).__name__}); {HOW_TO_POINT_AT_DATA}"
        ) from None
    return Mnist(x_train, y_train, x_test, y_test, source="keras.datasets.mnist")
