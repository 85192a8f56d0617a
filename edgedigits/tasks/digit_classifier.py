"""The digit classifier's task: one 28x28 MNIST-format digit in, ten probabilities out.

- single: the whole image is one digit (:func:`preprocess.to_mnist_format`);
- multi: every digit in the image, touching digits split where the classifier is surest
  (:mod:`edgedigits.tasks.splitting`), boxes in the original image's pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgedigits import contract
from edgedigits.tasks.base import MULTI, SINGLE, Prepared, Task
from edgedigits.tasks.result import Digit, Reading

if TYPE_CHECKING:  # OpenCV and the image code load when an image is first prepared: the
    from edgedigits.image.image import Image  # runtime imports this module's task

# Calibration images are drawn from the training set with this seed (conversion's).
CALIBRATION_SEED = 0


class DigitClassifierTask(Task):
    def __init__(self) -> None:
        super().__init__(
            model_type=contract.MODEL_TYPE, description="digit classifier",
            input_shape=contract.IMAGE_SHAPE, output_shape=(contract.NUM_CLASSES,),
            input_polarity="white digit on black background (MNIST)",
            output_kind="softmax probabilities over the digits 0-9",
            accuracy_controlled_int8=True, serving_repository=True,
            unit="image", accuracy_header="accuracy", counts="digits right",
            test_set_text="MNIST test images", peers=True, int8_max_drop_pt=0.10,
            speed_goals=True)

    def prepare(self, image: Image, mode: str = MULTI, *,
                max_items: int | None = None) -> Prepared:
        from edgedigits.image import preprocess
        from edgedigits.tasks import splitting

        if mode == SINGLE:
            digit = preprocess.to_mnist_format(image.gray)
            inputs = (digit[None] if digit is not None
                      else np.zeros((0, *self.input_shape[:2]), np.uint8))
            return Prepared(inputs, image, None, SINGLE)
        candidates = splitting.find_candidates(
            image, max_digits=max_items,
            max_candidates=None if max_items is None else candidate_limit(max_items))
        return Prepared(candidates.digits, image, candidates, MULTI)

    def read(self, prepared: Prepared, outputs: np.ndarray) -> Reading:
        if prepared.mode == SINGLE:
            digits = [Digit.from_probabilities(p) for p in outputs[:1]]
            return Reading(digits, inputs=prepared.inputs, indices=list(range(len(digits))))
        from edgedigits.tasks import splitting

        return splitting.choose(prepared.state, outputs)

    def batch_sizes(self, mode: str, max_items: int) -> tuple[int, ...]:
        return super().batch_sizes(mode, candidate_limit(max_items))

    def answers(self, outputs: np.ndarray) -> np.ndarray:
        return np.argmax(outputs, axis=1).astype(np.uint8)

    def test_set(self, mnist, count: int | None) -> tuple[np.ndarray, np.ndarray]:
        count = count or len(mnist.x_test)
        return mnist.x_test[:count, :, :, None], mnist.y_test[:count]

    def calibration(self, x_pool: np.ndarray, y_pool: np.ndarray, size: int) -> np.ndarray:
        """``size`` training images picked at random (seeded, so runs repeat)."""
        rng = np.random.default_rng(CALIBRATION_SEED)
        return x_pool[rng.choice(len(x_pool), size, replace=False)][..., None]


def candidate_limit(max_digits: int) -> int:
    """Candidate digits per image at most: one batch, whatever the splitting tries."""
    return 4 * max_digits
