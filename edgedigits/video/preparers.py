"""Preparation worker processes: several streams' frames decoded and prepared on every core.

With several sources in one process, one Python thread preparing every stream's frames (the
task's segmentation, mostly under the GIL) caps the process at one core of preparation, while
one compiled model in the main process has time to spare. So, as DL Streamer's decode and
pre-processing elements run beside one shared inference element:

    worker process 1: capture threads of streams 1, 3, ... ──► the model's task prepares
    worker process 2: capture threads of streams 2, 4, ... ──► each frame (no OpenVINO here)
        │ a pipe per worker: the model's inputs (K x 28 x 28) and what maps them back
        ▼    (the frame itself only when it is drawn: --save, the window)
    main process: a reader thread per worker ──► one queue per stream (:class:`RemoteCapture`,
        read like :class:`~edgedigits.video.capture.Capture`) ──► the one compiled model

Each stream lives in exactly one worker, which prepares its frames in capture order, and a pipe
keeps order: every stream keeps its own frame order, and its frames are prepared by the same
code as when it runs alone (the same records). A worker that is too far ahead waits on its
pipe (files), a live source keeps only its newest frame as with one stream. Workers are
started with "spawn" (also what Windows and macOS do) and import no runtime, only OpenCV,
numpy and the task layer.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection

import cv2
import numpy as np

from edgedigits import system
from edgedigits.errors import UserError
from edgedigits.image import segment
from edgedigits.image.image import Image
from edgedigits.tasks import MULTI, SINGLE, get_task
from edgedigits.video.capture import Capture, FrameQueue

FILE_QUEUE_FRAMES = 4  # prepared frames of a file waiting in the main process, per stream
# A live source's prepared frames waiting there: its worker already kept only the newest, so
# dropping again at the first jitter wastes preparation (8 cameras --realtime, load ~16, 3
# rounds: 1 kept 177-203 / 264-269 / 229-263 of each stream's 300 frames, 2 kept 263-291 /
# 279-283 / 228-273)
LIVE_PREPARED_FRAMES = 2
STOP_JOIN_S = 5  # a worker gets this long to close its captures before it is terminated


def default_workers(streams: int) -> int:
    """One preparing process per core this process may use, at most one per stream."""
    return max(1, min(streams, system.usable_cores()))


def prepare_frame(task, frame: np.ndarray, roi, max_digits: int) -> tuple:
    """The task's inputs for one frame, and the ROI box they were cut from (None without
    ``--roi``): one digit inside the box, else every digit of the frame (at most
    ``max_digits``). The single-stream pipeline and the preparing processes both use it."""
    if roi is None:
        return task.prepare(Image(frame), MULTI, max_items=max_digits), None
    x, y, w, h = roi_box = segment.roi_box(frame.shape, roi)
    return task.prepare(Image(frame[y : y + h, x : x + w]), SINGLE), roi_box


# --------------------------------------------------------------------------------------------
# In the worker process


def _light_image(image):
    """The prepared frame's Image without its pixels: reading maps boxes back with its scale
    alone, and the pixels (the whole frame) are not worth a copy through the pipe."""
    return Image(np.zeros((1, 1), np.uint8), scale=image.scale, name=image.name)


def _work(connection: Connection, assigned: list[tuple[int, str]], model_type: str,
          roi: float | None, max_digits: int, realtime: bool, max_frames: int | None,
          send_frames: bool, quiet: bool, stop) -> None:
    """A worker's life: open its streams, then prepare and send their frames until each ends,
    ``max_frames``, or ``stop``."""
    cv2.setNumThreads(1)  # as in the main process: the pipeline is the parallelism
    if quiet:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    task = get_task(model_type)
    wake = threading.Event()
    captures: dict[int, Capture] = {}
    try:
        for stream, source in assigned:
            try:
                capture = Capture(source, realtime=realtime, notify=wake, timeouts=True)
            except UserError as error:
                connection.send(("failed", stream, str(error)))
                continue
            captures[stream] = capture
            connection.send(("opened", stream, capture.description, capture.fps, capture.width,
                             capture.height, capture.live))
        connection.send(("ready",))
        sent = dict.fromkeys(captures, 0)
        while captures and not stop.is_set():
            wake.clear()
            prepared_any = False
            for stream, capture in list(captures.items()):
                item = capture.poll()
                if item is not None:
                    index, time_ms, frame, captured = item
                    prepared, roi_box = prepare_frame(task, frame, roi, max_digits)
                    prepared.image = _light_image(prepared.image)
                    connection.send(("frame", stream, index, time_ms,
                                     frame if send_frames else None, captured, prepared,
                                     roi_box))
                    sent[stream] += 1
                    prepared_any = True
                if max_frames is not None and sent[stream] >= max_frames:
                    capture.close()  # the main process stops the stream; no more reading
                    del captures[stream]
                elif capture.status != "running":
                    connection.send(("end", stream, capture.status))
                    capture.close()
                    del captures[stream]
            if not prepared_any:
                wake.wait(0.05)
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        pass  # the main process has gone or stopped us: nothing to tell it
    except Exception as error:  # said by the main process, for each of this worker's streams
        with suppress(OSError):
            connection.send(("crashed", f"{type(error).__name__}: {error}"))
    finally:
        for capture in captures.values():
            capture.close()
        with suppress(OSError):  # the last word: this process's peak memory, for the summary
            connection.send(("memory", system.peak_memory_mb()))
        connection.close()


# --------------------------------------------------------------------------------------------
# In the main process


class RemoteCapture:
    """A stream prepared in a worker, read like :class:`~edgedigits.video.capture.Capture`:
    ``poll()`` gives its next prepared frame without waiting, ``status`` says how it ended."""

    def __init__(self, source: str, description: str, fps: float, width: int, height: int,
                 live: bool, notify: threading.Event) -> None:
        self.source, self.description = source, description
        self.fps, self.width, self.height, self.live = fps, width, height, live
        self.status = "running"
        self._queue = FrameQueue(LIVE_PREPARED_FRAMES if live else FILE_QUEUE_FRAMES, live,
                                 notify)

    def put(self, item: tuple) -> None:
        """From the reader thread: a prepared frame, or ("end", status) after the last one."""
        self._queue.put(item, frame=item[0] != "end")

    def poll(self):
        """(frame number, time in ms, frame or None, capture time, prepared, ROI box) or None
        (no frame yet, or the stream has ended: ``status``)."""
        item = self._queue.take() if self.status == "running" else None
        if item is not None and item[0] == "end":
            self.status = item[1]
            return None
        return None if item is None else item[1:]

    def close(self) -> None:
        self._queue.close()


class Preparers:
    """The worker processes preparing ``sources`` (stream n in worker (n - 1) % workers) and
    the reader threads feeding their :class:`RemoteCapture` s. ``opened``: stream number ->
    RemoteCapture; ``failed``: stream number -> why it could not be opened."""

    def __init__(self, sources: list[str], model_type: str, roi: float | None,
                 max_digits: int, realtime: bool, max_frames: int | None, send_frames: bool,
                 workers: int, notify: threading.Event, quiet: bool = True,
                 say: Callable[[str], None] = print) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._notify, self._say = notify, say
        self.opened: dict[int, RemoteCapture] = {}
        self.failed: dict[int, str] = {}
        self.peak_memory_mb: list[float | None] = []  # each worker's, said as it ends
        self._processes, self._readers = [], []
        numbered = list(enumerate(sources, 1))
        connections = []
        for worker in range(min(workers, len(sources))):
            assigned = numbered[worker::workers]
            mine, theirs = context.Pipe(duplex=False)
            process = context.Process(
                target=_work, name=f"edgedigits-prepare-{worker + 1}", daemon=True,
                args=(theirs, assigned, model_type, roi, max_digits, realtime, max_frames,
                      send_frames, quiet, self._stop))
            process.start()
            theirs.close()
            self._processes.append(process)
            connections.append((mine, assigned))
        # Each worker says how its streams opened (a URL may take seconds), then its frames
        # go through its reader thread.
        for connection, assigned in connections:
            self._open(connection, assigned)
            reader = threading.Thread(target=self._read, args=(connection, assigned),
                                      name="prepared frames", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _open(self, connection: Connection, assigned: list[tuple[int, str]]) -> None:
        sources = dict(assigned)
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                message = ("crashed", "the preparing process ended")
            kind = message[0]
            if kind == "ready":
                return
            if kind == "opened":
                _, stream, description, fps, width, height, live = message
                self.opened[stream] = RemoteCapture(sources[stream], description, fps, width,
                                                    height, live, self._notify)
            elif kind == "failed":
                self.failed[message[1]] = message[2]
            elif kind == "memory":
                self.peak_memory_mb.append(message[1])
            else:  # crashed before opening everything: the rest could not be opened
                for stream, _ in assigned:
                    if stream not in self.opened and stream not in self.failed:
                        self.failed[stream] = message[1]
                return

    def _read(self, connection: Connection, assigned: list[tuple[int, str]]) -> None:
        ended: set[int] = set()
        try:
            while True:  # until the worker closes its end (after its last word)
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    break
                kind, stream = message[0], message[1]
                if kind == "frame":
                    self.opened[stream].put(message[1:])
                elif kind == "end":
                    ended.add(stream)
                    self.opened[stream].put(("end", message[2]))
                elif kind == "memory":
                    self.peak_memory_mb.append(message[1])
                elif kind == "crashed":  # its streams are then said lost, one line each
                    self._say(f"the process preparing stream(s) "
                              f"{', '.join(str(n) for n, _ in assigned)} failed: {message[1]}")
        finally:
            connection.close()
            # a worker that died takes its streams with it: they are lost, not hung
            for stream, _ in assigned:
                if stream in self.opened and stream not in ended:
                    self.opened[stream].put(("end", "lost"))

    def close(self) -> None:
        self._stop.set()
        for capture in self.opened.values():
            capture.close()
        deadline = time.monotonic() + STOP_JOIN_S
        for process in self._processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(1)
        for reader in self._readers:
            reader.join(1)
