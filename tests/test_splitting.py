"""Reading whole numbers: touching digits split by the classifier's confidence, real OpenVINO."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from test_classify import reliable_digits

from conftest import run_command
from edgedigits import contract, runtime
from edgedigits.data import render
from edgedigits.image import segment
from edgedigits.reading import classify
from edgedigits.tasks import splitting as numbers

NUMBERS = ("2026", "5743", "1000", "3819", "6047")
DIGIT_PX = 110
STEP = 64  # digits 110 px apart by 64: neighbours' ink touches or overlaps


@pytest.fixture(scope="module")
def digits(ir_models_dir, mnist):
    return reliable_digits(ir_models_dir, mnist, per_class=2)


@pytest.fixture(scope="module")
def classifier(ir_models_dir):
    with runtime.load_classifier(ir_models_dir, variant="fp32") as classifier:
        yield classifier


def written(digits, number: str, version: int, step: int = STEP, **scene) -> np.ndarray:
    images = [digits[int(c)][version] for c in number]
    positions = [(40 + step * i, 60 + (i % 2) * 6) for i in range(len(images))]
    return render.paper_scene(images, positions, size=(240, 120 + step * len(images)),
                              digit_px=DIGIT_PX, seed=version, **scene)


def test_touching_digits_are_split_and_read(digits, classifier):
    """Ink that the cheap first test lets through is split where the classifier is surest and
    the number read whole; a touching pair it takes for one digit (narrower than SURE_GATE x
    its height and one piece of ink) is what the number reader is for, and is left out."""
    split = read = 0
    for number in NUMBERS:
        for version in (0, 1):
            scene = written(digits, number, version)
            found = segment.find_ink_groups(scene)
            centres = [40 + STEP * i + DIGIT_PX // 2 for i in range(len(number))]
            passes = True
            for own, box in found.groups:
                x, _, w, _ = found.to_original(box)
                if sum(x <= centre <= x + w for centre in centres) > 1:  # touching digits
                    if numbers.may_hold_several(box[2], box[3], own):
                        split += 1
                    else:
                        passes = False
            if not passes:
                continue
            reading = classify.read_image(classifier, scene)
            assert reading.number == number, (number, version)
            boxes = [d["box"] for d in reading.detections]
            assert [box[0] for box in boxes] == sorted(box[0] for box in boxes)
            assert 0 < reading.confidence <= 1
            read += 1
    assert split >= 3 and read >= 3, (split, read)


def test_ruled_lines_and_separators_are_not_digits(digits, classifier):
    scene = cv2.cvtColor(written(digits, "3819", 0), cv2.COLOR_BGR2GRAY)
    width = scene.shape[1]
    # a ruled line through the digits and one under them
    for y in (120, 168):
        cv2.line(scene, (0, y), (width, y), 150, 2)
    assert classify.read_image(classifier, scene).number == "3819"
    # "38-19", "38.19" and "38,19": the separator is not a digit
    images = [digits[int(c)][0] for c in "3819"]
    positions = [(40, 60), (40 + STEP, 66), (110 + 2 * STEP, 60), (110 + 3 * STEP, 66)]
    for mark in ("-", ".", ","):
        spread = render.paper_scene(images, positions, size=(240, 520), digit_px=DIGIT_PX)
        x = 60 + 2 * STEP + 45
        if mark == "-":
            cv2.line(spread, (x, 118), (x + 20, 118), (40, 40, 40), 6)
        else:
            cv2.circle(spread, (x, 150), 5, (40, 40, 40), -1)
            if mark == ",":
                cv2.line(spread, (x + 3, 150), (x - 4, 164), (40, 40, 40), 3)
        assert classify.read_image(classifier, spread).number == "3819", mark


def test_blank_paper_reads_no_number(classifier):
    rng = np.random.default_rng(3)
    paper = np.clip(190 + rng.normal(0, 6, (240, 400)), 0, 255).astype(np.uint8)
    reading = classify.read_image(classifier, paper)
    assert reading.number == "" and reading.detections == [] and reading.confidence is None


def test_cut_positions_find_the_junction_of_two_touching_blobs():
    own = np.zeros((40, 70), np.uint8)
    cv2.circle(own, (18, 20), 15, 255, 3)
    cv2.circle(own, (50, 20), 15, 255, 3)
    cuts = numbers.cut_positions(own)
    assert cuts[0] == 0 and cuts[-1] == 70
    assert any(30 <= cut <= 38 for cut in cuts[1:-1]), cuts
    # one narrow digit: no cut is tried
    assert numbers.cut_positions(own[:, :20]) == [0, 20]


def test_number_folder_evaluation_command(ir_models_dir, digits, tmp_path):
    folder = tmp_path / "numbers"
    folder.mkdir()
    lines = ["file,number"]
    for index, number in enumerate(NUMBERS):
        cv2.imwrite(str(folder / f"n{index}.png"), written(digits, number, 0, step=120))
        lines.append(f"n{index}.png,{number}")
    # one label is wrong on purpose: it must be listed as misread
    lines[-1] = "n4.png,6048"
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    env = {contract.MODELS_DIR_ENV: str(ir_models_dir)}
    result = run_command("infer/classify.py", "--eval", str(folder), env=env)
    assert result.returncode == 0, result.stderr
    assert "string accuracy 80.00% (4 of 5" in result.stdout
    assert "digit accuracy 95.00%" in result.stdout
    assert "n4.png: is 6048, read 6047" in result.stdout
    (folder / "labels.csv").write_text("name,value\nn0.png,2026\n")
    bad = run_command("infer/classify.py", "--eval", str(folder), env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "file,number" in bad.stderr


def test_make_eval_folder_numbers(tmp_path):
    out = tmp_path / "numbers"
    result = run_command("infer/make_eval_folder.py", "numbers", "--count", "6",
                         os.environ["MNIST_DIR"], str(out))
    assert result.returncode == 0, result.stderr
    rows = (out / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,number" and len(rows) == 7
    for row in rows[1:]:
        name, number = row.split(",")
        assert (out / name).is_file() and number.isdigit() and 3 <= len(number) <= 6



def test_only_ink_wider_than_the_gate_is_split(digits, mnist):
    """The cheap first test: a group of ink no wider than SPLIT_GATE x its height is one digit,
    one candidate, never split (a camera's separate digits cost one inference each and are
    never cut in two); a wider group offers a two-digit split. The price: a '1' touching its
    neighbour can make a group that narrow, read as one digit (docs/infer.md)."""
    wide = 0
    for number in NUMBERS:
        for version in (0, 1):
            scene = written(digits, number, version)
            groups = segment.find_ink_groups(scene).groups
            candidates = numbers.find_candidates(scene)
            assert len(candidates.groups) == len(groups)
            for (own, (_, _, w, h)), group in zip(groups, candidates.groups, strict=True):
                if not numbers.may_hold_several(w, h, own):
                    assert group.cuts == 2 and len(group.spans) == 1, (number, version)
                    continue
                wide += 1
                assert group.cuts > 2 and len(group.spans) > 1, (number, version, group)
    assert wide >= 4  # touching digits were tried
    # separate MNIST test digits, each in its own scene: one candidate unless wider than the
    # gate and in two pieces (a few percent of MNIST's digits are wider than tall)
    single = 0
    for image in mnist.x_test[:60]:
        scene = render.paper_scene([image], [(40, 40)], size=(200, 200), digit_px=DIGIT_PX)
        candidates = numbers.find_candidates(scene)
        single += len(candidates) == 1
    assert single >= 58


def test_cut_positions_match_the_column_by_column_definition():
    """The vectorised valley search is the plain definition: a column no higher than any
    within ``reach`` (windows clipped at the ends), at least a thin digit from either end."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        own = ((rng.random((rng.integers(8, 60), rng.integers(4, 160))) < 0.3) * 255
               ).astype(np.uint8)
        height, width = own.shape
        expected = [0, width]
        if True:
            profile = np.convolve(np.count_nonzero(own, axis=0).astype(np.float32),
                                  np.ones(3, np.float32) / 3, mode="same")
            reach, margin = max(1, height // 16), max(1, int(numbers.MIN_DIGIT_WIDTH * height))
            valleys = sorted((float(profile[c]), c) for c in range(margin, width - margin)
                             if profile[c] <= profile[max(0, c - reach): c + reach + 1].min())
            chosen: list[int] = []
            for _, column in valleys:
                if all(abs(column - o) >= max(1, int(numbers.CUT_SPACING * height))
                       for o in chosen):
                    chosen.append(column)
                if len(chosen) == numbers.MAX_CUTS:
                    break
            expected = [0, *sorted(chosen), width]
        assert numbers.cut_positions(own) == expected
