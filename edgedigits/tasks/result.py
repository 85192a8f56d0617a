"""The one result of every reading, and its one JSON form.

Whatever the kind of model, reading an image gives a :class:`Reading`: the digits found, left to
right (lines top to bottom), each with its box in the *original* image's pixels, its confidence
and its three likeliest digits; the text they spell; optionally each digit's ten probabilities
and the inputs the model saw. ``classify.py --json``, :class:`edgedigits.DigitReader`, the
video JSONL, the server's ``digit-reader`` answers and the page all use :meth:`Digit.as_json`
(``box``, ``digit``, ``confidence``, ``top3``), so a field means the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height


def top_k(probabilities: np.ndarray, k: int = 3) -> list[dict]:
    """The ``k`` likeliest digits as ``[{"digit": d, "confidence": p}, ...]``, likeliest first."""
    order = np.argsort(probabilities)[::-1][:k]
    return [{"digit": int(d), "confidence": round(float(probabilities[d]), 4)} for d in order]


@dataclass
class Digit:
    """One digit read: what it is, how sure, where (``box`` [x, y, w, h] in the original
    image's pixels; None for a whole image read as one digit), the three likeliest digits and,
    when kept, all ten probabilities."""

    digit: int
    confidence: float
    box: list[int] | None = None
    top3: list[dict] = field(default_factory=list)
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, box: Box | None = None) -> Digit:
        """The digit ``probabilities`` (10,) say, with its confidence and top 3."""
        probabilities = np.asarray(probabilities, np.float32)
        return cls(int(np.argmax(probabilities)), round(float(probabilities.max()), 4),
                   None if box is None else [int(v) for v in box], top_k(probabilities),
                   probabilities)

    @classmethod
    def many(cls, probabilities: np.ndarray, boxes: list | None = None) -> list[Digit]:
        """:meth:`from_probabilities` for every row of ``probabilities`` (K, 10) at once (one
        sort for all: this runs for every digit of every video frame)."""
        probabilities = np.asarray(probabilities, np.float32)
        if not len(probabilities):
            return []
        order = np.argsort(probabilities, axis=1)[:, ::-1][:, :3]
        top = np.round(np.take_along_axis(probabilities, order, axis=1).astype(np.float64), 4)
        boxes = boxes if boxes is not None else [None] * len(probabilities)
        return [cls(int(row_order[0]), float(row_top[0]),
                    None if box is None else [int(v) for v in box],
                    [{"digit": int(d), "confidence": float(c)}
                     for d, c in zip(row_order, row_top, strict=True)], row)
                for row, row_order, row_top, box in zip(probabilities, order, top, boxes,
                                                        strict=True)]

    def as_json(self) -> dict:
        """The detection object of every JSON output: box, digit, confidence, top3."""
        return {"box": self.box, "digit": self.digit, "confidence": self.confidence,
                "top3": self.top3}


@dataclass
class Reading:
    """Every digit found in one image, in reading order, and the text they spell.

    ``text`` is what the task read: the digits joined, with a space between lines when the task
    reads several lines. ``inputs`` are the model's inputs for this image (the 28x28 digits, or
    the lines), in the digits' order where each digit had its own input, for showing what the
    model saw; ``indices`` says which of the image's prepared inputs each digit came from.
    """

    digits: list[Digit] = field(default_factory=list)
    text: str | None = None
    inputs: np.ndarray | None = field(default=None, repr=False, compare=False)
    indices: list[int] = field(default_factory=list, repr=False, compare=False)

    @property
    def number(self) -> str:
        """The digits left to right ("" when none)."""
        if self.text is not None:
            return self.text
        return "".join(str(d.digit) for d in self.digits)

    @property
    def confidence(self) -> float | None:
        """The least confident digit's confidence: a number is as sure as its weakest digit."""
        return min((d.confidence for d in self.digits), default=None)

    def __len__(self) -> int:
        return len(self.digits)

    @property
    def detections(self) -> list[dict]:
        """The digits as the JSON ``detections`` list."""
        return [digit.as_json() for digit in self.digits]
