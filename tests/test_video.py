"""edgedigits.video in-process: real OpenCV capture/writing of generated videos, real OpenVINO.

The command around it (flags, exit codes, messages) is tested in test_webcam.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_classify import reliable_digits
from test_webcam import DIGIT_PX, SIZE, write_video

from edgedigits import runtime
from edgedigits.data.render import paper_scene
from edgedigits.errors import UserError
from edgedigits.video import display
from edgedigits.video import pipeline as video

FRAMES = 12
LABELS = (4, 7)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, ir_models_dir, mnist):
    """12 frames of the digits 4 and 7 side by side, at 25 frames per second."""
    digits = reliable_digits(ir_models_dir, mnist, per_class=1)
    frames = [paper_scene([digits[label][0] for label in LABELS], [(80 + k, 160), (330, 150 + k)],
                          size=SIZE, digit_px=DIGIT_PX, seed=k) for k in range(FRAMES)]
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, frames, fps=25.0)
    return path


@pytest.fixture
def classifier(ir_models_dir):
    classifier = runtime.load_classifier(ir_models_dir)
    video.warm_up([classifier], roi=False, max_digits=video.DEFAULT_MAX_DIGITS)
    return classifier


def test_run_pipeline_delivers_every_frame_in_order_and_counts_them(clip, classifier,
                                                                   tmp_path):
    jsonl = tmp_path / "frames.jsonl"
    capture = video.Capture(str(clip))
    assert (capture.width, capture.height, capture.fps) == (SIZE[1], SIZE[0], 25.0)
    assert not capture.live
    summary = video.run_pipeline(capture, [classifier], video.Outputs(jsonl=str(jsonl)))

    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert [r["time_ms"] for r in records] == [pytest.approx(40.0 * k) for k in range(FRAMES)]
    for record in records:
        assert [d["digit"] for d in record["detections"]] == list(LABELS)  # left to right
        assert record["inference_ms"]["openvino"] > 0
    assert summary.status == "finished" and summary.frames == FRAMES
    assert summary.digits == 2 * FRAMES and summary.frames_with_digits == FRAMES
    stats = summary.as_json()["backends"]["openvino"]
    assert stats["batches"] == FRAMES and stats["digits"] == 2 * FRAMES
    assert "agreement" not in summary.as_json()  # one backend: nothing to agree with
    assert f"finished after {FRAMES} frames" in summary.text()


def test_max_frames_stops_early_and_roi_reads_the_centre_only(clip, classifier):
    # roi=1.0: the centre box is the frame's whole height, so each frame gives exactly one crop.
    summary = video.run_pipeline(video.Capture(str(clip)), [classifier], video.Outputs(),
                                 roi=1.0, max_frames=5)
    assert summary.status == "stopped"
    assert summary.frames == 5 and summary.digits == 5
    assert summary.backends["openvino"].batches == 5


def test_a_video_that_cannot_be_written_leaves_no_partial_output(clip, classifier, tmp_path):
    jsonl, bad = tmp_path / "frames.jsonl", tmp_path / "annotated.xyz"
    outputs = video.Outputs(jsonl=str(jsonl), save=str(bad))
    with pytest.raises(UserError, match=r"cannot write video .*annotated\.xyz"):
        video.run_pipeline(video.Capture(str(clip)), [classifier], outputs)
    assert sorted(tmp_path.iterdir()) == []  # neither file, nor any staging folder


def test_draw_marks_agreement_green_and_disagreement_red_on_a_copy():
    frame = np.full((*SIZE, 3), 200, np.uint8)
    found = [
        {"box": [50, 100, 60, 80], "digit": 3, "confidence": 0.9,
         "tensorflow": {"digit": 3, "confidence": 0.8}},
        {"box": [300, 100, 60, 80], "digit": 5, "confidence": 0.7,
         "tensorflow": {"digit": 6, "confidence": 0.6}},
    ]
    image = video.draw(frame, found, ["openvino", "tensorflow"], fps=30.0,
                       inference_ms={"openvino": 1.0, "tensorflow": 2.0}, roi_box=None)
    assert (frame == 200).all()  # the input frame is left alone
    assert tuple(image[140, 50]) == display.GREEN  # left edge of each box, half-way down
    assert tuple(image[140, 300]) == display.RED
    assert image[:20].mean() < 120  # the status band is darkened behind its text


def test_compare_model_is_the_network_beside_the_ir_or_an_error(ir_models_dir, tmp_path):
    keras_file = ir_models_dir / "model.keras"
    ir = ir_models_dir / "ir" / "int8" / "model.xml"
    assert video.compare_model(str(ir), None) == keras_file.resolve()  # <models>/ir/<variant>/
    assert video.compare_model(str(ir_models_dir), None) == keras_file  # a models folder
    assert video.compare_model(str(ir), "other.keras") == Path("other.keras")  # explicit wins
    lone = tmp_path / "some" / "dir" / "int8"
    shutil.copytree(ir.parent, lone)
    # No fallback to the default models folder: it may hold a different network.
    with pytest.raises(UserError, match=r"no model\.keras model beside --model .*--tf-model PATH"):
        video.compare_model(str(lone / "model.xml"), None)


def test_outputs_check_covers_the_summary_json_folder(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot write to output folder"):
        video.Outputs(summary_json=str(tmp_path / "a_file" / "summary.json")).check()
    video.Outputs(summary_json=str(tmp_path / "new" / "summary.json")).check()
    assert (tmp_path / "new").is_dir()
