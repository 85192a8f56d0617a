"""Several streams through one model in one process: ``infer/webcam.py --source A --source B``
(edgedigits.video.streams), on real video files the project renders (with ground truth), a real
loopback MJPEG stream, real OpenCV capture and writing, real OpenVINO.

Each stream must read exactly what that file reads alone (same model), keep its own frame
order, write its own annotated video, and survive the others' trouble.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_reliability_window import display, read_xwd  # noqa: F401 (fixture)
from test_webcam import _one_digit_frames, digits, mjpeg_camera  # noqa: F401 (fixture)

from conftest import ROOT, run_command
from edgedigits import contract
from edgedigits.video import capture, streams, synthetic

SCRIPT = "infer/webcam.py"
LENGTHS = (36, 24, 30)  # frames of the three videos: they end at different times


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three rendered 640x480 videos (other seeds, new digits every 3 frames) and their truth."""
    folder = tmp_path_factory.mktemp("streams")
    made = []
    for number, frames in enumerate(LENGTHS):
        path = folder / f"video{number}.mp4"
        truth = synthetic.make_video(path, frames, seed=number, scene_frames=3)
        made.append((path, truth))
    return made


@pytest.fixture(scope="module")
def alone(videos, ir_models_dir, tmp_path_factory):
    """Each video read on its own by webcam.py (the reference): its JSON lines."""
    folder = tmp_path_factory.mktemp("alone")
    records = []
    for number, (path, _) in enumerate(videos):
        jsonl = folder / f"alone{number}.jsonl"
        result = run_command(SCRIPT, "--source", str(path), "--no-display", "--jsonl",
                             str(jsonl), "--model", str(ir_models_dir))
        assert result.returncode == 0, result.stderr
        records.append(synthetic.read_jsonl(jsonl))
    return records


def _by_stream(records):
    streams_seen = {}
    for record in records:
        streams_seen.setdefault(record["stream"], []).append(record)
    return streams_seen


def _same_reading(together, alone_records, source):
    assert [r["frame"] for r in together] == list(range(len(alone_records)))  # own order
    assert all(r["source"] == source for r in together)
    assert [r["detections"] for r in together] == [r["detections"] for r in alone_records]


def test_a_single_source_record_names_its_source(alone, videos):
    # the one change to a single stream's records: "source", as given (no "stream")
    for records, (path, _) in zip(alone, videos, strict=True):
        assert all(r["source"] == str(path) and "stream" not in r for r in records)
        assert list(records[0]) == ["source", "frame", "time_ms", "detections", "inference_ms"]


def test_three_streams_in_one_process_read_what_each_reads_alone(videos, alone, ir_models_dir,
                                                                  tmp_path):
    jsonl, summary = tmp_path / "all.jsonl", tmp_path / "summary.json"
    save = tmp_path / "out.mp4"
    args = []
    for path, _ in videos:
        args += ["--source", str(path)]
    result = run_command(SCRIPT, *args, "--no-display", "--jsonl", str(jsonl), "--save",
                         str(save), "--summary-json", str(summary), "--model",
                         str(ir_models_dir))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    records = synthetic.read_jsonl(jsonl)
    together = _by_stream(records)
    assert sorted(together) == [1, 2, 3]
    for number, ((path, truth), reference) in enumerate(zip(videos, alone, strict=True), 1):
        _same_reading(together[number], reference, str(path))
        # the reading is a real one: scored against the video's ground truth
        mine = [{k: v for k, v in r.items() if k != "stream"} for r in together[number]]
        assert synthetic.score(truth, mine).digits_read_right > 0.8
    # the streams really ran together: their records interleave in the one file
    order = [r["stream"] for r in records]
    assert order[: 2 * len(LENGTHS)].count(1) < 2 * len(LENGTHS)

    # one annotated video per stream, OUT_<n>.mp4, each with its own stream's frames
    assert not save.exists()
    for number, frames in enumerate(LENGTHS, 1):
        capture = cv2.VideoCapture(str(tmp_path / f"out_{number}.mp4"))
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == frames
        capture.release()

    report = json.loads(summary.read_text())
    rows = report["streams"]
    assert [row["stream"] for row in rows] == [1, 2, 3]
    assert [row["source"] for row in rows] == [str(path) for path, _ in videos]
    assert [row["frames"] for row in rows] == list(LENGTHS)
    assert all(row["status"] == "finished" and row["fps"] > 0 for row in rows)
    assert report["total"]["frames"] == sum(LENGTHS) and report["total"]["lost"] == 0
    assert report["total"]["digits"] == sum(row["digits"] for row in rows)
    text = result.stdout.splitlines()
    assert [line.split(":")[0] for line in text] == ["stream 1", "stream 2", "stream 3",
                                                      "total"]
    assert text[-1].startswith(f"total: 3 streams, {sum(LENGTHS)} frames in ")
    # the two streams that ended first (which: the machine's scheduling) were said once
    # each, one line naming the source; the last one's end is the run's
    said = {f"webcam.py: stream {n} ({videos[n - 1][0]}) finished after {LENGTHS[n - 1]} "
            "frames; the other streams go on" for n in (1, 2, 3)}
    ended = result.stderr.strip().splitlines()
    assert len(ended) == 2 and set(ended) < said, result.stderr


