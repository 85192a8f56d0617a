"""The benchmark's rows: which model file, run by which backend of the runtime registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedigits.errors import UserError
from edgedigits.runtime import DigitClassifier, get_backend, load_classifier


@dataclass(frozen=True)
class Variant:
    """One row of the benchmark: a model file and the registered backend that executes it."""

    name: str
    backend: str  # who makes the runtime, for people: "TensorFlow" | "OpenVINO" | ...
    label: str  # what the row is, for a person reading the table
    source: str  # "keras", "ir/<fp32|fp16|int8>", or a peer file exported from the Keras model
    precision: str  # what the model file holds; the child reports what actually executes
    runtime: str  # the edgedigits.runtime backend that runs it (what classify --backend runs)
    options: tuple[tuple[str, Any], ...] = ()  # load_classifier options for this row
    packages: tuple[str, ...] = ()  # modules the row needs beyond requirements.txt

    @property
    def is_peer(self) -> bool:
        return self.backend not in ("TensorFlow", "OpenVINO")


_ONNX_PACKAGES = ("onnxruntime", "onnx", "tf2onnx")
_LITERT_PACKAGES = ("ai_edge_litert",)

VARIANTS: tuple[Variant, ...] = (
    Variant("tf-predict", "TensorFlow", "Keras model.predict (what the tutorial calls)",
            "keras", "fp32", "keras-predict"),
    Variant("tf-function", "TensorFlow", "compiled tf.function, direct call (XLA when faster)",
            "keras", "fp32", "tensorflow", options=(("jit_compile", "auto"),)),
    Variant("ov-fp32", "OpenVINO", "FP32 IR, executed in f32 (INFERENCE_PRECISION_HINT=f32)",
            "ir/fp32", "fp32", "openvino", options=(("inference_precision", "f32"),)),
    Variant("ov-fp32-default", "OpenVINO", "FP32 IR, the device's default precision",
            "ir/fp32", "fp32", "openvino"),
    Variant("ov-fp16", "OpenVINO", "FP16-weights IR, device default precision", "ir/fp16", "fp16",
            "openvino"),
    Variant("ov-int8", "OpenVINO", "INT8 IR (NNCF post-training quantization)", "ir/int8", "int8",
            "openvino"),
    Variant("ort-fp32", "ONNX Runtime", "Keras ONNX export", "model.onnx", "fp32", "onnxruntime",
            packages=_ONNX_PACKAGES),
    Variant("ort-int8", "ONNX Runtime", "ONNX Runtime quantize_static (QDQ, per-channel)",
            "model-int8.onnx", "int8", "onnxruntime", packages=_ONNX_PACKAGES),
    Variant("litert-fp32", "LiteRT", "Keras LiteRT export", "model.tflite", "fp32", "litert",
            packages=_LITERT_PACKAGES),
    Variant("litert-int8", "LiteRT", "Keras LiteRT export, full-integer quantization",
            "model-int8.tflite", "int8", "litert", packages=_LITERT_PACKAGES),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}
PEERS_INSTALL_HINT = "pip install -r requirements-peers.txt"


@dataclass
class Row:
    """One variant's line in the report (measured, skipped or failed)."""

    variant: Variant
    model_path: Path | None = None
    status: str = "pending"  # "ok" | "skipped" | "failed"
    note: str = ""
    result: dict = field(default_factory=dict)
    agreement_with_keras: float | None = None
    user_error: bool = False  # failed because of its input (a foreign IR), not a crash


def parse_variant_names(text: str) -> list[str]:
    """``"ov-int8,tf-function"`` -> names, checked against VARIANTS (UserError otherwise)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError("--variants is empty; choose from " + ", ".join(VARIANTS_BY_NAME))
    unknown = [name for name in names if name not in VARIANTS_BY_NAME]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}; choose from "
                        + ", ".join(VARIANTS_BY_NAME))
    return list(dict.fromkeys(names))


def import_runtime(variant: Variant) -> None:
    """Import the variant's runtime library, so its (large) import time is reported apart."""
    get_backend(variant.runtime).import_library()


@dataclass
class Opened:
    """A loaded variant: the classifier every measurement uses, and for OpenVINO a second one
    with the THROUGHPUT hint (parallel streams) made on first use for streaming batches."""

    classifier: DigitClassifier
    variant: Variant
    model_path: Path
    device: str
    threads: int
    accept: tuple[str, ...] | None = None
    _throughput: DigitClassifier | None = field(default=None, repr=False)

    @property
    def has_throughput_twin(self) -> bool:
        return self.variant.runtime == "openvino"

    def throughput_classifier(self) -> DigitClassifier:
        if self._throughput is None:
            self._throughput = open_classifier(self.variant, self.model_path, self.device,
                                               self.threads, hint="throughput",
                                               accept=self.accept)
        return self._throughput

    def close(self) -> None:
        self.classifier.close()
        if self._throughput is not None:
            self._throughput.close()


def open_classifier(variant: Variant, model_path: Path, device: str, threads: int,
                    **options: Any) -> DigitClassifier:
    return load_classifier(model_path, variant.runtime, device, threads=threads,
                           **dict(variant.options), **options)


def open_variant(variant: Variant, model_path: Path, device: str, threads: int,
                 accept: tuple[str, ...] | None = None) -> Opened:
    """Load the row's model through the runtime registry, as classify --backend would;
    ``accept``: the kind of model benchmarked (a model of another kind is a UserError)."""
    return Opened(open_classifier(variant, model_path, device, threads, accept=accept), variant,
                  model_path, device, threads, accept)
