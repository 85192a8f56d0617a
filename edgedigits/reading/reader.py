"""The Python API for programs that embed the reader: load once, read paths or arrays.

    from edgedigits import DigitReader

    reader = DigitReader("models/robust")           # or DigitReader(): the best IR under models/
    reading = reader.read("photo.jpg")              # a path, or an image array (gray/BGR/BGRA)
    print(reading.number)                           # "4096": the digits left to right
    for digit in reading.digits:
        print(digit.digit, digit.confidence, digit.box)   # box = [x, y, w, h] in the image

It is the same code the commands run: the model's task (:mod:`edgedigits.tasks`) prepares the
image, one batched inference runs through the runtime backend, the task reads the outputs
into one :class:`~edgedigits.tasks.result.Reading` — ``classify.py --multi`` for
:meth:`DigitReader.read`, ``classify.py`` 's one-digit reading for :meth:`DigitReader.read_digit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgedigits import runtime
from edgedigits.errors import UserError
from edgedigits.image.image import Image
from edgedigits.reading import classify
from edgedigits.tasks import MULTI, SINGLE, Digit, Reading, kinds_for

__all__ = ["Digit", "DigitReader", "Reading"]


class DigitReader:
    """A loaded model plus the project's one preprocessing.

    ``model``: an IR, a .keras file or a models folder (None: the default models folder);
    ``backend``, ``device`` and the other options are :func:`runtime.load_classifier`'s.
    ``model`` may be any kind of model that reads whole images (the number reader,
    ``models/number-reader``, included: :meth:`read` then reads whole lines with it, and
    :meth:`read_digit` is not available).
    """

    def __init__(self, model: str | os.PathLike | None = None, backend: str = "openvino",
                 device: str = "CPU", **options: Any) -> None:
        options.setdefault("accept", kinds_for(MULTI) if model is not None
                           else kinds_for(SINGLE))
        self.classifier = runtime.load_classifier(model, backend, device, **options)
        self.task = self.classifier.reading_task

    def _read(self, image: str | os.PathLike | np.ndarray, mode: str) -> Reading:
        if isinstance(image, (str, os.PathLike)):
            prepared, error = classify.prepare_file(Path(image), self.task, mode)
            if error is not None:
                if error == classify.NO_DIGIT:
                    return Reading([])
                raise UserError(f"{image}: {error}")
            return classify.read_prepared(self.task, self.classifier, [prepared])[0]
        return classify.read_image(self.classifier, Image(np.asarray(image)), mode)

    def read(self, image: str | os.PathLike | np.ndarray) -> Reading:
        """All digits in a photo or frame, in reading order, each with its box in the image's
        pixels (touching digits split where the classifier is surest, or read whole by the
        number reader)."""
        return self._read(image, MULTI)

    def read_digit(self, image: str | os.PathLike | np.ndarray) -> Digit | None:
        """The whole image as one digit (None when it is blank or too faint)."""
        if not self.task.supports(SINGLE):
            raise UserError(f"{self.classifier.model_path} is a {self.task.description}: "
                            "use read()")
        reading = self._read(image, SINGLE)
        return reading.digits[0] if reading.digits else None

    def close(self) -> None:
        self.classifier.close()

    def __enter__(self) -> DigitReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
