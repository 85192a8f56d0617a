"""Camera videos the project renders itself, their ground truth, and the score of a reading.

- :func:`make_video`: a 640x480 mp4 of 1-4 MNIST *test* digits apart on paper per frame,
  drifting; returns (and with ``truth_path`` writes) each frame's digits: label and ink box;
- :func:`make_number_video`: a number written with touching MNIST test digits, drifting;
- :func:`score_jsonl`: the ``--jsonl`` of ``infer/webcam.py`` on such a video against its
  ground truth: *digits read right* and *detections right* (see :func:`score`).

The frames come from :func:`edgedigits.data.render.paper_scene` and are the same, bit for bit,
for the same arguments (runs made on different days compare).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedigits.data import render
from edgedigits.data.mnist import load_mnist
from edgedigits.errors import UserError
from edgedigits.files import write_json

WIDTH, HEIGHT, FPS = 640, 480, 30
DIGIT_SIDE = 110
NUMBER_DIGIT_SIDE = 120
NUMBER_STEP = 0.55  # of the digit's side: neighbours' ink touches or overlaps
TRUTH_KIND = "edgedigits video ground truth"


def _writer(path: Path) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise UserError(f"cannot write {path}")
    return writer


# --------------------------------------------------------------------------------------------
# Digits apart


def digit_frames(frames: int, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
                 scene_frames: int = FPS) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Each frame of :func:`make_video` (BGR) with its digits: [{"digit", "box"}], left to right.

    A new set of 1, 2, 3, then 4 consecutive MNIST test digits every ``scene_frames`` frames
    (default: every second); ``box`` is the digit's ink in frame pixels, [x, y, w, h]
    (:func:`edgedigits.data.render.ink_box`).
    """
    rng = np.random.default_rng(seed)
    for index in range(frames):
        scene_number = index // scene_frames
        count = 1 + scene_number % 4
        chosen = [(scene_number * 4 + k) % len(x_test) for k in range(count)]
        digits = [x_test[i] for i in chosen]
        positions = [(25 + 150 * k + index % FPS, 150 + int(20 * np.sin(index / 9 + k)))
                     for k in range(count)]
        truth = [{"digit": int(y_test[i]), "box": render.ink_box(x_test[i], position, DIGIT_SIDE)}
                 for i, position in zip(chosen, positions, strict=True)]
        yield render.paper_scene(digits, positions, (HEIGHT, WIDTH), DIGIT_SIDE, rng), truth


def make_video(path: Path, frames: int, seed: int = 0, data_dir: str | None = None,
               truth_path: Path | None = None, scene_frames: int = FPS) -> list[list[dict]]:
    """A 640x480 mp4 of 1-4 handwritten digits apart per frame on paper; its ground truth.

    The digits drift across the page; ``scene_frames``: frames before the next MNIST test
    digits come (default 30: a new set every second; 1: new digits in every frame, the most
    digits for a short video). Returns, per frame, [{"digit": label, "box": [x, y, w, h]}]
    (the ink of each digit in frame pixels); ``truth_path``: also write it there as JSON
    (:func:`read_truth` reads it back).
    """
    if scene_frames < 1:
        raise ValueError(f"scene_frames must be at least 1, got {scene_frames}")
    mnist = load_mnist(data_dir)
    writer = _writer(path)
    truth = []
    try:
        for image, digits in digit_frames(frames, mnist.x_test, mnist.y_test, seed,
                                          scene_frames):
            writer.write(image)
            truth.append(digits)
    finally:
        writer.release()
    if truth_path is not None:
        write_truth(truth_path, truth, {"generator": "make_video", "seed": seed,
                                        "scene_frames": scene_frames, "digit_px": DIGIT_SIDE})
    return truth


# --------------------------------------------------------------------------------------------
# A number with touching digits


def make_number_video(path: Path, frames: int, number: str,
                      data_dir: str | None = None) -> Path:
    """A 640x480 mp4 of ``number`` written with touching MNIST test digits, drifting."""
    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(0)
    digits = [mnist.x_test[np.flatnonzero(mnist.y_test == int(c))[k]] for k, c in enumerate(number)]
    step = int(NUMBER_STEP * NUMBER_DIGIT_SIDE)
    if 100 + step * (len(number) - 1) + NUMBER_DIGIT_SIDE > WIDTH:
        raise UserError(f"--number {number}: at most {(WIDTH - 220) // step + 1} digits fit")
    writer = _writer(path)
    try:
        for index in range(frames):
            left, top = 60 + int(40 * np.sin(index / 15)), 170 + int(15 * np.sin(index / 11))
            positions = [(left + step * k, top + 5 * (k % 2)) for k in range(len(digits))]
            writer.write(render.paper_scene(digits, positions, (HEIGHT, WIDTH),
                                            NUMBER_DIGIT_SIDE, rng))
    finally:
        writer.release()
    return path


