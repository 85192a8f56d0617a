"""The contract between stages: where files live and what an exported digit classifier is.

Training writes ``<models>/model.keras`` (+ ``saved_model/``, ``metrics.json``); conversion
writes ``<models>/ir/<variant>/model.xml``; inference and the benchmark read those defaults,
so the three commands chain with no arguments.

The IR contract (docs/convert.md "IR contract"): the tensor names, the rt_info metadata
conversion writes (:func:`write_metadata`) and reads back. ``model_type`` says what a model is;
what each kind's shapes are, and the check every runtime applies when it reads a model, are the
task layer's (:mod:`edgedigits.tasks`), so a new kind of model needs no change here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgedigits import CLASS_LABELS
from edgedigits.errors import UserError

if TYPE_CHECKING:  # openvino is imported only by the functions that read or write an IR
    import openvino as ov

MODELS_DIR_ENV = "EDGEDIGITS_MODELS"


def default_models_dir() -> Path:
    """``models/`` in the current folder (like Ultralytics' ``runs/``), or $EDGEDIGITS_MODELS."""
    return Path(os.environ.get(MODELS_DIR_ENV, "").strip() or "models")  # set but empty = unset


KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METRICS_FILE = "metrics.json"
# Everything one training run writes, published together (edgedigits.files.staged_set).
TRAINING_OUTPUTS = (KERAS_FILE, SAVED_MODEL_DIR, METRICS_FILE, "history.csv",
                    "training_curves.png", "confusion_matrix.png")
IR_DIR = "ir"
IR_FILE = "model.xml"
VARIANTS = ("fp32", "fp16", "int8")
# Inference prefers the fastest variant that is present.
VARIANT_PREFERENCE = ("int8", "fp16", "fp32")
# Everything one conversion writes in the IR folder, published together.
CONVERSION_OUTPUTS = (*VARIANTS, "report.json", "report.md")

# The IR's input/output contract (see README "IR contract").
IR_INPUT_NAME = "images"  # uint8, [N, 28, 28, 1] (N dynamic unless --batch), raw pixels 0-255,
#                           white digit on black like MNIST; /255 happens inside the graph
IR_OUTPUT_NAME = "probabilities"  # float32, [N, 10], softmax over digits 0-9

# What OpenVINO may compute non-quantized layers in (--precision): f32 for honest FP32 numbers
# (this CPU runs bf16 by default), bf16, f16.
PRECISIONS = ("f32", "bf16", "f16")

# rt_info metadata stored in every IR under this section; inference checks MODEL_TYPE.
RT_INFO_SECTION = "edgedigits"
MODEL_TYPE = "digit-classifier"
LABELS = CLASS_LABELS

# MNIST format: 28x28 uint8 images, white digit on black; ten classes, the digits 0-9.
IMAGE_SIZE = 28
NUM_CLASSES = len(LABELS)
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)

# The number reader (edgedigits.tasks.number_reader): one line of handwritten digits, white
# on black, scaled to 32 rows and padded to 192 columns, in; per output step (4 columns each) the
# softmax over the digits 0-9 and the CTC blank out. Same input name, element type, layout and
# scaling as the digit classifier; read by a CTC decoder, not an argmax.
NUMBER_READER = "number-reader"
NUMBER_READER_DIR = "number-reader"  # train/train.py --arch number-reader writes models/<this>/
LINE_SHAPE = (32, 192, 1)
LINE_STEPS = 48
LINE_CLASSES = NUM_CLASSES + 1  # the blank is class 10


def write_metadata(model: ov.Model, values: dict) -> None:
    """Store ``values`` (stringified) in the IR's rt_info section; ``save_model`` keeps them."""
    for key, value in values.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, key])


def read_metadata(model: ov.Model) -> dict[str, str]:
    """The "edgedigits" rt_info section of an IR as a dict of strings ({} if there is none)."""
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    import openvino as ov

    section = model.get_rt_info()[RT_INFO_SECTION]
    return {key: value.astype(str) if isinstance(value, ov.OVAny) else str(value)
            for key, value in section.items()}


def ir_model_type(model: ov.Model) -> str | None:
    """The ``model_type`` an IR's metadata declares (None without edgedigits metadata)."""
    return read_metadata(model).get("model_type")


def ir_variant(model: ov.Model, path: Path) -> str:
    """fp32 | fp16 | int8: the rt_info says so, else the folder name, else the graph itself."""
    import openvino as ov

    metadata = read_metadata(model)
    for key in ("variant", "precision"):
        value = metadata.get(key, "").lower()
        if value in VARIANTS:
            return value
    if path.parent.name in VARIANTS:
        return path.parent.name
    types = {op.get_type_name() for op in model.get_ops()}
    if "FakeQuantize" in types or "FakeConvert" in types:
        return "int8"
    if any(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f16
           for op in model.get_ops()):
        return "fp16"
    return "fp32"

def check_probabilities(probabilities: np.ndarray, model: object) -> np.ndarray:
    """A model whose outputs are not numbers (NaN, inf) is broken: say so, never print NaN."""
    if not np.isfinite(probabilities).all():
        raise UserError(f"model {model} is broken: its outputs are not numbers (NaN or "
                        "infinite); retrain or reconvert it")
    return probabilities