def test_two_streams_from_a_sources_file_with_max_frames_json(videos, alone, ir_models_dir,
                                                              tmp_path):
    listing = tmp_path / "cameras.txt"
    listing.write_text(f"# two of them\n{videos[0][0]}\n\n  {videos[1][0]}  \n")
    jsonl = tmp_path / "two.jsonl"
    # prepared in this process, each frame its own inference request: as before workers
    result = run_command(SCRIPT, "--sources", str(listing), "--no-display", "--jsonl",
                         str(jsonl), "--max-frames", "20", "--json", "--model",
                         str(ir_models_dir), "--workers", "0", "--no-shared-batches")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # stopped by --max-frames: nothing to say
    report = json.loads(result.stdout)
    assert [row["status"] for row in report["streams"]] == ["stopped", "stopped"]
    assert report["total"]["frames"] == 40 and report["total"]["workers"] == 0
    together = _by_stream(synthetic.read_jsonl(jsonl))
    for number in (1, 2):
        _same_reading(together[number], alone[number - 1][:20], str(videos[number - 1][0]))


def test_a_stream_that_fails_does_not_stop_the_others(videos, alone, digits,  # noqa: F811
                                                      ir_models_dir, tmp_path):
    """Among two good files: a file that does not exist, a truncated mp4 (cannot be opened),
    a corrupt mp4 whose decoding stops part-way (a file that ends early) and a live MJPEG
    stream that hangs up after 6 frames (lost mid-run)."""
    missing = tmp_path / "nothing.mp4"
    data = videos[0][0].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 2 : len(data) // 2 + 20000] = bytes(20000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(corrupt))
    jsonl, summary = tmp_path / "all.jsonl", tmp_path / "summary.json"
    with mjpeg_camera(_one_digit_frames(digits, 6), fps=15) as url:
        sources = [str(videos[0][0]), str(missing), url, str(truncated), str(damaged),
                   str(videos[2][0])]
        args = [arg for source in sources for arg in ("--source", source)]
        result = run_command(SCRIPT, *args, "--no-display", "--jsonl", str(jsonl),
                             "--summary-json", str(summary), "--model", str(ir_models_dir))
    assert result.returncode == 1, result.stderr  # a stream was lost
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    said = {int(line.split()[2]): line for line in lines}
    assert len(said) == len(lines)  # each stream said at most once, one line each
    assert said[2].startswith(f"webcam.py: stream 2 ({missing}) not opened: no such video")
    assert said[4].startswith(f"webcam.py: stream 4 ({truncated}) not opened: cannot open")
    assert said[3].startswith(f"webcam.py: stream 3 ({url}) lost after ")
    report = json.loads(summary.read_text())
    status = [row["status"] for row in report["streams"]]
    assert status == ["finished", "failed", "lost", "failed", "finished", "finished"]
    assert report["total"]["lost"] == 3
    together = _by_stream(synthetic.read_jsonl(jsonl))
    # the good files read exactly as alone, whole
    _same_reading(together[1], alone[0], str(videos[0][0]))
    _same_reading(together[6], alone[2], str(videos[2][0]))
    # the damaged file gave what it could decode, read as the first file's same frames
    damaged_frames = report["streams"][4]["frames"]
    assert 0 < damaged_frames < LENGTHS[0]
    assert (len(together[5]) == damaged_frames
            and [r["frame"] for r in together[5]] == list(range(damaged_frames)))
    assert 1 <= len(together[3]) <= 6 and together[3][-1]["frame"] == 5
    assert "stream 3: " in result.stdout and "lost after" in result.stdout


