"""The live window opens at the frame's size with text people can read (issue 13, class 5).

A real X server (Xvfb, from apt) and OpenCV's real Qt window; the screenshot is Xvfb's own
framebuffer file (``-fbdir``), read here. The screenshot is left at ``<tmp>/window.png``.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT

FRAME = (480, 640)  # height, width
BORDER = (180, 255, 180)  # BGR, light enough not to count as ink


def read_xwd(path: Path) -> np.ndarray:
    """Xvfb's framebuffer file (XWD, 24-bit TrueColor in 32-bit pixels) as a BGR array."""
    data = path.read_bytes()
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    bits_per_pixel, bytes_per_line, ncolors = fields[11], fields[12], fields[19]
    byte_order = fields[7]  # 0 = LSBFirst
    assert bits_per_pixel == 32, bits_per_pixel
    start = header_size + 12 * ncolors
    pixels = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=start)
    pixels = pixels.reshape(height, bytes_per_line)[:, : width * 4].reshape(height, width, 4)
    return np.ascontiguousarray(pixels[:, :, :3] if byte_order == 0 else pixels[:, :, 3:0:-1])


def find_border(screen: np.ndarray) -> np.ndarray:
    """The frame's light green border, also where the status band darkens it (x 0.35)."""
    pixels = screen.astype(int)
    plain = np.all(np.abs(pixels - BORDER) < 25, axis=2)
    darkened = np.all(np.abs(pixels - np.array(BORDER) * 0.35) < 12, axis=2)
    return plain | darkened


@pytest.fixture()
def display(tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (.ci/run installs it: apt-get install xvfb)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-fbdir",
                               str(fbdir), "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not Path(f"/tmp/.X11-unix/X{number}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield f":{number}", fbdir / "Xvfb_screen0"
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture()
def bordered_clip(tmp_path, mnist):
    path = tmp_path / "page.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, FRAME[::-1])
    digit = 255 - cv2.resize(mnist.x_test[0], (160, 160), interpolation=cv2.INTER_CUBIC)
    for _ in range(900):
        frame = np.full((*FRAME, 3), 255, np.uint8)
        frame[160:320, 240:400] = digit[:, :, None]
        cv2.rectangle(frame, (0, 0), (FRAME[1] - 1, FRAME[0] - 1), BORDER, 8)
        writer.write(frame)
    writer.release()
    return path


def test_window_opens_at_frame_size_with_readable_text(ir_models_dir, bordered_clip, display,
                                                       tmp_path):
    name, framebuffer = display
    env = {**os.environ, "DISPLAY": name, "WAYLAND_DISPLAY": ""}
    env.pop("QT_QPA_FONTDIR", None)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "infer/webcam.py"), "--model", str(ir_models_dir),
         "--source", str(bordered_clip), "--realtime"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    border = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(1.0)
        screen = read_xwd(framebuffer)
        border_pixels = find_border(screen)
        if border_pixels.sum() > 1000:
            time.sleep(1.0)  # a few more frames, then the screenshot
            screen = read_xwd(framebuffer)
            border_pixels = find_border(screen)
            ys, xs = np.nonzero(border_pixels)
            border = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert border is not None, f"no window appeared: {stderr}"
    cv2.imwrite(str(tmp_path / "window.png"), screen)
    left, top, right, bottom = (int(v) for v in border)
    # The picture fills a window of the frame's size (Qt's default would be 320x240).
    assert abs((right - left) - FRAME[1]) <= 4 and abs((bottom - top) - FRAME[0]) <= 4, border
    window = screen[top:bottom, left:right]
    # The status band at the top: dark, with white text at least 12 px tall.
    band_rows = np.nonzero(window[:, FRAME[1] // 2].mean(axis=1) < 110)[0]
    assert band_rows.size >= 28, band_rows
    text = np.nonzero((window[:40, 8:400].min(axis=2) > 200).any(axis=1))[0]
    assert text.size and text.max() - text.min() >= 12, text
    assert "QFontDatabase" not in stderr and "Traceback" not in stderr, stderr
    assert process.returncode == 130, stderr
