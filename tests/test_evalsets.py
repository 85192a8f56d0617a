"""Labelled folders, semeion and optdigits loaders, the folder writer and its command."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_command
from edgedigits.data import evalsets
from edgedigits.errors import UserError
from edgedigits.image import preprocess

# $OOD_DIR, else ../shared/data/ood beside the checkout (a git worktree lives elsewhere)
OOD = Path(os.environ.get("OOD_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
           / "ood")
SEMEION = OOD / "semeion" / "semeion.data"
OPTDIGITS_TES = OOD / "optdigits_orig" / "optdigits-orig.tes"


def test_labelled_folder_lists_images_and_reports_the_rest(tmp_path):
    for digit, name in [(3, "a.png"), (3, "sub/b.jpg"), (7, "c.JPG")]:
        (tmp_path / str(digit) / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / str(digit) / name), np.zeros((5, 5), np.uint8))
    (tmp_path / "3" / "notes.txt").write_text("hello")
    (tmp_path / "5").mkdir()
    (tmp_path / "other").mkdir()
    folder = evalsets.load_labelled_folder(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), label) for p, label in folder.samples] == [
        ("3/a.png", 3), ("3/sub/b.jpg", 3), ("7/c.JPG", 7)]
    assert list(folder.labels) == [3, 3, 7]
    reasons = {p.relative_to(tmp_path).as_posix(): why for p, why in folder.skipped}
    assert set(reasons) == {"3/notes.txt", "5", "other"}


def test_labelled_folder_bad_layouts(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        evalsets.load_labelled_folder(tmp_path / "missing")
    (tmp_path / "cats").mkdir()
    with pytest.raises(UserError, match="no digit sub-folders"):
        evalsets.load_labelled_folder(tmp_path)
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "readme.md").write_text("x")
    with pytest.raises(UserError, match="hold no image"):
        evalsets.load_labelled_folder(tmp_path)


def test_semeion_file():
    images, labels = evalsets.load_semeion(SEMEION)
    assert images.shape == (1593, 16, 16) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}
    assert np.bincount(labels).min() > 150
    # first line of the file: pixel 6 of row 0 is ink (1) -> dark (0) on paper
    first = SEMEION.read_text().split("\n", 1)[0].split()
    expected = np.where(np.array(first[:256], float).reshape(16, 16) > 0, 0, 255)
    assert np.array_equal(images[0], expected) and labels[0] == int(np.argmax(
        np.array(first[256:], float)))


def test_optdigits_file():
    images, labels = evalsets.load_optdigits(OPTDIGITS_TES)
    assert images.shape == (946, 32, 32) and len(labels) == 946
    lines = OPTDIGITS_TES.read_text().splitlines()
    first = np.array([[int(c) for c in line.strip()] for line in lines[1:33]])
    assert np.array_equal(images[0] == 0, first == 1)
    assert labels[0] == int(lines[33])


def test_bad_text_sets(tmp_path):
    bad = tmp_path / "bad.data"
    bad.write_text("0 1 0\n")
    with pytest.raises(UserError, match="266 values"):
        evalsets.load_semeion(bad)
    truncated = tmp_path / "cut.tra"
    truncated.write_text("\n".join(OPTDIGITS_TES.read_text().splitlines()[:20]))
    with pytest.raises(UserError, match="truncated"):
        evalsets.load_optdigits(truncated)
    binary = tmp_path / "binary.tes"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not a text file"):
        evalsets.load_optdigits(binary)


def test_write_folder_round_trip(tmp_path):
    images, labels = evalsets.load_optdigits(OPTDIGITS_TES)
    out = evalsets.write_folder(images[:30], labels[:30], tmp_path / "set")
    folder = evalsets.load_labelled_folder(out)
    assert len(folder.samples) == 30 and not folder.skipped
    assert sorted(folder.labels) == sorted(labels[:30])
    path, label = folder.samples[0]
    index = int(path.stem)
    assert label == labels[index]
    assert np.array_equal(preprocess.read_image(path), images[index])
    with pytest.raises(UserError, match="not an empty folder"):
        evalsets.write_folder(images[:2], labels[:2], out)


def test_make_eval_folder_command(tmp_path):
    small = tmp_path / "small.data"
    small.write_text("\n".join(SEMEION.read_text().splitlines()[:25]) + "\n")
    result = run_command("infer/make_eval_folder.py", "semeion", str(small), str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").rglob("*.png"))) == 25
    again = run_command("infer/make_eval_folder.py", "semeion", str(small), str(tmp_path / "out"))
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "not an empty folder" in again.stderr
    wrong = run_command("infer/make_eval_folder.py", "optdigits", str(small), str(tmp_path / "x"))
    assert wrong.returncode == 2 and "optdigits" in wrong.stderr
    assert not (tmp_path / "x").exists()
