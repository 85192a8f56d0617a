"""The contract between stages: where files live and what an exported digit classifier is.

Training writes ``<models>/model.keras`` (+ ``saved_model/``, ``metrics.json``); conversion
writes ``<models>/ir/<variant>/model.xml``; inference and the benchmark read those defaults,
so the three commands chain with no arguments.

The IR contract (README "IR contract") lives here whole: the shapes and names, the rt_info
metadata conversion writes (:func:`write_metadata`) and the check every runtime applies when it
reads an IR (:func:`check_ir`). ``model_type`` says what a model is; :data:`MODEL_TYPES` lists
the kinds inference accepts, so a second kind of model can join without a second contract.
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

# Every kind of model inference accepts: input shape (without N), output shape (without N).
SHAPES = {
    MODEL_TYPE: (IMAGE_SHAPE, (NUM_CLASSES,)),
    NUMBER_READER: (LINE_SHAPE, (LINE_STEPS, LINE_CLASSES)),
}
MODEL_TYPES = tuple(SHAPES)
DESCRIPTIONS = {MODEL_TYPE: "digit classifier", NUMBER_READER: "number reader"}


def _shape_text(shape) -> str:
    return "[" + ", ".join("N" if dim is None else str(dim) for dim in shape) + "]"


def model_type_for(input_shape, output_shape) -> str | None:
    """Which kind of model (a MODEL_TYPES name) maps these shapes (batch first), if any."""
    input_shape, output_shape = tuple(input_shape)[1:], tuple(output_shape)[1:]
    for model_type, (inputs, outputs) in SHAPES.items():
        if input_shape == inputs and output_shape == outputs:
            return model_type
    return None


def check_signature(input_shape, output_shape, where: str,
                    accept: tuple[str, ...] = (MODEL_TYPE,)) -> str:
    """The kind of model these shapes make, one of ``accept`` (else UserError). A digit
    classifier maps [N, 28, 28, 1] images to [N, 10] class scores."""
    input_shape, output_shape = tuple(input_shape), tuple(output_shape)
    model_type = model_type_for(input_shape, output_shape)
    if model_type in accept:
        return model_type
    if model_type is not None:
        raise UserError(f"{where} is a {DESCRIPTIONS[model_type]}, not a "
                        f"{' or '.join(DESCRIPTIONS[t] for t in accept)}"
                        f"{WHERE_TO_USE[model_type]}")
    if MODEL_TYPE in accept:
        if len(input_shape) != 4 or input_shape[1:] != IMAGE_SHAPE:
            raise UserError(f"{where}: input must be 28x28x1 grayscale images "
                            f"(shape [N, 28, 28, 1]), got {_shape_text(input_shape)}")
        if len(output_shape) != 2 or output_shape[1] != NUM_CLASSES:
            raise UserError(f"{where}: output must be 10 digit classes (shape [N, 10]), "
                            f"got {_shape_text(output_shape)}")
    raise UserError(f"{where}: shapes {_shape_text(input_shape)} -> {_shape_text(output_shape)} "
                    "are no edgedigits model's")


# What to do with a model given where another kind was expected.
WHERE_TO_USE = {
    MODEL_TYPE: "",
    NUMBER_READER: " (it reads whole numbers: use it with --multi, the webcam or the server's "
                   "multi reading)",
}


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


def check_ir(model: ov.Model, path: Path,
             accept: tuple[str, ...] = (MODEL_TYPE,)) -> tuple[str, ...]:
    """Refuse any IR that is not an edgedigits model of a kind in ``accept``; return its
    labels. :func:`ir_model_type` says which kind it is."""
    import openvino as ov

    metadata = read_metadata(model)
    model_type = metadata.get("model_type")
    wanted = " or ".join(DESCRIPTIONS[t] for t in accept)
    if model_type not in MODEL_TYPES:
        found = "no edgedigits metadata" if model_type is None else f"model_type {model_type!r}"
        raise UserError(f"{path} is not an edgedigits {wanted} ({found}); "
                        "convert a trained model with convert/to_ir.py")
    if model_type not in accept:
        raise UserError(f"{path} is a {DESCRIPTIONS[model_type]}, not a {wanted}"
                        f"{WHERE_TO_USE[model_type]}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{path}: expected one input and one output, got "
                        f"{len(model.inputs)} and {len(model.outputs)}")
    inputs, outputs = SHAPES[model_type]
    input_shape = model.input(0).get_partial_shape()
    output_shape = model.output(0).get_partial_shape()
    expected_input = ov.PartialShape([-1, *inputs])
    expected_output = ov.PartialShape([-1, *outputs])
    if not (input_shape.compatible(expected_input) and output_shape.compatible(expected_output)):
        what = "28x28 digit classifier" if model_type == MODEL_TYPE else DESCRIPTIONS[model_type]
        raise UserError(f"{path} is not a {what}: input {input_shape}, "
                        f"output {output_shape} (expected {expected_input} -> {expected_output})")
    if model.input(0).get_element_type() != ov.Type.u8:
        raise UserError(f"{path}: input must be uint8 raw pixels, got "
                        f"{model.input(0).get_element_type()}")
    parts = metadata.get("labels", "").replace(",", " ").split()
    return tuple(parts) if len(parts) == NUM_CLASSES else LABELS


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
