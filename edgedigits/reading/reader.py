"""The Python API for programs that embed the reader: load once, read paths or arrays.

    from edgedigits import DigitReader

    reader = DigitReader("models/robust")           # or DigitReader(): the best IR under models/
    reading = reader.read("photo.jpg")              # a path, or an image array (gray/BGR/BGRA)
    print(reading.number)                           # "4096": the digits left to right
    for digit in reading.digits:
        print(digit.digit, digit.confidence, digit.box)   # box = [x, y, w, h] in the image

It is the same code the commands run: ``classify.py --multi`` (segment, every way to split
touching digits -> MNIST format -> one batched inference through the runtime backend -> the
split the classifier is surest of), with ``classify.py`` 's one-digit reading as
:meth:`DigitReader.read_digit`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedigits import contract, runtime
from edgedigits.errors import UserError
from edgedigits.image import preprocess
from edgedigits.reading import classify
from edgedigits.tasks import splitting as numbers


@dataclass
class Digit:
    """One digit read: what it is, how sure, where (``box`` [x, y, w, h]; None for a whole
    image read as one digit), and the three likeliest digits."""

    digit: int
    confidence: float
    box: list[int] | None = None
    top3: list[dict] = field(default_factory=list)


@dataclass
class Reading:
    """Every digit found in one image, left to right (``number`` spells them; "" if none)."""

    digits: list[Digit]

    @property
    def number(self) -> str:
        return "".join(str(d.digit) for d in self.digits)


class DigitReader:
    """A loaded digit classifier plus the project's one preprocessing.

    ``model``: an IR, a .keras file or a models folder (None: the default models folder);
    ``backend``, ``device`` and the other options are :func:`runtime.load_classifier`'s.
    ``model`` may also be the number reader (``models/number-reader``): :meth:`read` then
    reads whole lines with it, and :meth:`read_digit` is not available.
    """

    def __init__(self, model: str | os.PathLike | None = None, backend: str = "openvino",
                 device: str = "CPU", **options: Any) -> None:
        options.setdefault("accept", (contract.MODEL_TYPE, contract.NUMBER_READER)
                           if model is not None else (contract.MODEL_TYPE,))
        self.classifier = runtime.load_classifier(model, backend, device, **options)

    def read(self, image: str | os.PathLike | np.ndarray) -> Reading:
        """All digits in a photo or frame, left to right, each with its box (touching digits
        split where the classifier is surest, :mod:`edgedigits.tasks.splitting`)."""
        model_type = self.classifier.model_type
        if isinstance(image, (str, os.PathLike)):
            crops, candidates, error = classify.read_digits(Path(image), model_type)
            if error is not None:
                if crops is None and error.startswith("no digit"):
                    return Reading([])
                raise UserError(f"{image}: {error}")
        else:
            candidates = numbers.find_inputs(_as_image(image), model_type)
            crops = candidates.inputs
        if crops is None or not len(crops):
            return Reading([])
        reading = candidates.choose(self.classifier.predict(np.asarray(crops)))
        return Reading([Digit(d["digit"], d["confidence"], d["box"], d["top3"])
                        for d in reading.detections])

    def read_digit(self, image: str | os.PathLike | np.ndarray) -> Digit | None:
        """The whole image as one digit (None when it is blank or too faint)."""
        if self.classifier.model_type != contract.MODEL_TYPE:
            raise UserError(f"{self.classifier.model_path} is a number reader: use read()")
        if isinstance(image, (str, os.PathLike)):
            mnist, error = classify.read_digit(Path(image))
            if error is not None and mnist is None and not error.startswith("no digit"):
                raise UserError(f"{image}: {error}")
        else:
            mnist = preprocess.to_mnist_format(_as_image(image))
        if mnist is None:
            return None
        return _digit(self.classifier.predict(mnist[None])[0], None)

    def close(self) -> None:
        self.classifier.close()

    def __enter__(self) -> DigitReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise UserError(f"expected an image array (H, W) or (H, W, 3|4), got shape {image.shape}")
    return image


def _digit(probabilities: np.ndarray, box: list[int] | None) -> Digit:
    return Digit(int(np.argmax(probabilities)), round(float(probabilities.max()), 4), box,
                 numbers.top_k(probabilities))
