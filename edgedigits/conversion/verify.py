"""Conversion, step 5: each variant checked from the files just written — parity of the FP32
IR against the source model, accuracy of every variant — executed in real f32."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from edgedigits import contract
from edgedigits.contract import IMAGE_SHAPE
from edgedigits.errors import UserError
from edgedigits.tasks import Task, get_task

# Parity of the FP32 IR against the source model (issue 3): on this many test images ...
PARITY_IMAGES = 1000
PARITY_MIN_AGREEMENT = 0.999
PARITY_MAX_ABS_DIFF = 1e-4
# ... executed in real f32 (inference_precision="f32"): a CPU with bf16 would otherwise run
# bf16 and call it FP32.
EVALUATION_CHUNK = 1000


def score(task: Task, outputs: np.ndarray, answers: np.ndarray) -> float:
    """Accuracy: the share of inputs whose answer (the task's) is the expected one."""
    return float(np.mean(task.answers(outputs) == answers))


def agreement(task: Task, reference: np.ndarray, candidate: np.ndarray) -> float:
    """The share of inputs two models answer the same (the task's answers)."""
    return float(np.mean(task.answers(reference) == task.answers(candidate)))


class ParityError(Exception):
    """The FP32 IR does not reproduce the source model: a conversion bug, not a user mistake."""


def predict_ir(compiled: ov.CompiledModel, images: np.ndarray) -> np.ndarray:
    """Probabilities for uint8 ``images`` ([n,28,28] or [n,28,28,1]); any batch, static or not."""
    images = np.ascontiguousarray(images.reshape(-1, *IMAGE_SHAPE), dtype=np.uint8)
    batch_dim = compiled.input(0).get_partial_shape()[0]
    chunk = batch_dim.get_length() if batch_dim.is_static else EVALUATION_CHUNK
    request = compiled.create_infer_request()
    outputs = []
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        count = len(part)
        if batch_dim.is_static and count < chunk:  # pad the last partial batch
            part = np.concatenate([part, np.zeros((chunk - count, *IMAGE_SHAPE), np.uint8)])
        request.infer({0: part})
        outputs.append(request.get_output_tensor(0).data[:count].copy())
    return np.concatenate(outputs)


@dataclass
class Parity:
    images: int
    agreement: float
    max_abs_diff: float

    @property
    def ok(self) -> bool:
        return self.agreement >= PARITY_MIN_AGREEMENT and self.max_abs_diff <= PARITY_MAX_ABS_DIFF


def compare(reference: np.ndarray, candidate: np.ndarray,
            agree: Callable[[np.ndarray, np.ndarray], float] | None = None) -> Parity:
    """Agreement (top-1 for [n, 10] probability arrays; ``agree`` says for other models) and
    the largest absolute difference of two probability arrays."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    agree = agree or functools.partial(agreement, get_task(contract.MODEL_TYPE))
    return Parity(len(reference), agree(reference, candidate),
                  float(np.abs(reference - candidate).max()))


def check_parity(parity: Parity, what: str = "FP32 IR") -> None:
    """Raise ParityError unless agreement ≥ 99.9 % and max |diff| ≤ 1e-4."""
    if not parity.ok:
        raise ParityError(
            f"{what} does not match the source model on {parity.images} test images: "
            f"top-1 agreement {parity.agreement:.2%} (need ≥ {PARITY_MIN_AGREEMENT:.1%}), "
            f"max |softmax difference| {parity.max_abs_diff:.2e} "
            f"(need ≤ {PARITY_MAX_ABS_DIFF:.0e}); "
            "nothing was replaced"
        )


def check_probabilities(reference: np.ndarray, path: Path) -> None:
    sums = reference.sum(axis=-1)
    if not np.all(np.abs(sums - 1.0) < 1e-3) or reference.min() < 0:
        raise UserError(
            f"{path}: the model's outputs are not probabilities (rows sum to "
            f"{sums.min():.3g}..{sums.max():.3g}); the last layer must be a softmax"
        )


def default_precision(core: ov.Core) -> str:
    """What the CPU runs when nobody asks for f32 ("bf16" on this AVX-512 BF16 machine)."""
    return core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
