"""Digits in video: the frame pipeline, its outputs and the run's summary.

Capture lives in :mod:`edgedigits.video.capture`, the overlay, video writer and window in
:mod:`edgedigits.video.display` (both re-exported here, the names ``webcam.py`` uses).

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
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedigits import contract, runtime
from edgedigits.errors import UserError
from edgedigits.files import atomic_path, check_outputs, ensure_writable_dir
from edgedigits.image import segment
from edgedigits.tasks import MULTI, SINGLE, Prepared, Task
from edgedigits.video.capture import Capture, open_source  # noqa: F401 (the module's API)
from edgedigits.video.display import (  # noqa: F401 (the module's API)
    Window,
    agrees,
    check_display,
    check_video_file,
    draw,
    draw_text,
    open_video_writer,
    prepare_window_system,
    quiet_opencv,
)
from edgedigits.video.preparers import prepare_frame
from edgedigits.video.summary import BackendStats, Summary

DEFAULT_MAX_DIGITS = 16


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
    captured: float | None = None  # perf_counter when the frame was read (the latency's start)
    started: float = field(default_factory=time.perf_counter)  # submitted

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
                 max_digits: int, notify: threading.Event | None = None) -> None:
        self.classifiers = classifiers
        self.names = [c.backend for c in classifiers]
        self.task = classifiers[0].reading_task
        self.roi = roi
        self.max_digits = max_digits
        self._finished: queue.Queue = queue.Queue()
        self._waiting: dict[int, FrameJob] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._notify = notify  # set when a frame is finished (several streams share a loop)
        self.submitted = 0

    @property
    def in_flight(self) -> int:
        """Frames submitted and not yet delivered by :meth:`ready`."""
        return self.submitted - self._next

    def submit(self, sequence: int, index: int, time_ms: float, frame: np.ndarray | None,
               captured: float | None = None, prepared: Prepared | None = None,
               roi_box: tuple | None = None, defer: bool = False) -> FrameJob | None:
        """Prepare the frame (unless ``prepared`` was, elsewhere, with ``roi_box``) and queue
        its inference; ``frame`` may then be None when nothing draws it. ``defer``: return
        the job with inputs instead, for the caller to infer (with other streams' frames) and
        hand each result to :meth:`on_result`."""
        job = FrameJob(sequence, index, time_ms, frame, captured=captured)
        self.submitted += 1
        if prepared is not None:
            job.prepared, job.roi_box = prepared, roi_box
        else:
            job.prepared, job.roi_box = prepare_frame(self.task, frame, self.roi,
                                                      self.max_digits)
        if not job.has_inputs:
            self._finished.put(job)
            return None
        job.pending = len(self.classifiers)
        if defer:
            return job
        for name, classifier in zip(self.names, self.classifiers, strict=True):
            classifier.predict_async(job.prepared.inputs, self.on_result, (job, name))
        return None

    def on_result(self, result: runtime.AsyncResult) -> None:
        """One backend's outputs for a frame (``userdata``: (job, backend name))."""
        job, name = result.userdata
        job.probabilities[name] = result.probabilities
        job.inference_ms[name] = result.latency_ms
        with self._lock:
            job.pending -= 1
            done = job.pending == 0
        if done:
            self._finished.put(job)
            if self._notify is not None:
                self._notify.set()

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


def jsonl_record(job: FrameJob, found: list[dict], source: str | None = None,
                 stream: int | None = None) -> dict:
    """One line of ``--jsonl``: [stream (several sources), source (as given),] frame, time_ms,
    detections, inference_ms per backend."""
    record: dict = {} if stream is None else {"stream": stream}
    if source is not None:
        record["source"] = source
    record.update({"frame": job.index, "time_ms": round(job.time_ms, 3), "detections": found,
                   "inference_ms": {k: round(v, 4) for k, v in job.inference_ms.items()}})
    return record


# --------------------------------------------------------------------------------------------
# The run and its summary


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


def run_source(classifiers: list[runtime.DigitClassifier], source: str, outputs: Outputs,
               roi: float | None = None, max_digits: int = DEFAULT_MAX_DIGITS,
               realtime: bool = False, max_frames: int | None = None,
               verbose: bool = False) -> Summary:
    """What ``webcam.py`` runs once its flags are checked and its model(s) loaded: warm the
    classifiers up for every batch a frame can produce, open ``source``, run the pipeline.
    The benchmark calls this too."""
    warm_up(classifiers, roi is not None, max_digits, verbose=verbose)
    # opened after the models, as a replayed file's clock starts when it opens
    capture = Capture(str(source), realtime=realtime)
    return run_pipeline(capture, classifiers, outputs, roi=roi, max_digits=max_digits,
                        max_frames=max_frames)


def reading_mode(roi: float | None) -> str:
    """A ROI is read as one digit; a whole frame is searched (any kind that reads several)."""
    return SINGLE if roi is not None else MULTI


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


class StreamRun:
    """One stream's frames from its Pipeline to its outputs: JSON lines (``jsonl``, an open
    file, shared by several streams), the annotated video (``save``: staged in ``stack``,
    published when the stack closes without error, after :meth:`finish` checked it), a window
    (``show(image, frame index)``) and its :class:`Summary`. ``stream``: its number when
    several sources run in one process (it then goes in every JSON line)."""

    def __init__(self, stack: ExitStack, capture: Capture,
                 classifiers: list[runtime.DigitClassifier], roi: float | None,
                 max_digits: int, jsonl=None, save: str | None = None, show=None,
                 stream: int | None = None, notify: threading.Event | None = None) -> None:
        self.capture = capture
        self.pipeline = Pipeline(classifiers, roi, max_digits, notify)
        self.names = self.pipeline.names
        self.summary = Summary(capture.description if stream is None else capture.source,
                               backends={name: BackendStats(name) for name in self.names},
                               stream=stream)
        self.roi, self.jsonl, self.show, self.stream, self.save = roi, jsonl, show, stream, save
        self.video = None
        if save:
            self.staged_video = stack.enter_context(atomic_path(save))
            self.video = open_video_writer(self.staged_video, save, capture.fps, capture.width,
                                           capture.height)
            stack.callback(self.video.release)
        self.annotate = self.video is not None or show is not None
        self.fps = 0.0
        self.last_image: np.ndarray | None = None
        self._last_delivered: float | None = None
        self._interval: float | None = None  # smoothed seconds between delivered frames
        self._video_frames = 0

    def submit(self, index: int, time_ms: float, frame: np.ndarray | None,
               captured: float | None = None, prepared: Prepared | None = None,
               roi_box: tuple | None = None, defer: bool = False) -> FrameJob | None:
        return self.pipeline.submit(self.pipeline.submitted, index, time_ms, frame, captured,
                                    prepared, roi_box, defer)

    def deliver_ready(self, wait: bool = False) -> int:
        delivered = 0
        for job in self.pipeline.ready(wait):
            self.deliver(job)
            delivered += 1
        return delivered

    def deliver(self, job: FrameJob) -> None:
        now = time.perf_counter()
        if self._last_delivered is not None:
            # The rate of delivered frames: one over the smoothed interval (smoothing the
            # instant rates instead counts frames delivered together as thousands per second:
            # 30 frames/s cameras showed 95-207 FPS in the mosaic)
            interval = now - self._last_delivered
            self._interval = (interval if self._interval is None
                              else 0.9 * self._interval + 0.1 * interval)
            self.fps = 1.0 / max(self._interval, 1e-6)
        self._last_delivered = now
        found = detections(job, self.names, self.pipeline.task) if job.has_inputs else []
        self.summary.count(job, found, self.names)
        if self.jsonl is not None:
            record = jsonl_record(job, found, self.capture.source, self.stream)
            self.jsonl.write(json.dumps(record) + "\n")
        if self.annotate:
            roi = self.roi
            roi_box = segment.roi_box(job.frame.shape, roi) if roi is not None else None
            image = draw(job.frame, found, self.names, self.fps, job.inference_ms, roi_box)
            if self.video is not None:
                self.video.write(image)
                self._video_frames += 1
            if self.show is not None:
                self.last_image = image
                self.show(image, job.index)

    def finish(self, seconds: float) -> None:
        """The stream's status and time; its video finished and checked whole."""
        self.summary.seconds = seconds
        status = self.capture.status
        self.summary.status = status if status != "running" else "stopped"
        if self.video is not None:
            self.video.release()  # finish the file now, to check it before it is published
            check_video_file(self.staged_video, self.save, self._video_frames)
            self.video = None


def open_jsonl(stack: ExitStack, path: str | None):
    """The ``--jsonl`` file, staged in ``stack`` (published when it closes without error)."""
    if not path:
        return None
    staged = stack.enter_context(atomic_path(path))
    return stack.enter_context(open(staged, "w", encoding="utf-8"))


def close_jsonl(jsonl) -> None:
    if jsonl is not None:
        jsonl.flush()
        os.fsync(jsonl.fileno())


def _run_pipeline(capture: Capture, classifiers: list[runtime.DigitClassifier],
                  outputs: Outputs, roi: float | None, max_digits: int,
                  max_frames: int | None) -> Summary:
    with ExitStack() as stack:
        stack.callback(capture.close)
        for classifier in classifiers:
            stack.callback(classifier.close)
        jsonl = open_jsonl(stack, outputs.jsonl)
        window = None
        if outputs.display:
            window = Window(outputs.snapshots)
            stack.callback(window.close)
        run = StreamRun(stack, capture, classifiers, roi, max_digits, jsonl=jsonl,
                        save=outputs.save, show=window.show if window is not None else None)
        started = time.perf_counter()
        for index, time_ms, frame, captured in capture.frames():
            run.submit(index, time_ms, frame, captured)
            run.deliver_ready()
            if (window is not None and window.quit_requested) or (
                    max_frames and run.pipeline.submitted >= max_frames):
                break
        run.deliver_ready(wait=True)
        seconds = time.perf_counter() - started
        close_jsonl(jsonl)
        run.finish(seconds)
    return run.summary
