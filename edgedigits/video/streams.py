"""Several video streams through one model in one process (``webcam.py --source A --source B``).

    preparing processes (edgedigits.video.preparers; one per core, at most one per stream):
        a capture thread per source, the model's task preparing each frame
        ──prepared frames──► one loop on the caller's thread: the frames of every stream that
        are ready, their digits in one shared batch, predict_async on the *shared*
        classifier(s) (one compiled model, its infer requests serving every stream)
    callbacks ──► each frame's rows back to its stream; the same loop delivers each stream's
        frames in that stream's own order to its outputs (JSON lines tagged with stream and
        source, OUT_<n>.mp4, a mosaic window)

``workers=0`` captures and prepares in this process instead (one core of preparation, as
before the preparing processes); ``batch=False`` gives each frame its own inference request.

One stream's trouble is its own: a source that cannot be opened, ends or is lost is reported
once, in one line naming it, and the others go on. Frames are taken from the streams in turn
without waiting on any one of them, so a slow or silent camera holds no other stream up (a live
source keeps only its newest frame, as with one stream).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from edgedigits import runtime
from edgedigits.errors import UserError
from edgedigits.video.capture import Capture
from edgedigits.video.display import WHITE, Window, draw_text
from edgedigits.video.pipeline import (
    DEFAULT_MAX_DIGITS,
    FrameJob,
    Outputs,
    Pipeline,
    StreamRun,
    close_jsonl,
    open_jsonl,
    reading_mode,
    warm_up,
)
from edgedigits.video.preparers import Preparers, default_workers
from edgedigits.video.summary import BackendStats, StreamsSummary, Summary

MOSAIC_WIDTH = 1280  # the mosaic window's width in pixels (tiles keep the frames' aspect)
SHOW_EVERY_S = 1 / 30  # the mosaic is redrawn at most this often


def stream_path(path: str | None, stream: int) -> str | None:
    """OUT.mp4 -> OUT_<stream>.mp4: each stream's own annotated video."""
    if not path:
        return None
    given = Path(path)
    return str(given.with_name(f"{given.stem}_{stream}{given.suffix}"))


def check_outputs(outputs: Outputs, sources: list[str]) -> None:
    """:meth:`Outputs.check` for every stream's video, against every source file."""
    for number in range(1, len(sources) + 1):
        for source in sources:  # no stream's video may overwrite any source
            Outputs(jsonl=outputs.jsonl, save=stream_path(outputs.save, number),
                    summary_json=outputs.summary_json).check(source)
    saves = [stream_path(outputs.save, n) for n in range(1, len(sources) + 1)]
    if outputs.save and {outputs.jsonl, outputs.summary_json} & set(saves):
        raise UserError("--jsonl and --summary-json must differ from every stream's --save "
                        f"video ({', '.join(saves)})")


