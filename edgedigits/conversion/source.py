"""Conversion, step 2: the model to convert — a ``.keras`` file (Keras' safe mode) or a
SavedModel folder (its ``serving_default`` signature) — checked to be a model a task reads, with
a float reference ``predict`` and the way to hand it to OpenVINO."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from edgedigits import contract
from edgedigits.errors import UserError, first_line
from edgedigits.runtime.tensorflow_backend import load_keras_classifier
from edgedigits.tasks import task_for_shapes
from edgedigits.tasks.checks import check_signature


@dataclass
class SourceModel:
    """The model to convert, with a float reference ``predict`` (images in [0, 1])."""

    path: Path
    format: str  # "keras" | "saved_model"
    arch: str
    test_accuracy: float | None
    predict: Callable[[np.ndarray], np.ndarray]
    to_openvino: Callable[[], ov.Model]
    model_type: str = contract.MODEL_TYPE


def source_format(path: Path) -> str:
    """"keras" for a .keras/.h5 file, "saved_model" for a SavedModel folder; else UserError."""
    if not path.exists():
        raise UserError(
            f"{path}: no such file or folder (train a model first: python train/train.py)"
        )
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"{path}: a folder but not a SavedModel (no saved_model.pb inside)")
        return "saved_model"
    if path.suffix.lower() in (".keras", ".h5"):
        return "keras"
    raise UserError(f"{path}: expected a .keras file or a SavedModel folder")


def read_source_metrics(path: Path) -> dict:
    """Training's metrics.json beside the model (models/metrics.json), if present and readable."""
    metrics_path = path.parent / contract.METRICS_FILE
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _load_keras_source(path: Path) -> SourceModel:
    model = load_keras_classifier(path)
    task = task_for_shapes(model.inputs[0].shape, model.outputs[0].shape)
    model_type, input_shape = task.model_type, task.input_shape
    metrics = read_source_metrics(path)

    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(images, batch_size=500, verbose=0), dtype=np.float32)

    def to_openvino() -> ov.Model:
        # A Keras 3 model has to be told its input shape to be traced; the batch stays dynamic.
        return ov.convert_model(model, input=[-1, *input_shape], share_weights=False)

    return SourceModel(
        path=path, format="keras", arch=str(metrics.get("arch") or model.name),
        test_accuracy=_as_float(metrics.get("test_accuracy", metrics.get("test_line_accuracy"))),
        predict=predict, to_openvino=to_openvino, model_type=model_type,
    )


def _load_saved_model_source(path: Path) -> SourceModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # unreadable protobuf, missing variables, ...
        raise UserError(f"{path}: not a loadable SavedModel: {first_line(error)}") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise UserError(
            f"{path}: the SavedModel has no serving signature ('serving_default'); "
            "export it with model.export(path) or pass the .keras file"
        )
    _, input_specs = signature.structured_input_signature
    output_specs = signature.structured_outputs
    if len(input_specs) != 1 or not isinstance(output_specs, dict) or len(output_specs) != 1:
        raise UserError(f"{path}: expected a serving signature with one input and one output")
    (input_name, input_spec), = input_specs.items()
    (output_name, output_spec), = output_specs.items()
    model_type = check_signature(input_spec.shape.as_list(), output_spec.shape.as_list(),
                                 str(path)).model_type
    metrics = read_source_metrics(path)

    def predict(images: np.ndarray) -> np.ndarray:
        chunks = [
            signature(**{input_name: tf.constant(images[start : start + 500])})[output_name]
            for start in range(0, len(images), 500)
        ]
        return np.concatenate([chunk.numpy() for chunk in chunks]).astype(np.float32)

    def to_openvino() -> ov.Model:
        # OpenVINO's TensorFlow frontend reads the SavedModel's serving_default signature.
        return ov.convert_model(str(path), share_weights=False)

    return SourceModel(
        path=path, format="saved_model", arch=str(metrics.get("arch") or "unknown"),
        test_accuracy=_as_float(metrics.get("test_accuracy")), predict=predict,
        to_openvino=to_openvino, model_type=model_type,
    )


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load_source(path: Path) -> SourceModel:
    """Load and check the model at ``path`` (.keras or SavedModel folder)."""
    if source_format(path) == "keras":
        return _load_keras_source(path)
    return _load_saved_model_source(path)
