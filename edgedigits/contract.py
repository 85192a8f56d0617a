"""The contract between stages: where files live and what an exported digit classifier is.

Training writes ``<models>/model.keras`` (+ ``saved_model/``, ``metrics.json``); conversion
writes ``<models>/ir/<variant>/model.xml``; inference and the benchmark read those defaults,
so the three commands chain with no arguments.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgedigits import CLASS_LABELS

MODELS_DIR_ENV = "EDGEDIGITS_MODELS"


def default_models_dir() -> Path:
    """``models/`` in the current folder (like Ultralytics' ``runs/``), or $EDGEDIGITS_MODELS."""
    return Path(os.environ.get(MODELS_DIR_ENV, "models"))


KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METRICS_FILE = "metrics.json"
IR_DIR = "ir"
IR_FILE = "model.xml"
VARIANTS = ("fp32", "fp16", "int8")
# Inference prefers the fastest variant that is present.
VARIANT_PREFERENCE = ("int8", "fp16", "fp32")

# The IR's input/output contract (see README "IR contract").
IR_INPUT_NAME = "images"  # uint8, [N, 28, 28, 1] (N dynamic unless --batch), raw pixels 0-255,
#                           white digit on black like MNIST; /255 happens inside the graph
IR_OUTPUT_NAME = "probabilities"  # float32, [N, 10], softmax over digits 0-9

# rt_info metadata stored in every IR under this section; inference checks MODEL_TYPE.
RT_INFO_SECTION = "edgedigits"
MODEL_TYPE = "digit-classifier"
LABELS = CLASS_LABELS
