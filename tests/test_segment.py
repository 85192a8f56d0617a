"""Digit segmentation on generated frames: MNIST digits on paper at known positions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedigits import contract
from edgedigits.image import preprocess, segment
from edgedigits.image.image import Image
from edgedigits.tasks import SINGLE, get_task, splitting

DIGIT_SIZE = 96


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def strip(digits: np.ndarray, xs: list[int], rng: np.random.Generator, dark_ink: bool = True,
          size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A BGR frame: paper with a lighting gradient, the digits in a row at ``xs``, noise, blur."""
    height, width = size
    paper = np.full((height, width), 205.0) + np.linspace(-40, 30, width)[None, :]
    top = height // 2 - DIGIT_SIZE // 2
    for digit, x in zip(digits, xs, strict=True):
        ink = cv2.resize(digit, (DIGIT_SIZE, DIGIT_SIZE), interpolation=cv2.INTER_CUBIC) / 255.0
        region = paper[top : top + DIGIT_SIZE, x : x + DIGIT_SIZE]
        region[:] = region * (1 - 0.75 * ink)
    paper = cv2.GaussianBlur(paper, (3, 3), 0) + rng.normal(0, 5, paper.shape)
    gray = np.clip(paper, 0, 255).astype(np.uint8)
    if not dark_ink:
        gray = 255 - gray
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def row(mnist):
    # five test digits without a stroke that MNIST itself draws broken
    return mnist.x_test[[0, 1, 3, 4, 7]]


XS = [40, 150, 260, 370, 480]


def check_found(found: splitting.Candidates, digits: np.ndarray, xs: list[int],
                scale: float = 1.0, min_correlation: float = 0.75) -> None:
    assert len(found) == len(digits), found.boxes
    assert found.digits.shape == (len(digits), 28, 28) and found.digits.dtype == np.uint8
    for (x, _, w, _), digit, expected_x, crop in zip(found.boxes, found.digits, xs, digits,
                                                     strict=True):
        centre = (x + w / 2) / scale
        assert expected_x <= centre <= expected_x + DIGIT_SIZE
        assert correlation(digit, preprocess.to_mnist_format(255 - crop)) > min_correlation


def test_row_of_digits_found_left_to_right(row):
    frame = strip(row, XS, np.random.default_rng(0))
    check_found(splitting.find_candidates(frame), row, XS)


def test_light_ink_on_dark_and_forced_polarity(row):
    frame = strip(row, XS, np.random.default_rng(1), dark_ink=False)
    check_found(splitting.find_candidates(frame), row, XS)
    check_found(splitting.find_candidates(frame, dark_ink=False), row, XS)


def test_broken_strokes_merged_and_specks_dropped(row):
    frame = strip(row, XS, np.random.default_rng(2))
    # break every digit with a paper-coloured gap across its middle, too wide to bridge by the
    # dilation: the pieces must be merged as stacked boxes
    middle = frame.shape[0] // 2
    frame[middle - 4 : middle + 4, :] = 210
    # dust: small dark dots around the digits
    for x, y in [(20, 40), (300, 420), (600, 100), (130, 300), (250, 170)]:
        cv2.circle(frame, (x, y), 2, (30, 30, 30), -1)
    check_found(splitting.find_candidates(frame), row, XS)


def test_large_photo_file_round_trip(row, tmp_path):
    frame = cv2.resize(strip(row, XS, np.random.default_rng(3)), (1920, 1440))
    path = tmp_path / "number.jpg"
    cv2.imwrite(str(path), frame)
    image = cv2.imread(str(path))
    found = splitting.find_candidates(image, detect_side=800)
    check_found(found, row, XS, scale=3.0)
    # boxes are in the file's own pixels
    assert all(h > 200 for _, _, _, h in found.boxes)


def test_blank_frames_have_no_digits():
    rng = np.random.default_rng(4)
    paper = np.clip(190 + rng.normal(0, 6, (480, 640)), 0, 255).astype(np.uint8)
    for frame in (paper, np.zeros((480, 640, 3), np.uint8), np.zeros((4, 4), np.uint8)):
        found = splitting.find_candidates(frame)
        assert len(found) == 0 and found.digits.shape == (0, 28, 28)


def cast_shadow(frame: np.ndarray, shape: str, softness: float, depth: float = 0.45) -> np.ndarray:
    """A shadow over a BGR frame: a diagonal edge covering most of it, or a corner (a hand or a
    phone reaching in from the top right) whose edges end inside the frame."""
    height, width = frame.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
    if shape == "diagonal":
        inside = (columns - 0.3 * width) * 0.8 + (rows - 0.5 * height) * 0.6
    else:
        inside = np.minimum(columns - 0.62 * width, 0.35 * height - rows)
    shade = 1 / (1 + np.exp(-np.clip(inside / softness, -50, 50)))
    return np.clip(frame * (1 - depth * shade)[:, :, None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize("softness", [0.5, 4.0])
@pytest.mark.parametrize("shape", ["diagonal", "corner"])
def test_shadow_edges_give_no_boxes_and_lose_no_digit(row, shape, softness):
    rng = np.random.default_rng(8)
    # a shadow over most of the frame made it look like light ink on dark paper; its edge was
    # taken for ink (spurious boxes, and digits it crossed were merged into it and lost)
    find = splitting.find_candidates
    assert len(find(cast_shadow(strip(row[:0], [], rng), shape, softness))) == 0
    # (a digit the edge runs through is half lit, half shadowed: read a little less exactly)
    check_found(find(cast_shadow(strip(row, XS, rng), shape, softness)), row, XS,
                min_correlation=0.7)


def test_max_digits_keeps_the_largest(row):
    frame = strip(row, XS, np.random.default_rng(5))
    assert len(splitting.find_candidates(frame, max_digits=2)) == 2


def test_roi_mode(row):
    rng = np.random.default_rng(6)
    frame = strip(row[:1], [640 // 2 - DIGIT_SIZE // 2], rng)
    box = segment.roi_box(frame.shape, 0.5)
    assert box == (200, 120, 240, 240)
    task = get_task(contract.MODEL_TYPE)  # what webcam.py --roi reads: the box as one digit
    x, y, w, h = box
    (digit,) = task.prepare(Image(frame[y : y + h, x : x + w]), SINGLE).inputs
    assert correlation(digit, preprocess.to_mnist_format(255 - row[0])) > 0.75
    blank = strip(row[:0], [], rng)
    assert len(task.prepare(Image(blank[y : y + h, x : x + w]), SINGLE)) == 0
