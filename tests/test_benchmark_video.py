"""The generated camera video and its ground truth (edgedigits.video.synthetic), the scorer of a
``webcam.py --jsonl`` run against it, and ``infer/benchmark_video.py`` with its accuracies and
``--baseline``. Real OpenCV video files and real OpenVINO; no speed is asserted."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from conftest import run_command
from edgedigits.errors import UserError
from edgedigits.video import synthetic

SCRIPT = "infer/benchmark_video.py"


# --------------------------------------------------------------------------------------------
# The video and its ground truth

# sha256 of the raw BGR pixels of the first 95 frames of make_video(seed=0), one scene each of
# 1, 2, 3 and 4 digits: the frames of the generator that lived in infer/benchmark_video.py
# until it moved here (checked bit for bit against it), so runs on different days compare.
# Pinned numpy/OpenCV render them; a new version of either may change them.
FIRST_FRAMES_SHA256 = "0c2bb7640c6ba681a09dbcfcb6c061840ed9cde34e4ee3d418ae66bece56fff9"


def test_the_frames_are_the_ones_the_benchmark_always_rendered(mnist):
    digest = hashlib.sha256()
    truths = []
    for image, truth in synthetic.digit_frames(95, mnist.x_test, mnist.y_test):
        assert image.shape == (synthetic.HEIGHT, synthetic.WIDTH, 3) and image.dtype == np.uint8
        digest.update(image.tobytes())
        truths.append(truth)
    assert digest.hexdigest() == FIRST_FRAMES_SHA256
    # scenes of 1, 2, 3, 4 consecutive test digits, one a second
    assert [len(truth) for truth in truths[::30]] == [1, 2, 3, 4]
    assert [d["digit"] for d in truths[90]] == [int(y) for y in mnist.y_test[12:16]]


def test_ground_truth_boxes_hold_the_ink_of_each_digit(mnist):
    """Every dark pixel of a frame lies within 3 px of a ground-truth box, and the dark pixels
    of each box span it (dark: < 110, about the inner 60 % of the stroke's ink, so a little
    short of the box drawn at MNIST's faint edges)."""
    frames = synthetic.digit_frames(12, mnist.x_test, mnist.y_test, seed=5, scene_frames=3)
    for index, (image, truth) in enumerate(frames):
        assert [d["digit"] for d in truth] == [
            int(mnist.y_test[(index // 3 * 4 + k) % len(mnist.y_test)])
            for k in range(len(truth))]
        dark = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) < 110).astype(np.uint8)
        inside = np.zeros_like(dark)
        for digit in truth:
            x, y, w, h = digit["box"]
            inside[y - 3 : y + h + 3, x - 3 : x + w + 3] = 1
            _, _, ink_w, ink_h = cv2.boundingRect(dark[y - 3 : y + h + 3, x - 3 : x + w + 3])
            assert w - 14 <= ink_w <= w + 2 and h - 10 <= ink_h <= h + 2, (index, digit)
        assert dark.sum() > 200 and not (dark & (1 - inside)).any(), index


def test_make_video_writes_the_video_and_its_ground_truth(tmp_path):
    video, truth_path = tmp_path / "digits.mp4", tmp_path / "digits.json"
    truth = synthetic.make_video(video, 8, scene_frames=2, truth_path=truth_path)
    assert [len(frame) for frame in truth] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert synthetic.read_truth(truth_path) == truth
    saved = json.loads(truth_path.read_text())
    assert saved["width"] == 640 and saved["scene_frames"] == 2 and saved["frames"] == truth
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (480, 640, 3)
        frames += 1
    assert frames == 8


def test_a_bad_ground_truth_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no ground truth file"):
        synthetic.read_truth(tmp_path / "none.json")
    (tmp_path / "other.json").write_text('{"frames": []}')
    with pytest.raises(UserError, match="not a ground truth written by make_video"):
        synthetic.read_truth(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="cannot read ground truth"):
        synthetic.read_truth(tmp_path / "broken.json")


# --------------------------------------------------------------------------------------------
# The scorer

SEVEN = {"digit": 7, "box": [100, 100, 60, 80]}
ONE = {"digit": 1, "box": [300, 100, 20, 80]}


def detection(digit, box):
    return {"box": box, "digit": digit, "confidence": 0.9}


def record(frame, *found):
    return {"frame": frame, "time_ms": 0.0, "detections": list(found), "inference_ms": {}}


def test_every_digit_read_right_scores_one():
    truth = [[SEVEN, ONE], [SEVEN]]
    records = [record(0, detection(1, [302, 98, 18, 84]), detection(7, [98, 101, 64, 80])),
               record(1, detection(7, [100, 100, 60, 80]))]
    score = synthetic.score(truth, records)
    assert (score.digits, score.detections, score.right) == (3, 3, 3)
    assert score.digits_read_right == score.detections_right == 1.0
    assert score.frames == 2 and score.frames_missing == 0


def test_a_wrong_digit_a_missed_digit_and_a_missing_frame_count_against():
    truth = [[SEVEN, ONE], [SEVEN], [ONE]]
    records = [record(0, detection(9, [100, 100, 60, 80])),  # the 7 read 9, the 1 missed
               record(1, detection(7, [100, 100, 60, 80]))]  # frame 2 never delivered
    score = synthetic.score(truth, records)
    assert (score.digits, score.detections, score.right) == (4, 2, 1)
    assert score.digits_read_right == 0.25 and score.detections_right == 0.5
    assert score.frames_missing == 1


def test_a_digit_split_in_two_lowers_detections_right():
    """Both halves' centres lie in the 7's box; the half covering it best (IoU) is the one
    judged, whatever its label; the other half matches nothing."""
    halves_right = [detection(7, [100, 100, 40, 80]), detection(1, [140, 100, 20, 80])]
    score = synthetic.score([[SEVEN]], [record(0, *halves_right)])
    assert (score.digits_read_right, score.detections_right) == (1.0, 0.5)
    halves_wrong = [detection(1, [100, 100, 40, 80]), detection(7, [140, 100, 20, 80])]
    score = synthetic.score([[SEVEN]], [record(0, *halves_wrong)])
    assert (score.digits_read_right, score.detections_right) == (0.0, 0.0)


def test_a_detection_matches_only_the_digit_its_centre_lies_in():
    # a box over both digits: its centre (210, 140) lies in neither box
    score = synthetic.score([[SEVEN, ONE]], [record(0, detection(7, [100, 100, 220, 80]))])
    assert score.right == 0 and score.detections == 1
    # a speck on the paper is a wrong detection; each digit is matched at most once
    found = [detection(7, [110, 110, 40, 60]), detection(7, [120, 120, 30, 40]),
             detection(4, [500, 400, 10, 10])]
    score = synthetic.score([[SEVEN]], [record(0, *found)])
    assert (score.right, score.detections) == (1, 3)
    assert synthetic.match_frame([SEVEN], found) == [(0, 0)]  # the larger box: best IoU


def test_records_of_another_video_are_refused(tmp_path):
    with pytest.raises(UserError, match="not a run on this video"):
        synthetic.score([[SEVEN]], [record(0), record(1)])
    with pytest.raises(UserError, match="no --jsonl file"):
        synthetic.score_jsonl([[SEVEN]], tmp_path / "none.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"frame": 0, "detections": []}\n{"frame": 1\n')
    with pytest.raises(UserError, match="cannot read --jsonl file"):
        synthetic.score_jsonl([[SEVEN], [ONE]], broken)


# --------------------------------------------------------------------------------------------
# infer/benchmark_video.py


@pytest.fixture(scope="module")
def first_report(ir_models_dir, tmp_path_factory):
    """One run on 40 generated frames with new digits in each (100 digits), saved with
    --output, and the same video scored from webcam.py's own --jsonl."""
    folder = tmp_path_factory.mktemp("benchmark-video")
    model = str(ir_models_dir / "ir" / "fp32" / "model.xml")
    result = run_command(SCRIPT, "--frames", "40", "--scene-frames", "1", "--repeats", "1",
                         "--model", model, "--output", str(folder / "first.json"))
    assert result.returncode == 0, result.stderr
    video = folder / "digits.mp4"
    truth = synthetic.make_video(video, 40, scene_frames=1)
    jsonl = folder / "webcam.jsonl"
    webcam = run_command("infer/webcam.py", "--source", str(video), "--no-display",
                         "--jsonl", str(jsonl), "--model", model)
    assert webcam.returncode == 0, webcam.stderr
    return (model, folder, result, json.loads((folder / "first.json").read_text()),
            synthetic.score_jsonl(truth, jsonl))


def test_the_benchmark_reports_the_accuracies_webcam_reaches_on_the_video(first_report):
    _, _, result, report, score = first_report
    row = report["jsonl"]
    assert row["frames"] == 40 and row["video_digits"] == score.digits == 100
    assert row["video"] == {"generated": "digits apart", "seed": 0, "scene_frames": 1}
    assert row["digits"] == score.detections  # the summary's digits are the detections
    assert row["right"] == score.right
    assert row["digits_read_right"] == round(score.digits_read_right, 4)
    assert row["detections_right"] == round(score.detections_right, 4)
    assert score.digits_read_right > 0.7  # a broken scorer or reader would be far lower
    assert (f"digits read right {score.digits_read_right:.1%} ({score.right} of the video's "
            f"100), detections right {score.detections_right:.1%}") in result.stdout


def test_baseline_prints_each_figure_beside_it_with_the_ratio(first_report):
    model, folder, _, report, _ = first_report
    result = run_command(SCRIPT, "--frames", "40", "--scene-frames", "1", "--repeats", "1",
                         "--model", model, "--baseline", str(folder / "first.json"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(f"Beside the baseline {folder / 'first.json'} (ratio = now / baseline):")
    assert lines[start + 1] == "jsonl"
    figures = {line.split("  ")[1]: line.split() for line in lines[start + 3:]}
    accuracy = f"{100 * report['jsonl']['digits_read_right']:.2f}"
    # the same video and model read the same digits: ratio 1
    assert figures["digits read right"][-5:] == [accuracy, "%", accuracy, "%", "1.000"]
    assert figures["detections right"][-1] == "1.000"
    median = figures["frames/s median"]
    assert float(median[-1]) == pytest.approx(
        float(median[-3].replace(",", "")) / report["jsonl"]["fps_median"], rel=0.01)
    assert "note:" not in result.stdout  # same video: nothing to warn about


def test_baseline_from_before_the_accuracies_and_of_other_modes(first_report, tmp_path):
    """A report from before this change (no accuracy, no video) is a baseline: its missing
    figures show as '—'; modes are matched by name, the others said plainly."""
    model, _, _, report, _ = first_report
    old = {"jsonl+save": {key: report["jsonl"][key] for key in (
        "command", "frames", "digits", "fps_min", "fps_median", "fps_max", "mean_inference_ms")}}
    old["jsonl"] = dict(old["jsonl+save"])
    baseline = tmp_path / "old.json"
    baseline.write_text(json.dumps(old))
    result = run_command(SCRIPT, "--frames", "40", "--scene-frames", "1", "--repeats", "1",
                         "--model", model, "--baseline", str(baseline), "--json")
    assert result.returncode == 0, result.stderr
    beside = json.loads(result.stdout)["jsonl"]["baseline"]
    figures = {f["figure"]: f for f in beside["figures"]}
    assert figures["digits read right"]["baseline"] is None
    assert figures["digits read right"]["ratio"] is None
    assert figures["detections"]["ratio"] == 1.0
    assert figures["frames/s median"]["baseline"] == report["jsonl"]["fps_median"]
    text = run_command(SCRIPT, "--frames", "40", "--repeats", "1", "--model", model,
                       "--baseline", str(baseline))
    assert text.returncode == 0, text.stderr
    assert "in the baseline, not measured now: jsonl+save" in text.stdout
    assert "note: jsonl: the baseline measured another video" not in text.stdout  # unknown
    assert "digits read right" in text.stdout and "—" in text.stdout


def _bad_baselines(tmp_path):
    (tmp_path / "text.json").write_text("frames/s: 540\n")
    (tmp_path / "other.json").write_text('{"rows": [{"variant": "ov-int8", "status": "ok"}]}')
    (tmp_path / "list.json").write_text("[1, 2]")
    return [(tmp_path / "none.json", "no such file"),
            (tmp_path / "text.json", "not JSON (Expecting value, line 1)"),
            (tmp_path, "is a folder"),
            (tmp_path / "list.json", "not a report of infer/benchmark_video.py --output"),
            (tmp_path / "other.json", "but a benchmark.json of infer/benchmark.py")]


def test_a_bad_baseline_is_one_line_and_exit_2_before_anything_runs(tmp_path):
    for path, message in _bad_baselines(tmp_path):
        result = run_command(SCRIPT, "--baseline", str(path), "--model", str(tmp_path / "m"),
                             "--output", str(tmp_path / "out.json"))
        assert result.returncode == 2, (path, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], result.stderr
        assert not (tmp_path / "out.json").exists()
