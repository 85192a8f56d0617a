"""The number reader: lines found and normalised, CTC decoding, a tiny real model trained,
converted and run through the commands."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from edgedigits import contract
from edgedigits.data import render
from edgedigits.tasks import MULTI, kinds_for
from edgedigits.tasks import number_reader as sequence
from tests.conftest import run_command


def _number_photo(mnist, indices, seed=0, background="plain"):
    rng = np.random.default_rng(seed)
    return render.written_number(mnist.x_test[list(indices)], rng, background=background)


# --------------------------------------------------------------------------------------------
# Lines


def test_a_written_number_is_one_line_covering_its_ink(mnist):
    photo = _number_photo(mnist, range(5))
    lines = sequence.find_lines(photo)
    assert len(lines) == 1
    line = lines[0]
    assert line.pixels.shape == (sequence.LINE_HEIGHT, sequence.LINE_WIDTH)
    assert line.pixels.dtype == np.uint8
    # the ink: darker than halfway between the paper and the darkest pixels
    paper, darkest = np.median(photo), np.percentile(photo, 0.5)
    ink_columns = np.flatnonzero(((photo < (paper + darkest) / 2).sum(axis=0)) > 2)
    x, _, w, _ = line.box
    inside = ((ink_columns >= x) & (ink_columns < x + w)).mean()
    assert inside > 0.95
    # white ink on black, stretched: the brightest pixels are ink, most of the line is dark
    assert line.pixels.max() >= 200
    assert np.median(line.pixels) < 40


def test_light_ink_on_a_dark_board_reads_like_dark_ink_on_paper(mnist):
    photo = _number_photo(mnist, range(10, 14), seed=3)
    dark = sequence.find_lines(photo)[0].pixels.astype(np.float32)
    light = sequence.find_lines(255 - photo)[0].pixels.astype(np.float32)
    correlation = np.corrcoef(dark.ravel(), light.ravel())[0, 1]
    assert correlation > 0.8


def test_two_rows_of_digits_are_two_lines(mnist):
    top = _number_photo(mnist, range(20, 24), seed=1)
    bottom = _number_photo(mnist, range(30, 33), seed=2)
    width = max(top.shape[1], bottom.shape[1])
    sheet = np.full((top.shape[0] + bottom.shape[0], width), 200, np.uint8)
    sheet[: top.shape[0], : top.shape[1]] = top
    sheet[top.shape[0] :, : bottom.shape[1]] = bottom
    lines = sequence.find_lines(sheet)
    assert len(lines) == 2
    assert lines[0].box[1] < lines[1].box[1]  # top to bottom


def test_two_numbers_far_apart_on_one_row_are_two_lines(mnist):
    left = _number_photo(mnist, range(40, 43), seed=4)
    right = _number_photo(mnist, range(50, 53), seed=5)
    height = max(left.shape[0], right.shape[0])
    row = np.full((height, left.shape[1] + 400 + right.shape[1]), 200, np.uint8)
    row[: left.shape[0], : left.shape[1]] = left
    row[: right.shape[0], left.shape[1] + 400 :] = right
    lines = sequence.find_lines(row)
    assert len(lines) == 2
    assert lines[0].box[0] + lines[0].box[2] < left.shape[1] + 400 <= lines[1].box[0]


def test_group_rows_keeps_a_small_separator_in_its_row():
    digits = [(0, 100, 30, 50), (40, 102, 30, 48), (80, 98, 30, 52)]
    comma = (72, 140, 5, 10)  # low on the line, small
    other_row = [(0, 300, 30, 50)]
    rows = sequence.group_rows([*digits, comma, *other_row])
    assert sorted(len(row) for row in rows) == [1, 4]


def test_blank_paper_has_no_line():
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(200, 3, (160, 400)), 0, 255).astype(np.uint8)
    assert sequence.find_lines(paper) == []


def test_a_very_long_line_is_found_and_read_in_parts(mnist, tmp_path):
    # issue 19: a 20000x200 line of 180 clear digits read "no digit found": the file was shrunk
    # by its longer side to 512x5 before anything looked at it
    import cv2

    from edgedigits.image.image import Image
    from edgedigits.tasks import get_task

    digits = mnist.x_test[:180]
    frame = render.paper_scene(digits, [(50 + 110 * i, 50) for i in range(180)],
                               size=(200, 20000), digit_px=100)
    cv2.imwrite(str(tmp_path / "long.png"), frame)
    image = Image.read(tmp_path / "long.png")
    lines = sequence.find_lines(image)
    assert sum(len(line.groups) for line in lines) == 180
    assert [line.joined for line in lines] == [False] + [True] * (len(lines) - 1)
    for line in lines:  # each part fits the line input without being squeezed
        assert line.scale <= 1.5 * line.box[3] / sequence.INK_HEIGHT, (line.box, line.scale)
    # the parts are read as one number: "12" from each part, no space between them
    task = get_task(contract.NUMBER_READER)
    prepared = task.prepare(image)
    b = sequence.BLANK
    outputs = np.stack([_steps([b, 1, b, 2])] * len(lines))
    reading = task.read(prepared, outputs)
    assert reading.text == "12" * len(lines)
    boxes = [digit.box for digit in reading.digits]
    assert len(boxes) == 2 * len(lines)
    overlapping = [(box, later) for box, later in itertools.pairwise(boxes)
                   if box[0] + box[2] > later[0]]
    assert not overlapping


def test_a_tight_crop_of_a_number_is_one_line_with_the_digits_at_its_edges(mnist):
    # issue 19: an amount field cut to its ink ("5743" read "4"): the digits touching the
    # image's edges were dropped
    photo = render.written_number(mnist.x_test[:4], np.random.default_rng(3),
                                  background="plain")
    tight = render.cropped_to_ink(photo)
    lines = sequence.find_lines(tight)
    assert len(lines) == 1
    x, _, w, _ = lines[0].box
    assert x <= 2 and x + w >= tight.shape[1] - 2, (lines[0].box, tight.shape)


def test_scanned_amounts_are_cut_tight_and_found_as_one_line(mnist):
    # the training lines that look like cheque amounts: most touch their crop's top or bottom
    # (a tight amount field), and the line finder still takes nearly all of them as one line
    rng = np.random.default_rng(0)
    touching = one_line = 0
    for _ in range(40):
        digits = mnist.x_train[rng.integers(0, 1000, int(rng.integers(2, 7)))]
        scan = render.scanned_amount(digits, rng, height=int(rng.integers(30, 90)))
        ink = scan < np.median(scan) - 40
        touching += bool(ink[0].any() or ink[-1].any())
        one_line += len(sequence.find_lines(scan)) == 1
    assert touching >= 15, touching
    assert one_line >= 36, one_line


# --------------------------------------------------------------------------------------------
# Decoding


def _steps(labels: list[int], confidence: float = 0.9) -> np.ndarray:
    probabilities = np.full((sequence.STEPS, sequence.NUM_CLASSES),
                            (1 - confidence) / (sequence.NUM_CLASSES - 1), np.float32)
    for step in range(sequence.STEPS):
        label = labels[step] if step < len(labels) else sequence.BLANK
        probabilities[step, label] = confidence
    return probabilities


def test_training_lines_hold_round_amounts(mnist):
    # Real amounts often end in zeros, which CTC reads only with a blank step between equal
    # digits: a share of the scanned amounts ends in 1-3 zeros (random digits: ~1 in 1,000)
    from edgedigits.tasks.number_reader import synthetic_lines

    _, texts = synthetic_lines(mnist.x_train[:5000], mnist.y_train[:5000], 200, seed=3)
    assert sum(text.endswith("000") for text in texts) >= 6, texts
    assert sum(len(text) > 1 and text.endswith("00") for text in texts) >= 12
    assert sum(not text.endswith("0") for text in texts) >= 120  # most lines are not round


def test_decode_merges_repeats_and_drops_blanks():
    b = sequence.BLANK
    reading = sequence.ctc_decode(_steps([b, 1, 1, b, 1, b, 7, 7, 7, b, b, 0]))
    assert reading.number == "1170"
    assert reading.steps == [1, 4, 6, 11]
    assert all(abs(c - 0.9) < 1e-6 for c in reading.confidences)
    assert all(abs(row.sum() - 1) < 1e-5 for row in reading.digit_probabilities)


def test_decode_of_only_blanks_is_empty():
    reading = sequence.ctc_decode(_steps([]))
    assert reading.number == "" and reading.confidences == []


def test_digit_boxes_split_one_group_between_its_digits():
    line = sequence.Line(box=(100, 50, 120, 40), pixels=np.zeros((32, 192), np.uint8),
                         scale=40 / 24, left=93, groups=[(100, 50, 120, 40)])
    b = sequence.BLANK
    labels = [b] * 4 + [3] + [b] * 7 + [5] + [b] * 6 + [8]
    reading = sequence.ctc_decode(_steps(labels))
    boxes = sequence.digit_boxes(line, reading)
    assert reading.number == "358"
    lefts = [box[0] for box in boxes]
    assert lefts == sorted(lefts)
    assert boxes[0][0] == 100
    assert all(x >= 100 and x + w <= 220 for x, _, w, _ in boxes)
    assert all(box[1] == 50 and box[3] == 40 for box in boxes)


def _overlap(a, b) -> int:
    return max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))


def test_digit_boxes_of_one_group_do_not_overlap_when_a_step_lies_outside_it():
    # issue 19: "4@[54,30,17,64] 5@[54,30,44,64]" -- the 4's step falls left of the group the
    # two digits share, and the 5 kept the group's left edge
    group = (54, 30, 44, 64)
    line = sequence.Line(box=group, pixels=np.zeros((32, 192), np.uint8), scale=64 / 24,
                         left=30, groups=[group])
    b = sequence.BLANK
    reading = sequence.ctc_decode(_steps([b, 4, b, b, 5]))
    boxes = sequence.digit_boxes(line, reading)
    assert reading.number == "45" and len(boxes) == 2
    assert _overlap(*boxes) == 0, boxes
    assert all(x >= 54 and x + w <= 98 and w >= 1 for x, _, w, _ in boxes), boxes


# --------------------------------------------------------------------------------------------
# A tiny real model: trained and converted by the commands


@pytest.fixture(scope="module")
def tiny_reader(number_reader_dir):
    return number_reader_dir, json.loads((number_reader_dir / contract.METRICS_FILE).read_text())


@pytest.mark.slow
def test_tiny_reader_trains_and_converts_with_its_own_contract(tiny_reader):
    import openvino as ov

    folder, report = tiny_reader
    assert report["model_type"] == contract.NUMBER_READER
    losses = [float(line.split(",")[1]) for line in
              (folder / "history.csv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0]  # it learned something in two short epochs
    conversion = json.loads((folder / "ir" / "report.json").read_text())
    assert conversion["parity"]["ok"]
    for variant in ("fp32", "int8"):
        model = ov.Core().read_model(folder / "ir" / variant / contract.IR_FILE)
        assert contract.ir_model_type(model) == contract.NUMBER_READER
        assert model.input(0).get_partial_shape().to_string() == "[?,32,192,1]"
        assert model.output(0).get_partial_shape().to_string() == "[?,48,11]"
    assert not (folder / "serving").exists()  # the OVMS repository is the digit model's


@pytest.mark.slow
def test_openvino_and_tensorflow_read_the_same_lines(tiny_reader, mnist):
    from edgedigits import runtime

    folder, _ = tiny_reader
    accept = (contract.NUMBER_READER,)
    lines = np.stack([sequence.find_lines(_number_photo(mnist, range(k, k + 4), seed=k))[0]
                      .pixels for k in range(0, 40, 4)])
    with runtime.load_classifier(folder, "openvino", inference_precision="f32",
                                 variant="fp32", accept=accept) as openvino, \
            runtime.load_classifier(folder, "tensorflow", accept=accept) as tensorflow:
        assert openvino.model_type == tensorflow.model_type == contract.NUMBER_READER
        ours, theirs = openvino.predict(lines), tensorflow.predict(lines)
    assert ours.shape == (10, sequence.STEPS, sequence.NUM_CLASSES)
    assert np.abs(ours - theirs).max() < 1e-4
    assert [sequence.ctc_decode(p).number for p in ours] == \
        [sequence.ctc_decode(p).number for p in theirs]


@pytest.mark.slow
def test_a_number_reader_is_refused_for_single_digits_and_used_for_multi(tiny_reader, mnist,
                                                                         tmp_path):
    import cv2

    folder, _ = tiny_reader
    photo = tmp_path / "number.png"
    cv2.imwrite(str(photo), _number_photo(mnist, range(4)))
    single = run_command("infer/classify.py", str(photo), "--model", str(folder))
    assert single.returncode == 2
    assert "number reader" in single.stderr and "--multi" in single.stderr
    assert "Traceback" not in single.stderr
    multi = run_command("infer/classify.py", "--multi", str(photo), "--model", str(folder),
                        "--json")
    # 0: read; 1/2: the tiny model read no digit in some/all inputs (a row says so)
    assert multi.returncode in (0, 1, 2), multi.stderr
    rows = json.loads(multi.stdout)
    assert rows[0]["path"] == str(photo)
    assert "Traceback" not in multi.stderr


@pytest.mark.slow
def test_the_default_number_reader_is_found_under_models(tiny_reader, tmp_path, monkeypatch):
    import shutil

    from edgedigits import runtime

    folder, _ = tiny_reader
    models = tmp_path / "models"
    monkeypatch.setenv(contract.MODELS_DIR_ENV, str(models))
    multi = kinds_for(MULTI)
    assert runtime.default_model_for(multi) is None  # nothing trained there yet
    shutil.copytree(folder, models / contract.NUMBER_READER_DIR, symlinks=True)
    found = runtime.default_model_for(multi)
    assert found is not None and found.parent.name == "int8"
    with runtime.load_classifier(accept=multi) as model:
        assert model.model_type == contract.NUMBER_READER


def test_one_narrow_piece_of_ink_is_read_as_one_digit():
    # A continental 1 (a long flag on its stem) was read '11': one ink group narrower than
    # ONE_DIGIT_WIDTH of its height holds one digit, its most confident one
    b = sequence.BLANK
    probabilities = _steps([b, 1, 1, b, b, 1, b], confidence=0.9)
    probabilities[5, 1] = 0.97
    reading = sequence.ctc_decode(probabilities)
    assert reading.number == "11"
    pixels = np.zeros((sequence.LINE_HEIGHT, sequence.LINE_WIDTH), np.uint8)

    def line(*groups):
        box = (min(g[0] for g in groups), 0, max(g[0] + g[2] for g in groups), 60)
        return sequence.Line(box, pixels, 1.0, 0, list(groups))

    narrow = sequence.one_digit_if_narrow(line((0, 0, 36, 60)), reading)
    assert narrow.number == "1" and narrow.steps == [5]
    assert narrow.confidences == [pytest.approx(0.97)]
    # as wide as tall, or two pieces of ink: two digits may be there, the reading is kept
    assert sequence.one_digit_if_narrow(line((0, 0, 60, 60)), reading) is reading
    assert sequence.one_digit_if_narrow(line((0, 0, 14, 60), (20, 0, 14, 60)),
                                        reading) is reading
