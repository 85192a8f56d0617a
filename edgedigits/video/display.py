"""What a run shows and writes besides JSON lines: the overlay (boxes, digits, status line),
the annotated video file (checked whole before it is published), the live window and its keys,
and OpenCV's own logging kept quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edgedigits.errors import UserError
from edgedigits.files import atomic_path

WINDOW = "edgedigits"
GREEN, RED, YELLOW, WHITE, BLACK = (60, 200, 60), (40, 40, 230), (0, 215, 255), (255,) * 3, (0,) * 3


def agrees(item: dict, names: list[str]) -> bool:
    """Every other backend read this detection's digit too."""
    return all(item[other]["digit"] == item["digit"] for other in names[1:])


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
        agree = agrees(item, names)
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
