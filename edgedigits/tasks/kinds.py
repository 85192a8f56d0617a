"""What differs between the kinds of model (contract.SHAPES) where conversion and the
benchmark check them: the test set, how a model's output becomes one answer per input, the
words reports use, the goals.

Everything else (rows, processes, latency, throughput, memory, agreement with Keras, parity) is
one code path for every kind: answers are compared with ``==`` (digits for the digit classifier,
decoded strings for the number reader), so accuracy and agreement need no kind of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgedigits import contract

# The number reader's test lines: rendered from MNIST *test* digits with this seed; the first
# 1,000 are the lines convert/to_ir.py scores its IRs on (CALIBRATION_SEED, PARITY_IMAGES).
LINE_SEED = 0
FULL_LINES = 1000  # a full (not --quick) run: rendering costs ~6 ms a line


@dataclass(frozen=True)
class Kind:
    model_type: str  # a contract.MODEL_TYPES name
    unit: str  # one input, for people: "image" | "line"
    accuracy: str  # the accuracy column's header
    counts: str  # what accuracy counts, in words
    test_set_text: str  # what the test set is, for the report
    answers: Callable[[np.ndarray], np.ndarray]  # probabilities (N, ...) -> one answer each
    test_set: Callable  # (mnist, count or None) -> (inputs (N, H, W, 1) uint8, answers)
    peers: bool  # ONNX Runtime / LiteRT rows are exported for this kind
    int8_max_drop_pt: float  # goal: INT8 accuracy at most this many points under FP32
    speed_goals: bool  # the digit classifier's latency / throughput / peer goals apply

    @property
    def description(self) -> str:
        return contract.DESCRIPTIONS[self.model_type]

    @property
    def units(self) -> str:
        return f"{self.unit}s"


def _digits(probabilities: np.ndarray) -> np.ndarray:
    return np.argmax(probabilities, axis=1).astype(np.uint8)


def _numbers(probabilities: np.ndarray) -> np.ndarray:
    from edgedigits.tasks import number_reader as sequence

    return np.array([sequence.decode(steps).number for steps in probabilities], dtype=str)


def _digit_test_set(mnist, count: int | None) -> tuple[np.ndarray, np.ndarray]:
    count = count or len(mnist.x_test)
    return mnist.x_test[:count, :, :, None], mnist.y_test[:count]


def _line_test_set(mnist, count: int | None) -> tuple[np.ndarray, np.ndarray]:
    from edgedigits.training.number_reader import render_lines

    lines, texts = render_lines(mnist.x_test, mnist.y_test, count or FULL_LINES, seed=LINE_SEED,
                                log=lambda _: None)
    return lines[..., None], np.array(texts, dtype=str)


KINDS = {
    contract.MODEL_TYPE: Kind(
        contract.MODEL_TYPE, "image", "accuracy", "digits right", "MNIST test images", _digits,
        _digit_test_set, peers=True, int8_max_drop_pt=0.10, speed_goals=True),
    contract.NUMBER_READER: Kind(
        contract.NUMBER_READER, "line", "lines exact", "lines read exactly",
        f"lines of handwritten digits rendered from MNIST test digits (seed {LINE_SEED}); "
        "accuracy = lines read exactly (the whole number, after CTC decoding), agreement = "
        "the same decoded number as Keras",
        _numbers, _line_test_set, peers=False, int8_max_drop_pt=0.5, speed_goals=False),
}
PEERS_NOTE = "digit classifiers only (no ONNX Runtime / LiteRT export of the number reader)"


def kind_of(model_type: str | None) -> Kind:
    return KINDS.get(model_type or contract.MODEL_TYPE, KINDS[contract.MODEL_TYPE])