def frames_reading(jsonl: Path, number: str) -> float:
    """Share of the frames in a ``--jsonl`` file whose digits, left to right, are ``number``."""
    lines = read_jsonl(jsonl)
    read = ["".join(str(d["digit"]) for d in sorted(line["detections"], key=lambda d: d["box"][0]))
            for line in lines]
    return sum(text == number for text in read) / max(len(read), 1)


# --------------------------------------------------------------------------------------------
# Ground truth on disk


def write_truth(path: Path, truth: list[list[dict]], settings: dict | None = None) -> Path:
    return write_json(path, {"kind": TRUTH_KIND, "width": WIDTH, "height": HEIGHT, "fps": FPS,
                             **(settings or {}), "frames": truth})


def read_truth(path: Path) -> list[list[dict]]:
    """The per-frame ground truth :func:`make_video` wrote with ``truth_path``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no ground truth file {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read ground truth {path}: {error}") from None
    if not isinstance(data, dict) or data.get("kind") != TRUTH_KIND:
        raise UserError(f"{path} is not a ground truth written by make_video")
    return data["frames"]


def read_jsonl(path: Path) -> list[dict]:
    """The records of a ``webcam.py --jsonl`` file (one JSON object per line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"no --jsonl file {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read --jsonl file {path}: {error}") from None


# --------------------------------------------------------------------------------------------
# Score


@dataclass(frozen=True)
class Score:
    """How well a run read a video with known digits (counts over all frames)."""

    digits: int  # ground-truth digits in the frames
    detections: int  # digits the run reported
    right: int  # pairs (digit, detection) matched with the detection reading the digit's label
    frames: int  # frames in the ground truth
    frames_missing: int  # frames of the ground truth with no record in the run's output

    @property
    def digits_read_right(self) -> float:
        """Ground-truth digits read right / ground-truth digits."""
        return self.right / self.digits if self.digits else 1.0

    @property
    def detections_right(self) -> float:
        """Detections of a ground-truth digit with its label / detections."""
        return self.right / self.detections if self.detections else 1.0

    def as_json(self) -> dict:
        return {"digits_read_right": round(self.digits_read_right, 6),
                "detections_right": round(self.detections_right, 6),
                "digits": self.digits, "detections": self.detections, "right": self.right,
                "frames": self.frames, "frames_missing": self.frames_missing}


def _contains(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def _iou(a, b) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_frame(truth: list[dict], found: list[dict]) -> list[tuple[int, int]]:
    """Pairs (truth index, detection index) for one frame.

    A detection can match a ground-truth digit only if the detection box's centre lies inside
    that digit's ink box; among those candidates, pairs are taken greedily by best IoU first
    (ties: truth then detection order), each digit and each detection at most once. The label
    plays no part in matching: the detection that covers a digit best is the one judged, so a
    digit split in two is read right only if the part overlapping it most reads right, and the
    other part is a detection matched to nothing. (The centre rule, not an IoU threshold,
    decides *whether* a detection can be that digit: it does not depend on how much margin a
    reader puts around the ink, and a detection spanning two digits is judged against one.)
    """
    candidates = []
    for j, item in enumerate(found):
        x, y, w, h = item["box"]
        centre = (x + w / 2, y + h / 2)
        for i, digit in enumerate(truth):
            if _contains(digit["box"], centre):
                candidates.append((-_iou(digit["box"], item["box"]), i, j))
    pairs, used_truth, used_found = [], set(), set()
    for _, i, j in sorted(candidates):
        if i not in used_truth and j not in used_found:
            pairs.append((i, j))
            used_truth.add(i)
            used_found.add(j)
    return pairs


def score(truth: list[list[dict]], records: list[dict]) -> Score:
    """Score a run's ``--jsonl`` records against the ground truth of the video it read.

    *digits read right* = ground-truth digits matched (:func:`match_frame`) by a detection of
    the right digit / all ground-truth digits; *detections right* = detections matched to a
    ground-truth digit with its label / all detections. A frame missing from the records reads
    none of its digits; extra detections (a digit split in two, a speck) lower detections right.
    """
    by_frame = {}
    for record in records:
        frame = record.get("frame") if isinstance(record, dict) else None
        if not isinstance(frame, int) or not 0 <= frame < len(truth):
            raise UserError(f"a --jsonl record for frame {frame!r}, but the ground truth has "
                            f"{len(truth)} frames: not a run on this video")
        by_frame[frame] = record.get("detections", [])
    digits = detections = right = 0
    for index, expected in enumerate(truth):
        found = by_frame.get(index, [])
        digits += len(expected)
        detections += len(found)
        right += sum(expected[i]["digit"] == found[j]["digit"]
                     for i, j in match_frame(expected, found))
    return Score(digits=digits, detections=detections, right=right, frames=len(truth),
                 frames_missing=len(truth) - len(by_frame))


def score_jsonl(truth: list[list[dict]] | Path, jsonl: Path) -> Score:
    """:func:`score` of a ``--jsonl`` file; ``truth`` as returned by :func:`make_video` or the
    file it wrote."""
    if not isinstance(truth, list):
        truth = read_truth(truth)
    return score(truth, read_jsonl(jsonl))
