"""MNIST loading and validation, on IDX files the tests write (good, truncated, corrupt)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from edgedigits.data.mnist import load_mnist, read_idx
from edgedigits.errors import UserError

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else 0x800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_set(folder, *, n_train=50, n_test=20, gz=True, dotted=False, overrides=None):
    """Write the four MNIST files; ``overrides`` maps a file stem to raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels": RNG.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels": RNG.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        kind = "idx3-ubyte" if "images" in stem else "idx1-ubyte"
        name = f"{stem}.{kind}" if dotted else f"{stem}-{kind}"
        data = (overrides or {}).get(stem, idx_bytes(array))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dotted", [True, False])
def test_reads_idx_gz_and_raw_in_both_namings(tmp_path, gz, dotted):
    arrays = write_set(tmp_path, gz=gz, dotted=dotted)
    mnist = load_mnist(tmp_path)
    np.testing.assert_array_equal(mnist.x_train, arrays["train-images"])
    np.testing.assert_array_equal(mnist.y_test, arrays["t10k-labels"])
    assert mnist.x_train.dtype == np.uint8 and mnist.source.startswith("idx:")


def test_mnist_dir_environment_variable_is_used(tmp_path, monkeypatch):
    write_set(tmp_path)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    assert len(load_mnist().x_train) == 50


def test_reads_keras_style_npz(tmp_path):
    arrays = {
        "x_train": RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        "y_train": RNG.integers(0, 10, 30, dtype=np.uint8),
        "x_test": RNG.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, 10, dtype=np.uint8),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    for location in (tmp_path, tmp_path / "mnist.npz"):
        mnist = load_mnist(location)
        np.testing.assert_array_equal(mnist.x_test, arrays["x_test"])


@pytest.mark.parametrize(
    "stem, data, message",
    [
        ("train-images", idx_bytes(np.zeros((50, 28, 28), np.uint8))[:-100], "truncated"),
        ("train-images", idx_bytes(np.zeros((50, 28, 28), np.uint8), magic=0x0D03), "magic"),
        ("train-labels", idx_bytes(np.zeros(49, np.uint8)), "49 labels"),
        ("t10k-labels", idx_bytes(np.full(20, 12, np.uint8)), "outside 0-9"),
        ("t10k-images", idx_bytes(np.zeros((20, 32, 32), np.uint8)), "28 x 28"),
        ("train-labels", b"\x00\x00", "too short"),
    ],
)
def test_corrupt_files_name_the_file_and_the_problem(tmp_path, stem, data, message):
    write_set(tmp_path, overrides={stem: data})
    with pytest.raises(UserError, match=message) as caught:
        load_mnist(tmp_path)
    assert stem in str(caught.value)


def test_broken_gzip_is_a_user_error(tmp_path):
    write_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="gzip"):
        read_idx(path, 0x803)


def test_missing_folder_and_missing_files_say_how_to_fix(tmp_path):
    with pytest.raises(UserError, match="--data-dir"):
        load_mnist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path / "empty")


def test_validation_split_comes_from_the_end_of_training_set(tmp_path):
    arrays = write_set(tmp_path)
    x_train, _, x_val, _ = load_mnist(tmp_path).split_validation(10)
    assert len(x_train) == 40 and len(x_val) == 10
    np.testing.assert_array_equal(x_val, arrays["train-images"][40:])
    with pytest.raises(UserError):
        load_mnist(tmp_path).split_validation(50)


def test_real_mnist_is_complete(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert sorted(np.unique(mnist.y_test)) == list(range(10))
