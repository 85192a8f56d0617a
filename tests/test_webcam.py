"""infer/webcam.py headless on generated videos: real OpenCV capture and writing, real OpenVINO.

Also infer/benchmark_video.py, which times the same pipeline.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from test_classify import overlap, reliable_digits

from conftest import run_command
from edgedigits import contract
from edgedigits.data.render import ink_box, paper_scene

SCRIPT = "infer/webcam.py"
SIZE = (480, 640)
DIGIT_PX = 110


def write_video(path, frames, fps=30.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE[::-1])
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def digits(ir_models_dir, mnist):
    return reliable_digits(ir_models_dir, mnist, per_class=1)


@pytest.fixture(scope="module")
def video(tmp_path_factory, digits):
    """55 frames: 2, 3, then 4 digits drifting across the page, then 5 blank frames.

    Returns the path and, per frame, the expected (digit, ink box) list left to right.
    """
    folder = tmp_path_factory.mktemp("video")
    frames, expected = [], []
    for index in range(55):
        count = 2 if index < 20 else 3 if index < 40 else 4 if index < 50 else 0
        labels = [(index // 20 * 3 + k * 7) % 10 for k in range(count)]
        positions = [(30 + 150 * k + index % 20, 150 + 30 * (k % 2) + index % 7)
                     for k in range(count)]
        images = [digits[label][0] for label in labels]
        frames.append(paper_scene(images, positions, size=SIZE, digit_px=DIGIT_PX, seed=index))
        expected.append([(label, ink_box(image, position, DIGIT_PX))
                         for label, image, position in zip(labels, images, positions,
                                                            strict=True)])
    path = folder / "digits.mp4"
    write_video(path, frames)
    return path, expected


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_headless_video_gives_jsonl_annotated_video_and_summary(ir_models_dir, video, tmp_path):
    path, expected = video
    jsonl, out, summary = tmp_path / "out.jsonl", tmp_path / "out.mp4", tmp_path / "summary.json"
    result = run_command(SCRIPT, "--source", str(path), "--no-display", "--jsonl", str(jsonl),
                         "--save", str(out), "--summary-json", str(summary),
                         env={contract.MODELS_DIR_ENV: str(ir_models_dir)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "finished after 55 frames" in result.stdout

    records = _lines(jsonl)
    assert [r["frame"] for r in records] == list(range(55))  # every frame, in order
    times = [r["time_ms"] for r in records]
    assert times == sorted(times) and times[30] == pytest.approx(1000.0, abs=1)
    found = right = placed = 0
    for record, wanted in zip(records, expected, strict=True):
        assert len(record["detections"]) == len(wanted), record
        for detection, (label, box) in zip(record["detections"], wanted, strict=True):
            assert set(detection) >= {"box", "digit", "confidence"}
            found += 1
            right += detection["digit"] == label
            placed += overlap(detection["box"], box) > 0.5
        if wanted:
            assert record["inference_ms"]["openvino"] > 0
    assert found == 2 * 20 + 3 * 20 + 4 * 10
    assert right >= 0.95 * found and placed >= 0.95 * found

    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 55
    ok, frame = capture.read()
    assert ok and frame.shape == (*SIZE, 3)
    report = json.loads(summary.read_text())
    assert report["status"] == "finished" and report["frames"] == 55
    assert report["digits"] == found and report["fps"] > 0
    assert report["backends"]["openvino"]["batches"] == 50


@pytest.mark.slow
def test_compare_runs_tensorflow_beside_openvino_on_the_same_crops(ir_models_dir, video,
                                                                   tmp_path):
    path, expected = video
    jsonl = tmp_path / "compare.jsonl"
    result = run_command(SCRIPT, "--source", str(path), "--no-display", "--compare",
                         "--max-frames", "25", "--jsonl", str(jsonl),
                         "--model", str(ir_models_dir / "ir" / "int8" / "model.xml"))
    assert result.returncode == 0, result.stderr
    assert "stopped after 25 frames" in result.stdout
    assert "tensorflow: mean inference" in result.stdout and "agreement" in result.stdout
    records = _lines(jsonl)
    assert len(records) == 25
    agree = total = 0
    for record, wanted in zip(records, expected[:25], strict=True):
        assert set(record["inference_ms"]) == {"openvino", "tensorflow"}
        for detection, (label, _) in zip(record["detections"], wanted, strict=True):
            assert 0 <= detection["tensorflow"]["confidence"] <= 1
            agree += detection["tensorflow"]["digit"] == detection["digit"]
            total += 1
            assert detection["tensorflow"]["digit"] == label or detection["digit"] != label
    assert total == 2 * 20 + 3 * 5 and agree >= 0.95 * total


def test_roi_mode_reads_only_the_centre_box(ir_models_dir, digits, tmp_path):
    centre = (SIZE[1] // 2 - DIGIT_PX // 2, SIZE[0] // 2 - DIGIT_PX // 2)
    frames = [paper_scene([digits[8][0], digits[3][0]], [centre, (10, 20 + k)], size=SIZE,
                          digit_px=DIGIT_PX, seed=k) for k in range(10)]
    path = tmp_path / "roi.mp4"
    write_video(path, frames)
    jsonl = tmp_path / "roi.jsonl"
    result = run_command(SCRIPT, "--source", str(path), "--no-display", "--roi",
                         "--jsonl", str(jsonl), "--model", str(ir_models_dir))
    assert result.returncode == 0, result.stderr
    side = SIZE[0] // 2  # default --roi-size 0.5 of the shorter side
    for record in _lines(jsonl):
        (detection,) = record["detections"]  # the 3 in the corner is outside the box
        assert detection["box"] == [(SIZE[1] - side) // 2, (SIZE[0] - side) // 2, side, side]
        assert detection["digit"] == 8


@contextmanager
def mjpeg_camera(frames, fps=30.0, stall=False):
    """A real IP camera stand-in: an HTTP MJPEG stream that sends ``frames``, then hangs up
    (``stall``: keeps the connection open and goes silent, which FFmpeg alone waits on forever).

    Yields its URL. OpenCV opens it with FFmpeg as a live stream, like any network camera.
    """
    jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]
    stop = threading.Event()

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpeg in jpegs:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                time.sleep(1 / fps)
            if stall:
                stop.wait(120)
            # Returning closes the connection: the camera stops delivering.

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def _one_digit_frames(digits, count):
    return [paper_scene([digits[5][0]], [(200, 150)], size=SIZE, digit_px=DIGIT_PX, seed=k)
            for k in range(count)]


def test_a_live_stream_that_stops_is_a_lost_camera(ir_models_dir, digits, tmp_path):
    jsonl, summary = tmp_path / "lost.jsonl", tmp_path / "summary.json"
    with mjpeg_camera(_one_digit_frames(digits, 6)) as url:
        result = run_command(SCRIPT, "--source", url, "--no-display", "--jsonl", str(jsonl),
                             "--summary-json", str(summary), "--model", str(ir_models_dir))
    assert result.returncode == 1, result.stderr
    assert "lost after" in result.stdout  # the summary is still printed
    records = _lines(jsonl)  # what was processed is kept
    assert result.stderr.strip().splitlines() == [
        f"webcam.py: error: lost {url} after {len(records)} frames"]
    # A camera keeps only its newest frame, but the last one is never dropped for the end.
    assert 1 <= len(records) <= 6 and records[-1]["frame"] == 5
    assert json.loads(summary.read_text())["status"] == "lost"


def test_realtime_file_plays_like_a_camera_and_finishes(ir_models_dir, digits, tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, _one_digit_frames(digits, 6), fps=60)
    jsonl = tmp_path / "realtime.jsonl"
    result = run_command(SCRIPT, "--source", str(path), "--no-display", "--realtime",
                         "--jsonl", str(jsonl), "--model", str(ir_models_dir))
    # The end of a file is a finished run, even replayed as a camera.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    records = _lines(jsonl)
    assert f"finished after {len(records)} frames" in result.stdout
    assert 1 <= len(records) <= 6 and records[-1]["frame"] == 5  # the last frame is kept
    assert [r["time_ms"] for r in records] == [
        pytest.approx(r["frame"] * 1000 / 60, abs=0.1) for r in records]


def test_benchmark_of_a_video_without_digits_reports_no_inference(ir_models_dir, tmp_path):
    path = tmp_path / "blank.mp4"
    write_video(path, [np.full((*SIZE, 3), 210, np.uint8)] * 10)
    result = run_command("infer/benchmark_video.py", "--video", str(path), "--repeats", "1",
                         "--model", str(ir_models_dir))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith("jsonl")]
    assert row[1:3] == ["10", "0"] and row[-1] == "-"  # 10 frames, 0 digits, no inference


@pytest.mark.parametrize("case", ["camera", "missing", "not_video", "display", "dead_display",
                                  "device", "roi_size", "summary_json", "compare_no_keras"])
def test_bad_sources_and_flags_are_one_line(ir_models_dir, video, tmp_path, case):
    args, env = ["--model", str(ir_models_dir), "--no-display"], {}
    if case == "camera":
        args += ["--source", "9"]
        expected = "cannot open camera 9 (tried"
    elif case == "missing":
        args += ["--source", str(tmp_path / "nothing.mp4")]
        expected = "no such video file"
    elif case == "not_video":
        fake = tmp_path / "fake.mp4"
        fake.write_text("not a video")
        args += ["--source", str(fake)]
        expected = "cannot open video"
    elif case == "display":
        args = ["--model", str(ir_models_dir), "--source", str(video[0])]
        env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
        expected = "--no-display"
    elif case == "dead_display":  # Qt would abort the process: a probe must catch it first
        args = ["--model", str(ir_models_dir), "--source", str(video[0])]
        env = {"DISPLAY": ":987", "WAYLAND_DISPLAY": ""}
        expected = "cannot open a window"
    elif case == "device":
        args += ["--source", str(video[0]), "--device", "GPU.3"]
        expected = "CPU"
    elif case == "roi_size":
        args += ["--source", str(video[0]), "--roi", "--roi-size", "1.5"]
        expected = "at most 1"
    elif case == "summary_json":  # its folder cannot exist: checked before the run, not after
        (tmp_path / "a_file").write_text("")
        args += ["--source", str(video[0]), "--summary-json", str(tmp_path / "a_file" / "s.json")]
        expected = "cannot write to output folder"
    else:  # an IR with no .keras beside it: never silently compare against another network
        ir = tmp_path / "some" / "dir" / "int8"
        shutil.copytree(ir_models_dir / "ir" / "int8", ir)
        args = ["--model", str(ir / "model.xml"), "--no-display", "--source", str(video[0]),
                "--compare"]
        expected = "pass --tf-model PATH"
    jsonl = tmp_path / "never.jsonl"
    result = run_command(SCRIPT, *args, "--jsonl", str(jsonl), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not jsonl.exists()  # nothing half-written