def mosaic(tiles: list[np.ndarray | None], labels: list[str], width: int = MOSAIC_WIDTH,
           aspect: float = 4 / 3) -> np.ndarray:
    """The streams' latest annotated frames in a grid, each labelled at its foot (a stream
    with no frame yet is a dark tile with its label)."""
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    tile_w = width // columns
    tile_h = round(tile_w / aspect)
    grid = np.zeros((rows * tile_h, columns * tile_w, 3), np.uint8)
    scale = max(0.5, tile_h / 480)
    for number, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        top, left = (number // columns) * tile_h, (number % columns) * tile_w
        cell = grid[top : top + tile_h, left : left + tile_w]
        if tile is not None:
            cell[:] = cv2.resize(tile, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        band = cell[tile_h - int(30 * scale):]
        band[:] = (band * 0.35).astype(np.uint8)
        draw_text(cell, label, (int(8 * scale), tile_h - int(9 * scale)), scale * 0.7, WHITE)
        cv2.rectangle(grid, (left, top), (left + tile_w - 1, top + tile_h - 1), (90, 90, 90), 1)
    return grid


class _Mosaic:
    """The window of several streams: a grid of their latest annotated frames."""

    def __init__(self, window: Window, runs: list[StreamRun]) -> None:
        self.window, self.runs = window, runs
        self._shown = 0.0
        self._count = 0

    def show(self, image: np.ndarray, frame_index: int) -> None:
        now = time.perf_counter()
        if now - self._shown < SHOW_EVERY_S:
            return
        self._shown = now
        labels = [f"{run.stream}: {_short(run.capture.source)}"
                  + (f" ({run.summary.status})" if run.summary.status != "running" else "")
                  for run in self.runs]
        first = next((r.capture for r in self.runs), None)
        aspect = first.width / first.height if first is not None else 4 / 3
        self._count += 1
        self.window.show(mosaic([r.last_image for r in self.runs], labels, aspect=aspect),
                         self._count)


def _short(source: str) -> str:
    """A file's name (its folders would not fit a tile); cameras and URLs as given."""
    return source if source.isdigit() or "://" in source else Path(source).name


def infer_together(jobs: list[tuple[Pipeline, FrameJob]],
                   classifiers: list[runtime.DigitClassifier], limit: int) -> None:
    """Frames of several streams as shared inference requests: their inputs in batches of at
    most ``limit`` (the largest batch one frame can make: warmed up), each result split back
    to its stream's pipeline."""
    batch: list[tuple[Pipeline, FrameJob]] = []
    size = 0
    for pipeline, job in jobs:
        if batch and size + len(job.prepared) > limit:
            _infer_batch(batch, classifiers)
            batch, size = [], 0
        batch.append((pipeline, job))
        size += len(job.prepared)
    if batch:
        _infer_batch(batch, classifiers)


def _infer_batch(batch: list[tuple[Pipeline, FrameJob]],
                 classifiers: list[runtime.DigitClassifier]) -> None:
    inputs = (batch[0][1].prepared.inputs if len(batch) == 1
              else np.concatenate([job.prepared.inputs for _, job in batch]))
    for classifier in classifiers:
        classifier.predict_async(inputs, _split, (batch, classifier.backend))


def _split(result: runtime.AsyncResult) -> None:
    """A shared batch's outputs, each frame's rows to its own pipeline (the frame's inference
    time is the batch's)."""
    batch, name = result.userdata
    start = 0
    for pipeline, job in batch:
        end = start + len(job.prepared)
        pipeline.on_result(runtime.AsyncResult(result.probabilities[start:end],
                                               result.latency_ms, (job, name)))
        start = end


def report(message: str) -> None:
    """One line on stderr about one stream (the others go on)."""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr, flush=True)


def run_sources(classifiers: list[runtime.DigitClassifier], sources: list[str],
                outputs: Outputs, roi: float | None = None,
                max_digits: int = DEFAULT_MAX_DIGITS, realtime: bool = False,
                max_frames: int | None = None, verbose: bool = False,
                say: Callable[[str], None] = report,
                workers: int | None = None, batch: bool = True) -> StreamsSummary:
    """Every source through the same classifier(s) until each ends, is lost or has given
    ``max_frames`` frames, or the user quits. A source that cannot be opened is said (``say``)
    and counted "failed"; if none opens, UserError. Takes ownership of the classifiers.

    ``workers``: processes capturing and preparing the streams' frames
    (:mod:`edgedigits.video.preparers`; default one per core, at most one per stream); 0
    captures and prepares them in this process's loop."""
    warm_up(classifiers, roi is not None, max_digits, verbose=verbose)
    if workers is None:
        workers = default_workers(len(sources))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as with one stream: the pipeline is already parallel
    try:
        return _run(classifiers, sources, outputs, roi, max_digits, realtime, max_frames, say,
                    workers, verbose, batch)
    finally:
        cv2.setNumThreads(threads)


def _open_here(stack: ExitStack, sources: list[str], realtime: bool, wake: threading.Event):
    """Each source's Capture in this process (or None), and why the others failed."""
    captures: list[Capture | None] = []
    failed: dict[int, str] = {}
    for number, source in enumerate(sources, 1):
        try:
            capture = Capture(source, realtime=realtime, notify=wake, timeouts=True)
        except UserError as error:
            failed[number] = str(error)
            captures.append(None)
            continue
        stack.callback(capture.close)
        captures.append(capture)
    return captures, failed


def _run(classifiers, sources, outputs, roi, max_digits, realtime, max_frames, say, workers,
         verbose, batch) -> StreamsSummary:
    names = [c.backend for c in classifiers]
    wake = threading.Event()  # a frame was captured or finished somewhere
    with ExitStack() as stack:
        for classifier in classifiers:
            stack.callback(classifier.close)
        window = mosaic_view = None
        if outputs.display:  # before the preparing processes start: opened after them, Qt's
            # window stayed unmapped under X (imshow called, nothing on the screen)
            window = Window(outputs.snapshots)
            stack.callback(window.close)
        preparers = None
        if workers:
            preparers = Preparers(sources, classifiers[0].reading_task.model_type, roi,
                                  max_digits, realtime, max_frames,
                                  send_frames=outputs.display or bool(outputs.save),
                                  workers=workers, notify=wake, quiet=not verbose, say=say)
            stack.callback(preparers.close)
            captures = [preparers.opened.get(n) for n in range(1, len(sources) + 1)]
            reasons = preparers.failed
        else:
            captures, reasons = _open_here(stack, sources, realtime, wake)
        failed = {number: Summary(sources[number - 1], status="failed", stream=number,
                                  error=error, backends={n: BackendStats(n) for n in names})
                  for number, error in sorted(reasons.items())}
        problems = [f"stream {n} ({s.source}) not opened: {s.error}" for n, s in failed.items()]
        if not any(captures):
            raise UserError(f"none of the {len(sources)} sources could be opened: "
                            + "; ".join(problems))
        for problem in problems:
            say(problem)
        jsonl = open_jsonl(stack, outputs.jsonl)
        runs: list[StreamRun] = []
        for number, capture in enumerate(captures, 1):
            if capture is not None:
                runs.append(StreamRun(stack, capture, classifiers, roi, max_digits,
                                      jsonl=jsonl, save=stream_path(outputs.save, number),
                                      stream=number, notify=wake))
        if window is not None:
            mosaic_view = _Mosaic(window, runs)
            for run in runs:
                run.show = mosaic_view.show
                run.annotate = True

        started = time.perf_counter()
        active = list(runs)

        def end(run: StreamRun) -> None:
            active.remove(run)
            run.finish(time.perf_counter() - started)
            # a lost stream is always said; a file's end only while other streams go on
            if run.summary.status == "lost" or (run.summary.status == "finished" and active):
                say(f"stream {run.stream} ({run.capture.source}) {run.summary.status} after "
                    f"{run.summary.frames} frames"
                    + ("; the other streams go on" if active else ""))

        limit = max(classifiers[0].reading_task.batch_sizes(reading_mode(roi), max_digits))
        while active and not (window is not None and window.quit_requested):
            wake.clear()
            submitted = False
            together = []  # this round's frames with digits, inferred as one batch
            for run in list(active):
                full = max_frames is not None and run.pipeline.submitted >= max_frames
                item = None if full else run.capture.poll()
                if item is not None:
                    job = run.submit(*item, defer=batch)
                    if job is not None:
                        together.append((run.pipeline, job))
                    submitted = True
                run.deliver_ready()
                ended = full or run.capture.status != "running"
                if ended and run.pipeline.in_flight == 0:
                    end(run)
            infer_together(together, classifiers, limit)
            if not submitted:
                # Nothing new to prepare: sleep until a frame is captured or finished somewhere
                # (never spin: a spinning loop holds the GIL the inference callbacks need).
                wake.wait(0.05)
        for classifier in classifiers:
            classifier.wait_all()
        for run in list(active):
            run.deliver_ready()
            end(run)
        seconds = time.perf_counter() - started
        close_jsonl(jsonl)
    by_number = {run.stream: run.summary for run in runs} | failed
    return StreamsSummary([by_number[n] for n in range(1, len(sources) + 1)], seconds=seconds,
                          workers_memory_mb=preparers.peak_memory_mb if preparers else [])
