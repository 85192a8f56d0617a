"""Peer runtimes a user might pick instead of OpenVINO: ONNX Runtime and LiteRT.

Optional (``pip install -r requirements-peers.txt``); the benchmark skips their rows when the
packages are missing. Both start from the same Keras model through Keras' own exporters
(``model.export(format="onnx" | "litert")``), and both get an INT8 variant made with their own
tooling, calibrated like NNCF on training images:

- ONNX Runtime: ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel weights, uint8
  activations / int8 weights: the pairing ONNX Runtime recommends for x86 with VNNI);
- LiteRT: the Keras LiteRT exporter with the converter's full-integer quantization
  (``optimizations=[DEFAULT]`` + a representative dataset), float input and output kept.

Exporting needs TensorFlow, so it runs in a child process of its own
(``python -m edgedigits.runtime.peers SPEC.json``); the backends that run these files never
import it.
Each backend uses its runtime's fastest honest calling pattern: buffers allocated once, the
uint8 -> float /255 written straight into the runtime's input (these models take floats; the
OpenVINO IR does that step in its graph), no per-call allocation of outputs.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgedigits.contract import IMAGE_SHAPE, NUM_CLASSES
from edgedigits.errors import UserError, first_line
from edgedigits.runtime import DigitClassifier, as_batch, in_batches

INV_255 = np.float32(1.0 / 255.0)


# --------------------------------------------------------------------------------------------
# Export (child process with TensorFlow)


def _export_onnx(model, output: Path) -> Path:
    path = output / "model.onnx"
    model.export(str(path), format="onnx", verbose=False)
    return path


def _quantize_onnx(source: Path, output: Path, calibration: np.ndarray) -> Path:
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnxruntime.InferenceSession(
        str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class TrainingImages(CalibrationDataReader):
        def __init__(self) -> None:
            self._images = iter(calibration)

        def get_next(self):
            image = next(self._images, None)
            if image is None:
                return None
            return {input_name: (image[None, :, :, None] * INV_255).astype(np.float32)}

    prepared = output / "model-prepared.onnx"
    # ONNX shape inference is enough for this graph; the symbolic pass would need sympy.
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    path = output / "model-int8.onnx"
    quantize_static(str(prepared), str(path), TrainingImages(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    prepared.unlink()
    return path


def _export_litert(model, output: Path, calibration: np.ndarray | None) -> Path:
    if calibration is None:
        path = output / "model.tflite"
        model.export(str(path), format="litert", verbose=False)
        return path
    import tensorflow as tf

    def representative_dataset():
        for image in calibration:
            yield [(image[None, :, :, None] * INV_255).astype(np.float32)]

    path = output / "model-int8.tflite"
    # Keras passes these on to the TFLite converter.
    model.export(str(path), format="litert", verbose=False,
                 optimizations=[tf.lite.Optimize.DEFAULT],
                 representative_dataset=representative_dataset)
    return path


def export_peer_models(keras_model: Path, output: Path, calibration: np.ndarray,
                       formats: Sequence[str]) -> dict:
    """Write the requested peer files (names as the benchmark variants' ``source``).

    Returns ``{"files": {format: path}, "errors": {format: message}}``: one exporter failing
    (a converter bug, a missing package) costs only its own rows.
    """
    from edgedigits.runtime.tensorflow_backend import load_keras_classifier

    output.mkdir(parents=True, exist_ok=True)
    model = load_keras_classifier(keras_model)
    model(np.zeros((1, 28, 28, 1), np.float32))  # the ONNX exporter wants a model that ran
    steps = {
        "model.onnx": lambda: _export_onnx(model, output),
        "model-int8.onnx": lambda: _quantize_onnx(output / "model.onnx", output, calibration),
        "model.tflite": lambda: _export_litert(model, output, None),
        "model-int8.tflite": lambda: _export_litert(model, output, calibration),
    }
    wanted = set(formats)
    if "model-int8.onnx" in wanted:
        wanted.add("model.onnx")  # quantization starts from the float export
    files, errors = {}, {}
    for name, step in steps.items():
        if name not in wanted:
            continue
        print(f"progress: exporting {name}", flush=True)
        try:
            files[name] = str(step())
        except Exception as error:  # each exporter is someone else's code; keep the others
            errors[name] = f"{type(error).__name__}: {first_line(error)}"[:300]
    return {"files": files, "errors": errors}


def _child_main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    started = time.perf_counter()
    try:
        result = export_peer_models(Path(spec["keras_model"]), Path(spec["output"]),
                                    np.load(spec["calibration"]), spec["formats"])
    except UserError as error:  # the Keras model itself is unusable: the parent refuses it
        result = {"error": str(error), "user_error": True}
    result["seconds"] = time.perf_counter() - started
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# Backends (processes without TensorFlow): registered in edgedigits.runtime as "onnxruntime"
# and "litert", so classify, webcam and the benchmark run them like any other.


def _cpu_model(model_path: str | Path, device: str, backend: str) -> tuple[Path, str]:
    """The model file and device of a CPU-only peer backend (UserError otherwise)."""
    path = Path(model_path)
    if not path.is_file():
        raise UserError(f"model not found: {path}")
    if device.upper() != "CPU":
        raise UserError(f"the {backend} backend runs on CPU only, not {device!r}")
    return path, "CPU"


def _file_precision(path: Path) -> str:
    return "int8" if "int8" in path.name else "f32"


class OnnxRuntimeClassifier(DigitClassifier):
    """ONNX Runtime, CPU execution provider, all graph optimizations, I/O bound once per shape."""

    backend = "onnxruntime"

    def __init__(self, model_path: str | Path, device: str = "CPU", *,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_path, self.device = _cpu_model(model_path, device, self.backend)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.model_path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own types for a bad file
            raise UserError(f"cannot read ONNX model {self.model_path}: "
                            f"{first_line(error)}") from None
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._bound: dict[int, tuple] = {}
        self.variant = self.precision = _file_precision(self.model_path)
        self.details = {"onnxruntime": ort.__version__, "providers": ["CPUExecutionProvider"],
                        "calling": "run_with_iobinding, buffers bound once per batch size"}

    def _binding(self, count: int) -> tuple:
        bound = self._bound.get(count)
        if bound is None:
            inputs = np.zeros((count, *IMAGE_SHAPE), np.float32)
            outputs = np.zeros((count, NUM_CLASSES), np.float32)
            binding = self._session.io_binding()
            binding.bind_cpu_input(self._input, inputs)
            binding.bind_output(self._output, "cpu", 0, np.float32, list(outputs.shape),
                                outputs.ctypes.data)
            bound = self._bound[count] = (binding, inputs, outputs)
        return bound

    def _run(self, images: np.ndarray) -> np.ndarray:
        binding, inputs, outputs = self._binding(len(images))
        np.multiply(images, INV_255, out=inputs)
        self._session.run_with_iobinding(binding)
        return outputs

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        return in_batches(as_batch(images), batch_size, self._run)

    def bind_single(self) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "_single_buffers", None) is None:
            _, _, outputs = self._binding(1)
            self._single_buffers = (np.zeros((1, *IMAGE_SHAPE), np.uint8), outputs)
        return self._single_buffers

    def infer_single(self) -> None:  # the output buffer is bound to the session: no copy
        self._run(self.bind_single()[0])


class LiteRTClassifier(DigitClassifier):
    """LiteRT (ai-edge-litert) interpreter with XNNPACK, one interpreter per batch size.

    Input and output are read and written through the interpreter's own tensor views, so no
    array is allocated per call.
    """

    backend = "litert"

    def __init__(self, model_path: str | Path, device: str = "CPU", *,
                 threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.model_path, self.device = _cpu_model(model_path, device, self.backend)
        self._make = lambda: Interpreter(model_path=str(self.model_path), num_threads=threads)
        self._interpreters: dict[int, tuple] = {}
        try:
            self._interpreter(1)
        except ValueError as error:  # LiteRT's error for a file that is not a model
            raise UserError(f"cannot read LiteRT model {self.model_path}: "
                            f"{first_line(error)}") from None
        self.variant = self.precision = _file_precision(self.model_path)
        self.details = {"ai_edge_litert": _package_version("ai-edge-litert"),
                        "calling": "invoke() on tensor views, one interpreter per batch size"}

    def _interpreter(self, count: int) -> tuple:
        entry = self._interpreters.get(count)
        if entry is None:
            interpreter = self._make()
            input_index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(input_index, [count, *IMAGE_SHAPE])
            interpreter.allocate_tensors()
            output_index = interpreter.get_output_details()[0]["index"]
            entry = (interpreter, interpreter.tensor(input_index),
                     interpreter.tensor(output_index))
            self._interpreters[count] = entry
        return entry

    def _run(self, images: np.ndarray) -> np.ndarray:
        # The views are fetched per call and never kept (a copy is returned): LiteRT refuses to
        # invoke() while a numpy view of its buffers is alive.
        interpreter, input_view, output_view = self._interpreter(len(images))
        np.multiply(images, INV_255, out=input_view())
        interpreter.invoke()
        return output_view().copy()

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        return in_batches(as_batch(images), batch_size, self._run)

    def infer_single(self) -> None:
        image, output = self.bind_single()
        output[...] = self._run(image)


def _package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
