"""Digits in video: camera/file/stream capture, the frame pipeline, overlays, writers, summary.

The pipeline, so a slow camera never stalls inference and vice versa:

    Capture thread ──frames──► caller's thread: find digits (edgedigits.image.segment)
                                     │ predict_async (AsyncInferQueue) per classifier
                                     ▼
                               callbacks ──► caller's thread, in frame order: draw, write, show

``infer/webcam.py`` is the command around it; ``infer/benchmark_video.py`` times the same code.
No TensorFlow here: a TensorFlow classifier, when asked for, comes in through ``runtime``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedigits import contract, runtime
from edgedigits.errors import UserError
from edgedigits.files import atomic_path, check_outputs, ensure_writable_dir
from edgedigits.image import segment
from edgedigits.image.image import Image
from edgedigits.tasks import MULTI, SINGLE, Prepared, Task, kinds_for

WINDOW = "edgedigits"
FILE_QUEUE_FRAMES = 8  # decoded frames buffered ahead of a file's processing
LIVE_QUEUE_FRAMES = 1  # a camera's frames are dropped, not queued, when processing lags
LIVE_READ_RETRIES = 25  # consecutive failed reads (~0.5 s) before a camera counts as lost
DEFAULT_MAX_DIGITS = 16
MAX_CAMERA_INDEX = 9999  # OpenCV adds the backend to the index: larger ones overflow its int
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
GREEN, RED, YELLOW, WHITE, BLACK = (60, 200, 60), (40, 40, 230), (0, 215, 255), (255,) * 3, (0,) * 3


# --------------------------------------------------------------------------------------------
# Capture, in its own thread


def _camera_backends() -> list[tuple[int, str]]:
    if sys.platform.startswith("linux"):
        return [(cv2.CAP_V4L2, "V4L2"), (cv2.CAP_ANY, "any backend")]
    if sys.platform == "win32":
        return [(cv2.CAP_DSHOW, "DirectShow"), (cv2.CAP_MSMF, "Media Foundation"),
                (cv2.CAP_ANY, "any backend")]
    if sys.platform == "darwin":
        return [(cv2.CAP_AVFOUNDATION, "AVFoundation"), (cv2.CAP_ANY, "any backend")]
    return [(cv2.CAP_ANY, "any backend")]


def open_source(source: str) -> tuple[cv2.VideoCapture, str, bool]:
    """(capture, description, is_live) for a camera index, a video file or a stream URL."""
    tried: list[str] = []
    if source.strip().isdigit():
        index = int(source)
        if index > MAX_CAMERA_INDEX:
            raise UserError(f"no camera {index}: camera indices go up to {MAX_CAMERA_INDEX} "
                            "(use --source FILE or URL for a video)")
        for api, name in _camera_backends():
            capture = cv2.VideoCapture(index, api)
            if capture.isOpened():
                return capture, f"camera {index}", True
            tried.append(f"camera {index} with {name}")
        raise UserError(f"cannot open camera {index} (tried {', '.join(tried)}); is it plugged in "
                        "and free? Use --source FILE or URL for a video")
    if source.lower().startswith(STREAM_PREFIXES):
        for api, name in ((cv2.CAP_FFMPEG, "FFmpeg"), (cv2.CAP_ANY, "any backend")):
            capture = cv2.VideoCapture(source, api)
            if capture.isOpened():
                return capture, source, True
            tried.append(name)
        raise UserError(f"cannot open stream {source} (tried {', '.join(tried)})")
    path = Path(source)
    if not path.exists():
        raise UserError(f"no such video file: {source} (a camera is a number, e.g. --source 0)")
    if not path.is_file():
        raise UserError(f"{source} is not a video file")
    for api, name in ((cv2.CAP_FFMPEG, "FFmpeg"), (cv2.CAP_ANY, "any backend")):
        capture = cv2.VideoCapture(str(path), api)
        if capture.isOpened():
            return capture, str(path), False
        tried.append(name)
    raise UserError(f"cannot open video {source}: not a video OpenCV can decode, or corrupt "
                    f"(tried {', '.join(tried)})")


_END, _LOST = "end", "lost"


class Capture:
    """Reads frames on a background thread, from the moment it is created.

    Files: every frame, in order (the reader waits for processing). Live sources: only the
    newest frame is kept, so processing always works on the present; repeated read failures
    mean the camera was lost. ``realtime`` replays a file as if it were a camera (paced at its
    frame rate, newest frame only), but its end is still the end of a file: "finished", not
    "lost". The end marker never displaces a frame, so the last frame is always delivered.
    """

    def __init__(self, source: str, realtime: bool = False) -> None:
        self._capture, self.description, live = open_source(source)
        self.live = live or realtime  # newest frame only, frames dropped when processing lags
        self._pace = realtime and not live  # replaying a file as if it were a camera
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 1000 else 30.0
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise UserError(f"cannot read any frame from {self.description}")
        self.height, self.width = first.shape[:2]
        self.status = "running"
        size = LIVE_QUEUE_FRAMES if self.live else FILE_QUEUE_FRAMES
        self._queue: queue.Queue = queue.Queue(size)
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._read_loop, args=(first,), name="capture",
                                        daemon=True)
        self._thread.start()

    def _read_loop(self, frame: np.ndarray) -> None:
        index, failures = 0, 0
        while not self._stop.is_set():
            if frame is None:
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    frame = None
                    if self.live and not self._pace and failures < LIVE_READ_RETRIES:
                        failures += 1
                        time.sleep(0.02)
                        continue
                    # Only a live source can be lost; a replayed file simply ended.
                    self._put((_LOST if self.live and not self._pace else _END, None, None))
                    break
            failures = 0
            time_ms = (index * 1000.0 / self.fps if not self.live or self._pace
                       else (time.perf_counter() - self._started) * 1000.0)
            if self._pace:
                delay = self._started + time_ms / 1000.0 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self._put((index, time_ms, frame))
            index += 1
            frame = None
        self._capture.release()

    def _put(self, item: tuple) -> None:
        is_frame = item[2] is not None
        if self.live and is_frame:
            # Keep the newest: drop what processing has not taken yet.
            while True:
                try:
                    self._queue.put_nowait(item)
                    return
                except queue.Full:
                    with suppress(queue.Empty):
                        self._queue.get_nowait()
        # Files, and the end marker of any source: wait for room, so nothing is lost.
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def frames(self):
        """Yield (frame number, time in ms, BGR frame) until the source ends or is lost."""
        while True:
            index, time_ms, frame = self._queue.get()
            if frame is None:
                self.status = "lost" if index == _LOST else "finished"
                return
            yield index, time_ms, frame

    def close(self) -> None:
        self._stop.set()
        with suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=2)


# --------------------------------------------------------------------------------------------
# Per frame: find digits, classify them on every classifier asynchronously


@dataclass(eq=False)
class FrameJob:
    """One frame travelling through the pipeline."""

    sequence: int  # processing order (frames dropped from a live source leave no gap here)
    index: int  # frame number in the source
    time_ms: float
    frame: np.ndarray
    prepared: Prepared | None = None  # what the model reads in this frame (None: nothing)
    roi_box: tuple | None = None  # ROI mode: the box read as one digit
    pending: int = 0
    probabilities: dict = field(default_factory=dict)  # backend -> the model's outputs
    inference_ms: dict = field(default_factory=dict)  # backend -> ms for this frame's batch

    @property
    def has_inputs(self) -> bool:
        return self.prepared is not None and len(self.prepared) > 0


class Pipeline:
    """The task's preparation + asynchronous inference + in-order delivery of finished frames.

    ``roi``: read only a centre box of this fraction of the frame's shorter side, as one digit;
    None reads every digit the model's task finds in the frame (at most ``max_digits`` groups
    of ink, or lines).
    """

    def __init__(self, classifiers: list[runtime.DigitClassifier], roi: float | None,
                 max_digits: int) -> None:
        self.classifiers = classifiers
        self.names = [c.backend for c in classifiers]
        self.task = classifiers[0].reading_task
        self.roi = roi
        self.max_digits = max_digits
        self._finished: queue.Queue = queue.Queue()
        self._waiting: dict[int, FrameJob] = {}
        self._next = 0
        self._lock = threading.Lock()

    def submit(self, sequence: int, index: int, time_ms: float, frame: np.ndarray) -> None:
        job = FrameJob(sequence, index, time_ms, frame)
        if self.roi is not None:
            x, y, w, h = job.roi_box = segment.roi_box(frame.shape, self.roi)
            job.prepared = self.task.prepare(Image(frame[y : y + h, x : x + w]), SINGLE)
        else:
            job.prepared = self.task.prepare(Image(frame), MULTI, max_items=self.max_digits)
        if not job.has_inputs:
            self._finished.put(job)
            return
        job.pending = len(self.classifiers)
        for name, classifier in zip(self.names, self.classifiers, strict=True):
            classifier.predict_async(job.prepared.inputs, self._on_result, (job, name))

    def _on_result(self, result: runtime.AsyncResult) -> None:
        job, name = result.userdata
        job.probabilities[name] = result.probabilities
        job.inference_ms[name] = result.latency_ms
        with self._lock:
            job.pending -= 1
            done = job.pending == 0
        if done:
            self._finished.put(job)

    def ready(self, wait: bool = False):
        """Finished frames in processing order; ``wait`` blocks until everything is delivered."""
        if wait:
            for classifier in self.classifiers:
                classifier.wait_all()
        while True:
            try:
                job = self._finished.get_nowait()
            except queue.Empty:
                break
            self._waiting[job.sequence] = job
        while self._next in self._waiting:
            yield self._waiting.pop(self._next)
            self._next += 1


def warm_up(classifiers: list[runtime.DigitClassifier], roi: bool, max_digits: int,
            verbose: bool = False) -> None:
    """Run every batch size a frame can produce once, so first-run costs stay out of timings."""
    for classifier in classifiers:
        sizes = classifier.reading_task.batch_sizes(SINGLE if roi else MULTI, max_digits)
        classifier.warmup(sizes, use_async=True)
        if verbose:
            print(f"model: {classifier.describe()}", file=sys.stderr)


def compare_model(model: str | None, tf_model: str | None,
                  accept: tuple[str, ...] | None = None) -> Path:
    """The .keras model to run beside ``model`` (an IR or a models folder) for a comparison.

    An IR file's own network is looked for beside it (``<models>/ir/int8/model.xml`` ->
    ``<models>/model.keras``); if none is there, the user must name it: the default models
    folder could hold a different network, and the comparison would silently be meaningless.
    """
    if tf_model:
        return Path(tf_model)
    if not model:
        # the default model of the kinds the caller reads with (the number reader for numbers)
        default = runtime.default_model_for(accept, "tensorflow") if accept else None
        return default or runtime.find_model(None, "tensorflow")
    given = Path(model)
    if given.is_dir():
        return runtime.find_model(given, "tensorflow")
    searched = Path(os.path.abspath(given)).parents[:3]  # not resolve(): IR folders are links
    for folder in searched:
        if (folder / contract.KERAS_FILE).is_file():
            return folder / contract.KERAS_FILE
    raise UserError(f"no {contract.KERAS_FILE} model beside --model {model} (looked in "
                    f"{', '.join(str(f) for f in searched)}); pass --tf-model PATH")


# --------------------------------------------------------------------------------------------
# Deliver: JSON lines, overlay, annotated video, window


def detections(job: FrameJob, names: list[str], task: Task) -> list[dict]:
    """The frame's digits as JSON: the first backend's reading (box, digit, confidence, top3),
    and beside each digit every other backend's digit and confidence (a backend that read
    another number of digits disagrees on every digit: digit -1)."""
    for name, probabilities in job.probabilities.items():
        contract.check_probabilities(probabilities, name)
    readings = {name: task.read(job.prepared, job.probabilities[name]) for name in names}
    primary = readings[names[0]].digits
    found = []
    for index, digit in enumerate(primary):
        item = digit.as_json()
        if job.roi_box is not None:  # the ROI was read as one digit: its box is the ROI's
            item["box"] = [int(v) for v in job.roi_box]
        for other in names[1:]:
            theirs = readings[other].digits
            item[other] = ({"digit": theirs[index].digit,
                            "confidence": theirs[index].confidence}
                           if len(theirs) == len(primary) else {"digit": -1, "confidence": 0.0})
        found.append(item)
    return found


def _agrees(item: dict, names: list[str]) -> bool:
    return all(item[other]["digit"] == item["digit"] for other in names[1:])


def jsonl_record(job: FrameJob, found: list[dict]) -> dict:
    """One line of ``--jsonl``: frame, time_ms, detections, inference_ms per backend."""
    return {"frame": job.index, "time_ms": round(job.time_ms, 3), "detections": found,
            "inference_ms": {k: round(v, 4) for k, v in job.inference_ms.items()}}


def draw(frame: np.ndarray, found: list[dict], names: list[str], fps: float,
         inference_ms: dict, roi_box: tuple | None) -> np.ndarray:
    """A copy of ``frame`` with boxes and digits (green: backends agree, red: they do not)."""
    image = frame.copy()
    # Text and lines sized to the frame (and the window opens at the frame's size): the status
    # line is ~1/25 of the frame's height, 19 px at 480p, 43 px at 1080p.
    scale = max(0.5, image.shape[0] / 480)
    line = max(2, round(2 * scale))
    if roi_box is not None:
        x, y, w, h = roi_box
        cv2.rectangle(image, (x, y), (x + w, y + h), YELLOW, max(1, line // 2), cv2.LINE_AA)
    agree_count = 0
    for item in found:
        x, y, w, h = item["box"]
        agree = _agrees(item, names)
        agree_count += agree
        color = GREEN if agree else RED
        cv2.rectangle(image, (x, y), (x + w, y + h), color, line, cv2.LINE_AA)
        label = f"{item['digit']} {item['confidence']:.0%}"
        for other in names[1:]:
            label += f" | {_short(other)} {item[other]['digit']}"
        draw_text(image, label, (x, max(int(24 * scale), y - int(6 * scale))), scale * 0.8, color)
    status = f"{fps:5.1f} FPS"
    for name in names:
        if name in inference_ms:
            status += f" | {_short(name)} {inference_ms[name]:.2f} ms"
    if len(names) > 1 and found:
        status += f" | agree {agree_count}/{len(found)}"
    # A dark band behind the status line keeps it readable on any background.
    band = image[: int(34 * scale)]
    band[:] = (band * 0.35).astype(np.uint8)
    draw_text(image, status, (int(8 * scale), int(25 * scale)), scale * 0.8, WHITE)
    return image


def _short(backend: str) -> str:
    return {"openvino": "OV", "tensorflow": "TF"}.get(backend, backend)


def draw_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float,
              color: tuple) -> None:
    """Outlined text, readable on light and dark backgrounds."""
    thickness = max(1, round(1.6 * scale))
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, BLACK, thickness + 2,
                cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)


def open_video_writer(staged: Path, target: str, fps: float, width: int,
                      height: int) -> cv2.VideoWriter:
    """An OpenCV writer for ``staged`` (MJPG for .avi, else mp4v); ``target`` names it to users."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if staged.suffix.lower() == ".avi" else "mp4v"))
    video = cv2.VideoWriter(str(staged), fourcc, fps, (width, height))
    if not video.isOpened():
        raise UserError(f"cannot write video {target} (use .mp4 or .avi)")
    return video


