"""A third, toy kind of model for tests/test_tasks.py: a digit classifier on 14x14 images.

It is what a user adding a kind writes: one module with a Task and one ``register_task`` line,
loaded by the commands through $EDGEDIGITS_TASKS=toy_task (with tests/ on PYTHONPATH). No other
module of the project knows it.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgedigits.image.image import Image
from edgedigits.tasks import MULTI, SINGLE, Prepared, Reading, Task, register_task
from edgedigits.tasks.digit_classifier import DigitClassifierTask

MODEL_TYPE = "toy-digits-14"
SIDE = 14


def to_toy_inputs(mnist_digits: np.ndarray) -> np.ndarray:
    """28x28 MNIST-format digits -> the toy model's 14x14 inputs (area-averaged)."""
    return np.stack([cv2.resize(d, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                     for d in mnist_digits]) if len(mnist_digits) else \
        np.zeros((0, SIDE, SIDE), np.uint8)


class ToyDigitsTask(Task):
    """Finds digits like the digit classifier (its preparation), reads them at 14x14."""

    def __init__(self) -> None:
        super().__init__(model_type=MODEL_TYPE, description="14x14 toy digit classifier",
                         input_shape=(SIDE, SIDE, 1), output_shape=(10,), modes=(SINGLE, MULTI))
        self._digits = DigitClassifierTask()

    def prepare(self, image: Image, mode: str = MULTI, *, max_items=None) -> Prepared:
        prepared = self._digits.prepare(image, mode, max_items=max_items)
        return Prepared(to_toy_inputs(prepared.inputs), image, prepared, mode)

    def read(self, prepared: Prepared, outputs: np.ndarray) -> Reading:
        return self._digits.read(prepared.state, outputs)

    def answers(self, outputs: np.ndarray) -> np.ndarray:
        return np.argmax(outputs, axis=1)


register_task(ToyDigitsTask())