def test_several_sources_through_one_server_read_what_they_read_locally(videos, ir_models_dir,
                                                                        tmp_path):
    """``--server URL`` with two sources: a real ``infer/serve.py`` on free loopback ports
    gets both streams' frames (batched together) and each stream reads what the same model
    reads in this process. INT8: its outputs do not depend on how frames share a batch (at
    f32 they can, in the last digits: the batches here and on the server differ with timing)."""
    from test_serving import Server

    int8 = ir_models_dir / contract.IR_DIR / "int8" / contract.IR_FILE
    common = ["--source", str(videos[0][0]), "--source", str(videos[1][0]), "--no-display",
              "--max-frames", "20"]
    local_lines, remote_lines = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    local = run_command(SCRIPT, *common, "--jsonl", str(local_lines), "--model", str(int8))
    assert local.returncode == 0, local.stderr
    server = Server("--model", str(int8))
    try:
        remote = run_command(SCRIPT, *common, "--jsonl", str(remote_lines), "--server",
                             f"http://{server.url}", "--json")
        metrics = server.request("GET", "/metrics")[1]
    finally:
        assert server.stop() == 0
    assert remote.returncode == 0, remote.stderr
    assert "Traceback" not in remote.stderr
    local_streams = _by_stream(synthetic.read_jsonl(local_lines))
    remote_streams = _by_stream(synthetic.read_jsonl(remote_lines))
    assert sorted(remote_streams) == [1, 2]
    for number in (1, 2):
        mine = remote_streams[number]
        assert [r["frame"] for r in mine] == list(range(20))
        assert all(r["source"] == str(videos[number - 1][0]) for r in mine)
        assert [r["detections"] for r in mine] == [r["detections"] for r in
                                                   local_streams[number]]
    assert sum(len(r["detections"]) for s in remote_streams.values() for r in s) >= 40
    assert json.loads(remote.stdout)["total"]["frames"] == 40
    # the digits really went to the server: it inferred at least every one read
    images = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith('edgedigits_request_images_sum{model="digits"}'))
    assert images >= sum(len(r["detections"]) for s in remote_streams.values() for r in s)