def check_video_file(path: Path, target: str, frames: int) -> None:
    """Refuse to publish a video that did not come out whole.

    ``VideoWriter.write`` reports nothing (a full disk gives a truncated, unplayable file), so
    the written file is opened again and its frame count compared with the frames written.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        counted = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
    finally:
        capture.release()
    if counted != frames:
        found = "an unreadable file" if counted < 0 else f"{counted} frames"
        reason = "the disk may be full" if counted < 0 else "frames were lost"
        raise UserError(f"writing video {target} failed ({frames} frames written, {found}; "
                        f"{reason}); the previous {target}, if any, was kept")


def check_display() -> None:
    """Refuse early, in one line, when no window can be opened.

    OpenCV's Qt backend aborts the whole process when $DISPLAY points nowhere, so the window is
    tried once in a throwaway child process first.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display to show the video on ($DISPLAY is not set): use --no-display "
                        "with --save out.mp4 and/or --jsonl out.jsonl")
    prepare_window_system()
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                timeout=30)
        failed = result.returncode != 0
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[0]
    except subprocess.TimeoutExpired:
        failed, reason = True, "opening a window timed out"
    if failed:
        raise UserError(f"cannot open a window ({reason}): use --no-display with --save "
                        "out.mp4 and/or --jsonl out.jsonl")


