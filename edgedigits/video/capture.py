"""Capture, in its own thread: a camera index, a video file or a stream URL, opened with the
platform's backends, read ahead (files) or newest-frame-only (live sources)."""

from __future__ import annotations

import queue
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import cv2
import numpy as np

from edgedigits.errors import UserError

FILE_QUEUE_FRAMES = 8  # decoded frames buffered ahead of a file's processing
LIVE_QUEUE_FRAMES = 1  # a camera's frames are dropped, not queued, when processing lags
LIVE_READ_RETRIES = 25  # consecutive failed reads (~0.5 s) before a camera counts as lost
MAX_CAMERA_INDEX = 9999  # OpenCV adds the backend to the index: larger ones overflow its int
# With several streams, a stream URL that stops answering must be lost, not hang its reader
# (FFmpeg's own reads wait forever): OpenCV's FFmpeg timeouts, for URLs only.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def _camera_backends() -> list[tuple[int, str]]:
    if sys.platform.startswith("linux"):
        return [(cv2.CAP_V4L2, "V4L2"), (cv2.CAP_ANY, "any backend")]
    if sys.platform == "win32":
        return [(cv2.CAP_DSHOW, "DirectShow"), (cv2.CAP_MSMF, "Media Foundation"),
                (cv2.CAP_ANY, "any backend")]
    if sys.platform == "darwin":
        return [(cv2.CAP_AVFOUNDATION, "AVFoundation"), (cv2.CAP_ANY, "any backend")]
    return [(cv2.CAP_ANY, "any backend")]


def open_source(source: str,
                timeouts: bool = False) -> tuple[cv2.VideoCapture, str, bool]:
    """(capture, description, is_live) for a camera index, a video file or a stream URL.

    ``timeouts``: a stream URL that does not open in STREAM_OPEN_TIMEOUT_MS, or stops sending
    for STREAM_READ_TIMEOUT_MS, fails (its reads then fail, and the stream is lost)."""
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
        params = ([cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
                   cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS] if timeouts else [])
        for api, name in ((cv2.CAP_FFMPEG, "FFmpeg"), (cv2.CAP_ANY, "any backend")):
            capture = (cv2.VideoCapture(source, api, params) if params
                       else cv2.VideoCapture(source, api))
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


class FrameQueue:
    """Frames from a reading thread to the one that processes them. ``live``: only the newest
    waits (what processing has not taken yet is dropped); otherwise every frame, the reader
    waiting for room. The end marker (``frame=False``) always waits for room, so it never
    displaces a frame. ``notify`` is set whenever something is queued (several streams)."""

    def __init__(self, size: int, live: bool, notify: threading.Event | None = None) -> None:
        self._queue: queue.Queue = queue.Queue(size)
        self.live, self._notify = live, notify
        self.stop = threading.Event()  # set: a waiting reader gives up

    def put(self, item: tuple, frame: bool = True) -> None:
        if self.live and frame:
            while True:  # keep the newest: drop what processing has not taken yet
                try:
                    self._queue.put_nowait(item)
                    break
                except queue.Full:
                    with suppress(queue.Empty):
                        self._queue.get_nowait()
        else:
            while not self.stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            else:
                return
        if self._notify is not None:
            self._notify.set()

    def take(self, wait: bool = False) -> tuple | None:
        """The next item, or None when there is none yet (``wait``: block until there is)."""
        try:
            return self._queue.get() if wait else self._queue.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop any waiting reader and drop what waits."""
        self.stop.set()
        while self.take() is not None:
            pass


class Capture:
    """Reads frames on a background thread, from the moment it is created.

    Files: every frame, in order (the reader waits for processing). Live sources: only the
    newest frame is kept, so processing always works on the present; repeated read failures
    mean the camera was lost. ``realtime`` replays a file as if it were a camera (paced at its
    frame rate, newest frame only), but its end is still the end of a file: "finished", not
    "lost". The end marker never displaces a frame, so the last frame is always delivered.
    """

    def __init__(self, source: str, realtime: bool = False,
                 notify: threading.Event | None = None, timeouts: bool = False) -> None:
        self.source = source  # as given
        self._capture, self.description, live = open_source(source, timeouts)
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
        self._queue = FrameQueue(size, self.live, notify)
        self._stop = self._queue.stop
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._read_loop, args=(first,),
                                        name=f"capture {source}",
                                        daemon=True)
        self._thread.start()

    def _read_loop(self, frame: np.ndarray) -> None:
        index, failures = 0, 0
        captured = time.perf_counter()  # when the frame was read (latency counts from here)
        while not self._stop.is_set():
            if frame is None:
                ok, frame = self._capture.read()
                captured = time.perf_counter()
                if not ok or frame is None:
                    frame = None
                    if self.live and not self._pace and failures < LIVE_READ_RETRIES:
                        failures += 1
                        time.sleep(0.02)
                        continue
                    # Only a live source can be lost; a replayed file simply ended.
                    self._queue.put((_LOST if self.live and not self._pace else _END, None,
                                     None, None), frame=False)
                    break
            failures = 0
            time_ms = (index * 1000.0 / self.fps if not self.live or self._pace
                       else (time.perf_counter() - self._started) * 1000.0)
            if self._pace:
                delay = self._started + time_ms / 1000.0 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                    captured = time.perf_counter()  # a replayed frame is captured when shown
            self._queue.put((index, time_ms, frame, captured))
            index += 1
            frame = None
        self._capture.release()

    def poll(self) -> tuple[int, float, np.ndarray, float] | None:
        """The next (frame number, time in ms, BGR frame, capture time) without waiting, or
        None: no frame yet, or the source has ended (``status`` is then "finished" or "lost").
        The capture time is ``time.perf_counter()`` when the frame was read."""
        item = self._queue.take() if self.status == "running" else None
        if item is not None and item[2] is None:
            self.status = "lost" if item[0] == _LOST else "finished"
            return None
        return item

    def frames(self):
        """Yield (frame number, time in ms, BGR frame, capture time) until the source ends or
        is lost."""
        while True:
            item = self._queue.take(wait=True)
            if item[2] is None:
                self.status = "lost" if item[0] == _LOST else "finished"
                return
            yield item

    def close(self) -> None:
        self._queue.close()
        self._thread.join(timeout=2)