def _preparing_processes(pid: int, count: int, deadline: float) -> list[int]:
    """The worker processes ``pid`` spawned to prepare frames (multiprocessing's spawn_main),
    once there are ``count`` of them (they start one after the other), or those found by the
    deadline."""
    found: list[int] = []
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = []
        for child in (children.read_text().split() if children.exists() else []):
            with suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
        if len(found) >= count:
            return found
        time.sleep(0.2)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_a_preparing_process_that_dies_loses_only_its_streams(ir_models_dir, tmp_path):
    """Two files played as cameras, each prepared in its own process: killing one of those
    processes loses its stream (said once, in one line), the other plays to its end."""
    sources = []
    for seed in range(2):
        path = tmp_path / f"camera{seed}.mp4"
        synthetic.make_video(path, 240, seed=seed)  # 8 s in real time
        sources += ["--source", str(path)]
    summary = tmp_path / "summary.json"
    process = subprocess.Popen([sys.executable, str(ROOT / SCRIPT), *sources, "--realtime",
                                "--no-display", "--workers", "2", "--summary-json",
                                str(summary), "--model", str(ir_models_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = _preparing_processes(process.pid, 2, time.monotonic() + 60)
    assert len(workers) == 2, workers
    time.sleep(3)  # both streams running
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr  # a stream was lost
    assert "Traceback" not in stderr
    report = json.loads(summary.read_text())
    rows = report["streams"]
    assert sorted(row["status"] for row in rows) == ["finished", "lost"], rows
    lost = next(row for row in rows if row["status"] == "lost")
    kept = next(row for row in rows if row["status"] == "finished")
    # the kept one played to its end (real time on a shared machine: some frames dropped)
    assert 0 < lost["frames"] < kept["frames"]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"webcam.py: stream {lost['stream']} ({lost['source']}) lost after "), stderr


def test_a_stream_that_stops_answering_is_lost_and_the_others_finish(
        videos, alone, digits, ir_models_dir, tmp_path):  # noqa: F811
    jsonl = tmp_path / "all.jsonl"
    with mjpeg_camera(_one_digit_frames(digits, 5), stall=True) as url:
        started = time.monotonic()
        result = run_command(SCRIPT, "--source", str(videos[1][0]), "--source", url,
                             "--no-display", "--jsonl", str(jsonl), "--json",
                             "--model", str(ir_models_dir), timeout=120)
        took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"webcam.py: stream 2 ({url}) lost after "), result.stderr
    report = json.loads(result.stdout)
    assert [row["status"] for row in report["streams"]] == ["finished", "lost"]
    _same_reading(_by_stream(synthetic.read_jsonl(jsonl))[1], alone[1], str(videos[1][0]))
    # lost after the read timeout, not never (a shared machine: generous bound)
    assert took < capture.STREAM_READ_TIMEOUT_MS / 1000 + 60


@pytest.mark.parametrize("case", ["sources_missing", "sources_empty", "none_open",
                                  "save_over_source", "workers"])
def test_bad_flags_for_several_sources_are_one_line_exit_2(videos, ir_models_dir, tmp_path,
                                                           case):
    args = ["--model", str(ir_models_dir), "--no-display"]
    if case == "sources_missing":
        args += ["--sources", str(tmp_path / "none.txt")]
        expected = "no such --sources file"
    elif case == "sources_empty":
        (tmp_path / "empty.txt").write_text("# nothing\n\n")
        args += ["--sources", str(tmp_path / "empty.txt")]
        expected = "lists no source"
    elif case == "workers":
        args += ["--source", str(videos[0][0]), "--source", str(videos[1][0]),
                 "--workers=-1"]
        expected = "--workers: expected a whole number from 0 to 64, got '-1'"
    elif case == "none_open":
        args += ["--source", str(tmp_path / "a.mp4"), "--source", str(tmp_path / "b.mp4")]
        expected = "none of the 2 sources could be opened: stream 1 ("
    else:  # stream 2's OUT_2.mp4 would be the first source
        first = tmp_path / "clip_2.mp4"
        first.write_bytes(videos[0][0].read_bytes())
        args += ["--source", str(first), "--source", str(videos[1][0]),
                 "--save", str(tmp_path / "clip.mp4")]
        expected = "--source"
    jsonl = tmp_path / "never.jsonl"
    result = run_command(SCRIPT, *args, "--jsonl", str(jsonl))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not jsonl.exists()


def test_latency_counts_from_capture_not_from_entering_the_pipeline():
    """A frame read 0.5 s before it entered the pipeline (it waited in a queue, or was prepared
    in a worker) counts those 0.5 s."""
    from edgedigits.video.pipeline import FrameJob
    from edgedigits.video.summary import LATENCY, Summary

    frame = np.zeros((4, 4, 3), np.uint8)
    summary = Summary("camera")
    summary.count(FrameJob(0, 0, 0.0, frame, captured=time.perf_counter() - 0.5), [], [])
    assert summary.as_json()[LATENCY]["p50"] >= 500 and LATENCY == "capture_to_result_ms"


def test_stream_paths_and_the_mosaic_grid():
    assert streams.stream_path("run/out.mp4", 3) == "run/out_3.mp4"
    assert streams.stream_path(None, 1) is None
    tiles = [np.full((480, 640, 3), 200, np.uint8), None, np.full((480, 640, 3), 90, np.uint8)]
    grid = streams.mosaic(tiles, ["1: a", "2: b", "3: c"], width=1280)
    assert grid.shape == (960, 1280, 3)  # 2 x 2 tiles of 640x480
    assert grid[100, 300].tolist() == [200] * 3 and grid[100, 900].tolist() == [0] * 3
    assert grid[600, 300].tolist() == [90] * 3


def test_benchmark_streams_measures_one_process_beside_separate_ones(ir_models_dir, tmp_path):
    report = tmp_path / "streams.json"
    result = run_command("infer/benchmark_video.py", "--frames", "20", "--streams", "1,2",
                         "--model", str(ir_models_dir), "--output", str(report))
    assert result.returncode == 0, result.stderr
    rows = json.loads(report.read_text())
    assert sorted(rows) == ["1", "2"]
    for count, row in rows.items():
        one, separate = row["one_process"], row["separate"]
        assert one["processes"] == 1 and separate["processes"] == int(count)
        assert one["frames"] == separate["frames"] == 20 * int(count)
        for figures in (one, separate):
            assert figures["fps_total"] > 0 and figures["memory_mb"] > 50
            assert 0 < figures["cpu_cores"] < 64
            assert 0 < figures["capture_to_result_p50_ms"] <= figures["capture_to_result_p99_ms"]
        assert row["command"].count("--source") == int(count)
    # no speed asserted: a shared machine; the table has a row per count
    assert [line.split()[0] for line in result.stdout.splitlines()[3:]] == ["1", "2"]
    bad = run_command("infer/benchmark_video.py", "--streams", "0,2")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_the_mosaic_window_shows_every_stream_under_xvfb(ir_models_dir, display,  # noqa: F811
                                                        tmp_path):
    """A real X server (Xvfb) and OpenCV's real window: three streams in a 2 x 2 grid of
    640x480 tiles (the fourth dark), each tile labelled. Leaves ``<tmp>/mosaic.png`` (the
    screen) and, with $EDGEDIGITS_SCREENSHOTS=DIR, ``DIR/mosaic.png`` (the window)."""
    name, framebuffer = display
    sources = []
    for seed in range(3):
        path = tmp_path / f"camera{seed}.mp4"
        synthetic.make_video(path, 450, seed=seed)  # 15 s played in real time
        sources += ["--source", str(path)]
    env = {**os.environ, "DISPLAY": name, "WAYLAND_DISPLAY": ""}
    process = subprocess.Popen([sys.executable, str(ROOT / SCRIPT), "--model",
                                str(ir_models_dir), *sources, "--realtime"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    screen = box = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(1.0)
        paper = read_xwd(framebuffer).min(axis=2) > 120
        if paper.sum() > 3 * 150_000:  # three tiles of paper on the screen
            time.sleep(1.5)  # a few more frames, then the screenshot
            screen = read_xwd(framebuffer)
            ys, xs = np.nonzero(screen.min(axis=2) > 120)
            box = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert screen is not None, f"no mosaic appeared: {stderr}"
    cv2.imwrite(str(tmp_path / "mosaic.png"), screen)
    left, top, right, _ = (int(v) for v in box)
    assert abs((right - left) - 1280) <= 8, box  # two 640-px tiles side by side
    window = screen[top : top + 960, left : left + 1280]
    keep = os.environ.get("EDGEDIGITS_SCREENSHOTS")  # e.g. docs/img (git ignores it)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(Path(keep) / "mosaic.png"), window)
    quadrants = [window[y : y + 400, x : x + 600].mean() for y in (40, 520) for x in (20, 660)]
    assert min(quadrants[:3]) > 120 and quadrants[3] < 60, quadrants  # 3 streams, 1 empty
    # each tile's label band at its foot: dark, with white text
    for y, x in ((480, 0), (480, 640), (960, 0)):
        band = window[y - 28 : y - 2, x + 4 : x + 400]
        assert band.mean() < 110 and (band.min(axis=2) > 200).sum() > 50, (y, x)
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 130, stderr