def _font_folder() -> str | None:
    """A folder of .ttf files for Qt (opencv-python's Qt looks in its own, empty, folder)."""
    import glob
    import importlib.util

    candidates = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF",
                  *sorted(glob.glob("/usr/share/fonts/truetype/*"))[:20]]
    spec = importlib.util.find_spec("matplotlib")  # found, not imported: it ships DejaVu
    if spec and spec.origin:
        candidates.append(os.path.join(os.path.dirname(spec.origin), "mpl-data", "fonts", "ttf"))
    for folder in candidates:
        if glob.glob(os.path.join(folder, "*.ttf")):
            return folder
    return None


def prepare_window_system() -> None:
    """Before the first window: give Qt fonts (else it warns on every start), or silence it."""
    if "QT_QPA_FONTDIR" not in os.environ:
        folder = _font_folder()
        if folder:
            os.environ["QT_QPA_FONTDIR"] = folder
        else:
            os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's console logging (call before the first capture)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read at FFmpeg's first use
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class Window:
    """The live window and its keys: q/Esc quit, s save a snapshot, space pause."""

    def __init__(self, snapshots: Path) -> None:
        self.snapshots = snapshots
        self.quit_requested = False
        self._sized = False
        prepare_window_system()
        try:
            # Resizable, aspect kept, no Qt toolbar: the picture is the whole window.
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO
                            | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as error:
            raise UserError(f"cannot open a window ({error.err}): use --no-display with "
                            "--save and/or --jsonl") from None

    def show(self, image: np.ndarray, frame_index: int) -> None:
        if not self._sized:  # open at the frame's own size, not Qt's default 320x240
            cv2.resizeWindow(WINDOW, image.shape[1], image.shape[0])
            self._sized = True
        cv2.imshow(WINDOW, image)
        self._handle_key(cv2.waitKey(1) & 0xFF, image, frame_index)

    def _handle_key(self, key: int, image: np.ndarray, frame_index: int) -> None:
        if key in (ord("q"), 27):
            self.quit_requested = True
        elif key == ord("s"):
            target = self.snapshots / f"snapshot_{frame_index:06d}.png"
            with atomic_path(target) as staged:
                cv2.imwrite(str(staged), image)
            print(f"saved {target}", file=sys.stderr)
        elif key == ord(" "):
            held = image.copy()
            draw_text(held, "PAUSED - space to resume", (8, held.shape[0] - 12), 0.6, YELLOW)
            cv2.imshow(WINDOW, held)
            while not self.quit_requested:  # hold the last frame until space again
                key = cv2.waitKey(50) & 0xFF
                if key == ord(" "):
                    break
                if key in (ord("q"), 27):
                    self.quit_requested = True
                elif key == ord("s"):
                    self._handle_key(key, image, frame_index)

    def close(self) -> None:
        cv2.destroyAllWindows()


