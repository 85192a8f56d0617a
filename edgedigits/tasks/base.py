"""The task layer's interface and registry: one :class:`Task` per kind of model.

A model carries its kind as ``model_type`` (an IR's rt_info, or the shapes of a Keras model);
:func:`get_task` gives the one object that knows everything about that kind:

- what the model is: ``input_shape`` / ``output_shape`` (without the batch), a description
  and where to use it when it is given where another kind was expected;
- how it reads an image (:class:`edgedigits.image.Image`): :meth:`Task.prepare` turns the image
  into the model's inputs plus what is needed to map back, :meth:`Task.read` turns the model's
  outputs into one :class:`~edgedigits.tasks.result.Reading` (boxes in original pixels);
- how it is scored, calibrated and reported by conversion and the benchmark (``test_set``,
  ``answers``, ``calibration``, the words reports use, its goals).

Every consumer (classify, the video pipeline, the server and page, DigitReader, conversion,
the benchmark) asks the task and never branches on the kind. Adding a kind of model is one
module with a Task subclass and one :func:`register_task` call (see docs/architecture.md);
modules named in $EDGEDIGITS_TASKS (comma-separated) are imported on first use, so a kind can
also come from outside the package.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedigits import contract
from edgedigits.errors import UserError
from edgedigits.tasks.result import Reading

if TYPE_CHECKING:
    from edgedigits.image.image import Image

SINGLE = "single"  # the whole image is one item (classify without --multi, a webcam ROI)
MULTI = "multi"  # find every digit in the image (--multi, video, DigitReader.read)
MODES = (SINGLE, MULTI)
PLUGINS_ENV = "EDGEDIGITS_TASKS"


@dataclass
class Prepared:
    """An image made ready for one batched inference: the model's ``inputs`` (K, H, W) uint8
    and what the task needs to map the outputs back onto the image (``state``)."""

    inputs: np.ndarray
    image: Image | None = None
    state: Any = None
    mode: str = MULTI

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Task:
    """One kind of model. Subclasses set the fields and implement prepare/read/answers."""

    model_type: str = ""
    description: str = ""  # "digit classifier"
    input_shape: tuple[int, ...] = ()  # without N, e.g. (28, 28, 1)
    output_shape: tuple[int, ...] = ()  # without N, e.g. (10,)
    modes: tuple[str, ...] = MODES
    # each input is one digit (its ten probabilities are a digit's); False: an input holds
    # several (the number reader's lines), and the server sends no per-input probabilities
    one_digit_per_input: bool = True
    where_to_use: str = ""  # appended when the kind is refused: what to do with it instead
    # models/<default_folder>/ holds this kind's trained model; where the caller can use it and
    # gives no --model, it is preferred there (the number reader, for whole numbers)
    default_folder: str | None = None
    # conversion: the metadata it writes, what it does for this kind
    input_polarity: str = "white on black"
    output_kind: str = ""
    accuracy_controlled_int8: bool = False  # convert --max-drop (NNCF accuracy control)
    serving_repository: bool = False  # conversion publishes it to models/serving/ (OVMS)
    # conversion's and the benchmark's words and goals
    unit: str = "image"  # one input, for people
    accuracy_header: str = "accuracy"
    counts: str = "digits right"
    test_set_text: str = ""
    peers: bool = False  # ONNX Runtime / LiteRT rows are exported for this kind
    int8_max_drop_pt: float = 0.5  # goal: INT8 accuracy at most this many points under FP32
    speed_goals: bool = False  # the digit classifier's latency / throughput goals apply
    labels: tuple[str, ...] = field(default=tuple(str(d) for d in range(10)))

    # -- reading -------------------------------------------------------------------------

    def prepare(self, image: Image, mode: str = MULTI, *,
                max_items: int | None = None) -> Prepared:
        """``image`` -> the model's inputs (K, H, W) uint8 and how to map back. ``max_items``
        bounds K for live video (a batch of bounded size per frame)."""
        raise NotImplementedError

    def read(self, prepared: Prepared, outputs: np.ndarray) -> Reading:
        """The model's ``outputs`` for ``prepared.inputs`` -> one Reading, boxes in the
        original image's pixels."""
        raise NotImplementedError

    def batch_sizes(self, mode: str, max_items: int) -> tuple[int, ...]:
        """Every batch size one image can produce (warmed up before live video)."""
        if mode == SINGLE:
            return (1,)
        return tuple(1 << k for k in range(max(1, max_items - 1).bit_length() + 1))

    # -- scoring (conversion, benchmark) -------------------------------------------------

    def answers(self, outputs: np.ndarray) -> np.ndarray:
        """One answer per input, compared with ``==`` for accuracy and agreement."""
        raise NotImplementedError

    def test_set(self, mnist, count: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(inputs (N, H, W, 1) uint8, answers) made from MNIST *test* digits."""
        raise NotImplementedError

    def calibration(self, x_pool: np.ndarray, y_pool: np.ndarray, size: int) -> np.ndarray:
        """INT8 calibration inputs (size, H, W, 1) uint8 from MNIST *training* digits."""
        raise NotImplementedError

    # -- words ---------------------------------------------------------------------------

    @property
    def units(self) -> str:
        return f"{self.unit}s"

    def supports(self, mode: str) -> bool:
        return mode in self.modes

    def __hash__(self) -> int:
        return hash(self.model_type)


# --------------------------------------------------------------------------------------------
# The registry

_TASKS: dict[str, Task] = {}
_plugins_loaded = False


def register_task(task: Task) -> Task:
    """Make ``task`` the one for models whose ``model_type`` is ``task.model_type``."""
    if not task.model_type or not task.input_shape or not task.output_shape:
        raise ValueError("a task needs a model_type, an input_shape and an output_shape")
    _TASKS[task.model_type] = task
    return task


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for name in filter(None, (part.strip() for part in
                              os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UserError(f"${PLUGINS_ENV}: cannot import task module {name!r} "
                            f"({error})") from None


def all_tasks() -> tuple[Task, ...]:
    _load_plugins()
    return tuple(_TASKS.values())


def model_types() -> tuple[str, ...]:
    return tuple(task.model_type for task in all_tasks())


def kinds_for(mode: str) -> tuple[str, ...]:
    """The model types that can read in ``mode`` (SINGLE or MULTI)."""
    return tuple(task.model_type for task in all_tasks() if task.supports(mode))


def get_task(model_type: str | None) -> Task:
    """The task of ``model_type`` (UserError for a kind no registered task reads)."""
    _load_plugins()
    task = _TASKS.get(model_type or "")
    if task is None:
        raise UserError(f"no task reads models of type {model_type!r} (known: "
                        f"{', '.join(_TASKS)})")
    return task


def find_task(model_type: str | None) -> Task | None:
    _load_plugins()
    return _TASKS.get(model_type or "")


def task_for_shapes(input_shape, output_shape) -> Task | None:
    """The registered kind whose shapes (batch first) these are, if any."""
    inputs, outputs = tuple(input_shape)[1:], tuple(output_shape)[1:]
    return next((task for task in all_tasks()
                 if task.input_shape == inputs and task.output_shape == outputs), None)


def describe_kinds(accept) -> str:
    return " or ".join(get_task(model_type).description for model_type in accept)


def kind_of(model_type: str | None) -> Task:
    """The task of ``model_type``; the digit classifier's for a model that declares none (an
    IR converted before model types existed)."""
    return find_task(model_type) or get_task(contract.MODEL_TYPE)


# What the benchmark's peer rows cover.
PEERS_NOTE = "digit classifiers only (no ONNX Runtime / LiteRT export of the number reader)"