# --------------------------------------------------------------------------------------------
# The run and its summary


@dataclass
class BackendStats:
    name: str
    batches: int = 0
    digits: int = 0
    total_ms: float = 0.0

    def as_json(self) -> dict:
        return {"batches": self.batches, "digits": self.digits,
                "mean_inference_ms": round(self.total_ms / self.batches, 4) if self.batches
                else None}


@dataclass
class Summary:
    source: str
    status: str = "running"  # finished | lost | stopped
    frames: int = 0
    frames_with_digits: int = 0
    digits: int = 0
    agreements: int = 0
    seconds: float = 0.0
    backends: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def count(self, job: FrameJob, found: list[dict], names: list[str]) -> None:
        """Add one delivered frame."""
        self.frames += 1
        if found:
            self.frames_with_digits += 1
            self.digits += len(found)
            self.agreements += sum(_agrees(item, names) for item in found)
        for name, ms in job.inference_ms.items():
            stats = self.backends[name]
            stats.batches += 1
            stats.digits += len(found)
            stats.total_ms += ms

    def as_json(self) -> dict:
        data = {"source": self.source, "status": self.status, "frames": self.frames,
                "frames_with_digits": self.frames_with_digits, "digits": self.digits,
                "seconds": round(self.seconds, 4), "fps": round(self.fps, 2),
                "backends": {name: stats.as_json() for name, stats in self.backends.items()}}
        if len(self.backends) > 1:
            data["agreement"] = round(self.agreements / self.digits, 4) if self.digits else None
        return data

    def text(self) -> str:
        parts = [f"{self.source}: {self.status} after {self.frames} frames in "
                 f"{self.seconds:.2f} s = {self.fps:.1f} frames/s, "
                 f"{self.digits} digits in {self.frames_with_digits} frames"]
        for name, stats in self.backends.items():
            mean = stats.as_json()["mean_inference_ms"]
            parts.append(f"{name}: mean inference {mean:.3f} ms per frame" if mean is not None
                         else f"{name}: no inference")
        if len(self.backends) > 1 and self.digits:
            parts.append(f"agreement {self.agreements / self.digits:.1%}")
        return " | ".join(parts)


@dataclass
class Outputs:
    """Where a run's results go, besides its summary."""

    jsonl: str | None = None  # one JSON line per frame
    save: str | None = None  # the annotated video
    display: bool = False  # a live window
    snapshots: Path = Path(".")  # where the window's `s` key saves
    summary_json: str | None = None  # the end-of-run summary, written by the caller

    def check(self, source: str | None = None) -> None:
        """Fail before the run, not after it, when an output would destroy something (a folder,
        the input video, another output) or its folder cannot be written."""
        source_file = source if source and Path(source).exists() else None
        check_outputs(files={"--jsonl": self.jsonl, "--save": self.save,
                             "--summary-json": self.summary_json},
                      inputs={"--source": source_file})
        for output in (self.jsonl, self.save, self.summary_json):
            if output:
                ensure_writable_dir(Path(output).parent)


def run_source(args, source: str, outputs: Outputs, roi: float | None = None,
               max_digits: int = DEFAULT_MAX_DIGITS, realtime: bool = False,
               tf_model: Path | None = None, max_frames: int | None = None) -> Summary:
    """What ``webcam.py`` runs once its flags are checked: load the classifier from the runtime
    flags in ``args`` (and TensorFlow's ``tf_model`` beside it), warm both up for every batch
    a frame can produce, open ``source``, run the pipeline. The benchmark calls this too."""
    # finding digits anywhere reads whole numbers: any kind that reads several is welcome
    accept = kinds_for(SINGLE if roi is not None else MULTI)
    classifiers = [runtime.load_from_args(args, accept=accept)]
    if tf_model is not None:
        classifiers.append(runtime.load_classifier(tf_model, "tensorflow", threads=args.threads,
                                                   verbose=args.verbose,
                                                   accept=(classifiers[0].model_type,)))
    warm_up(classifiers, roi is not None, max_digits, verbose=args.verbose)
    # opened after the models, as a replayed file's clock starts when it opens
    capture = Capture(str(source), realtime=realtime)
    return run_pipeline(capture, classifiers, outputs, roi=roi, max_digits=max_digits,
                        max_frames=max_frames)


def run_pipeline(capture: Capture, classifiers: list[runtime.DigitClassifier],
                 outputs: Outputs, roi: float | None = None,
                 max_digits: int = DEFAULT_MAX_DIGITS, max_frames: int | None = None) -> Summary:
    """Run until the source ends or is lost, the user quits, or ``max_frames`` were processed.

    Takes ownership of ``capture`` and ``classifiers`` and closes them. The timing starts at the
    first frame (model loading is the caller's, before). Output files appear only on success.

    OpenCV runs single-threaded meanwhile: the pipeline is already parallel (capture thread,
    this thread, OpenVINO's inference threads), and OpenCV's own worker threads for operations
    on a 320x240 image only fight them for the cores (guard video, tutorial FP32: 385 -> 597
    frames/s on this 2-core machine, the same readings).
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return _run_pipeline(capture, classifiers, outputs, roi, max_digits, max_frames)
    finally:
        cv2.setNumThreads(threads)


def _run_pipeline(capture: Capture, classifiers: list[runtime.DigitClassifier],
                  outputs: Outputs, roi: float | None, max_digits: int,
                  max_frames: int | None) -> Summary:
    with ExitStack() as stack:
        stack.callback(capture.close)
        for classifier in classifiers:
            stack.callback(classifier.close)
        jsonl = video = window = None
        if outputs.jsonl:
            staged = stack.enter_context(atomic_path(outputs.jsonl))
            jsonl = stack.enter_context(open(staged, "w", encoding="utf-8"))
        video_frames = 0
        if outputs.save:
            staged_video = stack.enter_context(atomic_path(outputs.save))
            video = open_video_writer(staged_video, outputs.save, capture.fps, capture.width,
                                      capture.height)
            stack.callback(video.release)
        if outputs.display:
            window = Window(outputs.snapshots)
            stack.callback(window.close)

        pipeline = Pipeline(classifiers, roi, max_digits)
        names = pipeline.names
        summary = Summary(capture.description,
                          backends={name: BackendStats(name) for name in names})
        annotate = video is not None or window is not None
        fps = 0.0
        last_delivered = None
        started = time.perf_counter()

        def deliver(job: FrameJob) -> None:
            nonlocal fps, last_delivered, video_frames
            now = time.perf_counter()
            if last_delivered is not None:  # smoothed rate of delivered frames
                instant = 1.0 / max(now - last_delivered, 1e-6)
                fps = instant if fps == 0 else 0.9 * fps + 0.1 * instant
            last_delivered = now
            found = detections(job, names, pipeline.task) if job.has_inputs else []
            summary.count(job, found, names)
            if jsonl is not None:
                jsonl.write(json.dumps(jsonl_record(job, found)) + "\n")
            if annotate:
                roi_box = segment.roi_box(job.frame.shape, roi) if roi is not None else None
                image = draw(job.frame, found, names, fps, job.inference_ms, roi_box)
                if video is not None:
                    video.write(image)
                    video_frames += 1
                if window is not None:
                    window.show(image, job.index)

        def quit_requested() -> bool:
            return window is not None and window.quit_requested

        for sequence, (index, time_ms, frame) in enumerate(capture.frames()):
            pipeline.submit(sequence, index, time_ms, frame)
            for job in pipeline.ready():
                deliver(job)
            if quit_requested() or (max_frames and sequence + 1 >= max_frames):
                break
        for job in pipeline.ready(wait=True):
            deliver(job)
        summary.seconds = time.perf_counter() - started
        summary.status = capture.status if capture.status != "running" else "stopped"
        if jsonl is not None:
            jsonl.flush()
            os.fsync(jsonl.fileno())
        if video is not None:
            video.release()  # finish the file now, to check it before it is published
            check_video_file(staged_video, outputs.save, video_frames)
    return summary
