"""Conversion: a trained Keras model → OpenVINO IR (FP32, FP16 weights, INT8 by NNCF), verified.

(Over 400 lines on purpose: the stage is one ordered story — load, convert, quantize, verify,
publish, report — whose steps share the staging folder and the report; what differs per kind of
model is the task's, :mod:`edgedigits.tasks`.)

The steps, in order (``convert`` runs them):

1. Check the input path, the output folder and the MNIST data up front (one clear error each).
2. Load the source model — a ``.keras`` file in Keras' safe mode, or a SavedModel folder through
   its ``serving_default`` signature — and check it maps 28x28x1 images to 10 class scores.
3. ``openvino.convert_model`` → ``PrePostProcessor``: the IR takes uint8 pixels and divides by
   255 inside the graph, input named "images", output "probabilities" (see ``contract``).
4. Variants: FP32; FP16 (weights compressed by ``save_model``); INT8 (``nncf.quantize`` on the
   OpenVINO model, calibrated on MNIST *training* images; or
   ``nncf.quantize_with_accuracy_control`` against the held-out validation split).
5. Verify every variant from the files just written: parity of the FP32 IR against the source
   model on 1,000 test images (executed in f32), accuracy of every variant on the 10,000 test
   images. A broken FP32 parity raises ``ParityError`` and nothing is replaced.
6. Move the variant folders into place (atomically, all verified first), then write
   ``report.json`` and ``report.md``.

TensorFlow and NNCF are imported lazily: reading the metadata of an IR needs OpenVINO only.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import openvino as ov

from edgedigits import __version__, contract
from edgedigits.contract import IMAGE_SHAPE, write_metadata
from edgedigits.errors import UserError, first_line
from edgedigits.files import (
    check_outputs,
    output_lock,
    staged_set,
    write_json,
    write_text,
)
from edgedigits.model_repository import publish_best
from edgedigits.runtime.openvino_backend import OpenVINOClassifier
from edgedigits.runtime.tensorflow_backend import check_keras_archive, load_keras_classifier
from edgedigits.tasks import Task, get_task, task_for_shapes
from edgedigits.tasks.checks import check_signature
from edgedigits.tensorflow_import import import_tensorflow

# INT8 calibration. On the tutorial model (5 epochs, 98.72 %) 100, 300, 1,000 and 3,000 images
# all land within 0.07 pt of FP32 (see README); 300 is NNCF's own default and takes ~2 s.
DEFAULT_CALIBRATION_SIZE = 300
# Full bias correction instead of NNCF's fast variant: for these small CNNs it costs well under
# a second and measured closer to FP32 (tutorial model: 0.03 pt drop against 0.06 pt).
FAST_BIAS_CORRECTION = False
# The validation split is the last 5,000 training images (as in training); calibration images
# are always drawn from the part before it, so validation stays unseen by calibration.
VALIDATION_SIZE = 5000
CALIBRATION_SEED = 0

# Parity of the FP32 IR against the source model (issue 3): on this many test images ...
PARITY_IMAGES = 1000
PARITY_MIN_AGREEMENT = 0.999
PARITY_MAX_ABS_DIFF = 1e-4
# ... executed in real f32 (inference_precision="f32"): a CPU with bf16 would otherwise run
# bf16 and call it FP32.
EVALUATION_CHUNK = 1000

VARIANT_PRECISION = {
    "fp32": "FP32",
    "fp16": "FP16 weights, FP32 activations",
    "int8": "INT8 weights and activations (NNCF post-training quantization)",
}

# The rt_info keys this stage writes under contract.RT_INFO_SECTION (all values strings).
METADATA_KEYS = (
    "model_type", "labels", "input_name", "input_element_type", "input_shape", "input_layout",
    "input_range", "input_polarity", "output_name", "output_shape", "output_kind",
    "source_arch", "source_test_accuracy", "source_format", "source_file",
    "variant", "precision", "batch", "calibration_size", "quantization",
    "edgedigits_version", "openvino_version",
)


def score(task: Task, outputs: np.ndarray, answers: np.ndarray) -> float:
    """Accuracy: the share of inputs whose answer (the task's) is the expected one."""
    return float(np.mean(task.answers(outputs) == answers))


def agreement(task: Task, reference: np.ndarray, candidate: np.ndarray) -> float:
    """The share of inputs two models answer the same (the task's answers)."""
    return float(np.mean(task.answers(reference) == task.answers(candidate)))


class ParityError(Exception):
    """The FP32 IR does not reproduce the source model: a conversion bug, not a user mistake."""


@dataclass
class ConversionOptions:
    input_path: Path
    output_dir: Path | None = None  # default: <input's folder>/ir
    fp16: bool = False
    int8: bool = False
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    max_drop: float | None = None  # accuracy-controlled INT8 when set (0.001 = 0.1 pt)
    batch: int | None = None  # static batch size; None = dynamic
    data_dir: Path | None = None
    verbose: bool = False

    @property
    def variants(self) -> list[str]:
        return ["fp32"] + (["fp16"] if self.fp16 else []) + (["int8"] if self.int8 else [])


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


@dataclass
class VariantResult:
    variant: str
    path: str
    size_bytes: int
    test_accuracy: float
    agreement_with_keras: float
    max_abs_diff: float
    seconds: float
    precision: str
    batch: str
    accuracy_drop_pt: float | None = None  # INT8 vs FP32, percentage points
    calibration_size: int | None = None
    quantization: str | None = None


@dataclass
class ConversionReport:
    source: dict
    settings: dict
    parity: dict
    variants: list[VariantResult] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    created: str = ""
    files: list[str] = field(default_factory=list)
    removed_stale: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("files")
        return data


# --------------------------------------------------------------------------------------------
# 1. Inputs checked up front
# --------------------------------------------------------------------------------------------
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


def default_output_dir(input_path: Path) -> Path:
    """``<folder holding the input>/ir``: models/model.keras and models/saved_model → models/ir."""
    return input_path.parent / contract.IR_DIR


def load_data(options: ConversionOptions):
    from edgedigits.data.mnist import load_mnist

    try:
        return load_mnist(options.data_dir)
    except UserError as error:
        why = (
            "--int8 needs MNIST training images for calibration"
            if options.int8
            else "MNIST test images are needed to verify the IR"
        )
        raise UserError(f"{why}: {error}") from None


def calibration_pool(mnist) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(calibration pool images, labels, validation images, labels), all from the training set."""
    x_pool, y_pool, x_val, y_val = mnist.split_validation(VALIDATION_SIZE)
    return x_pool, y_pool, x_val, y_val


def check_calibration_size(size: int, pool_size: int) -> None:
    if size <= 0 or size > pool_size:
        raise UserError(
            f"--calibration-size must be between 1 and {pool_size} (the training images less the "
            f"{VALIDATION_SIZE} held out for validation), got {size}"
        )


# --------------------------------------------------------------------------------------------
# 2. The source model
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# 3. OpenVINO model with the edge input contract
# --------------------------------------------------------------------------------------------
def add_uint8_input(model: ov.Model) -> ov.Model:
    """Make the IR take raw uint8 pixels: convert and divide by 255 inside the graph."""
    from openvino.preprocess import PrePostProcessor

    preprocessor = PrePostProcessor(model)
    preprocessor.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    preprocessor.input().model().set_layout(ov.Layout("NHWC"))
    preprocessor.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    preprocessor.output().tensor().set_element_type(ov.Type.f32)
    model = preprocessor.build()
    model.input(0).get_tensor().set_names({contract.IR_INPUT_NAME})
    model.input(0).get_node().set_friendly_name(contract.IR_INPUT_NAME)
    model.output(0).get_tensor().set_names({contract.IR_OUTPUT_NAME})
    return model


def build_float_ir(source: SourceModel) -> ov.Model:
    """The converted model with uint8 "images" in and "probabilities" out; batch dynamic."""
    model = source.to_openvino()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{source.path}: expected one input and one output after conversion")
    return add_uint8_input(model)


def set_static_batch(model: ov.Model, batch: int | None,
                     input_shape: tuple[int, ...] = IMAGE_SHAPE) -> ov.Model:
    if batch is not None:
        model.reshape({contract.IR_INPUT_NAME: ov.PartialShape([batch, *input_shape])})
    return model


def metadata_for(source: SourceModel, variant: str, options: ConversionOptions,
                 quantization: str = "") -> dict:
    batch = str(options.batch) if options.batch else "dynamic"
    n = batch if options.batch else "?"
    task = get_task(source.model_type)
    return {
        "model_type": source.model_type,
        # Space-separated, as OpenVINO serializes lists (and as Model API's model_info/labels).
        "labels": " ".join(contract.LABELS),
        "input_name": contract.IR_INPUT_NAME,
        "input_element_type": "u8",
        "input_shape": "[" + ",".join([n, *map(str, task.input_shape)]) + "]",
        "input_layout": "NHWC",
        "input_range": "0-255 raw pixels; divided by 255 inside the graph",
        "input_polarity": task.input_polarity,
        "output_name": contract.IR_OUTPUT_NAME,
        "output_shape": "[" + ",".join([n, *map(str, task.output_shape)]) + "]",
        "output_kind": task.output_kind,
        "source_arch": source.arch,
        "source_test_accuracy": (
            "" if source.test_accuracy is None else f"{source.test_accuracy:.6f}"
        ),
        "source_format": source.format,
        "source_file": source.path.name,
        "variant": variant,
        "precision": VARIANT_PRECISION[variant],
        "batch": batch,
        "calibration_size": str(options.calibration_size) if variant == "int8" else "",
        "quantization": quantization,
        "edgedigits_version": __version__,
        "openvino_version": ov.get_version(),
    }


# --------------------------------------------------------------------------------------------
# 4. INT8
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_unless(verbose: bool):
    """NNCF draws rich progress bars on stdout regardless of its log level: hide them."""
    if verbose:
        yield
        return
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def quantize_int8(float_ir: ov.Model, calibration_images: np.ndarray,
                  validation: tuple[np.ndarray, np.ndarray] | None, max_drop: float | None,
                  verbose: bool = False) -> tuple[ov.Model, str]:
    """INT8 with NNCF on the uint8-input model (so calibration sees exactly what the edge feeds).

    Quantizing before or after adding the uint8 pre-processing gave the same graph (NNCF puts its
    first FakeQuantize after the /255) and the same accuracy; after is simpler and keeps
    calibration on raw pixels. Returns the model and a description of what was done.
    """
    import nncf

    def one_image_batch(image: np.ndarray) -> np.ndarray:
        return image[None]

    calibration = nncf.Dataset(list(calibration_images), one_image_batch)
    size = len(calibration_images)
    with _quiet_unless(verbose):
        if max_drop is None:
            quantized = nncf.quantize(
                float_ir, calibration, subset_size=size,
                fast_bias_correction=FAST_BIAS_CORRECTION,
            )
            return quantized, (
                f"nncf.quantize (subset_size={size}, "
                f"fast_bias_correction={FAST_BIAS_CORRECTION})"
            )

        x_val, y_val = validation

        def validation_accuracy(compiled: ov.CompiledModel, items) -> tuple[float, list[float]]:
            items = list(items)
            images = np.stack([image for image, _ in items])
            labels = np.array([label for _, label in items])
            correct = (predict_ir(compiled, images).argmax(axis=1) == labels).astype(float)
            return float(correct.mean()), correct.tolist()

        validation_set = nncf.Dataset(
            list(zip(x_val[..., None], y_val, strict=True)), lambda item: item[0][None]
        )
        quantized = nncf.quantize_with_accuracy_control(
            float_ir, calibration, validation_set, validation_accuracy,
            max_drop=max_drop, subset_size=size, fast_bias_correction=FAST_BIAS_CORRECTION,
        )
    return quantized, (
        f"nncf.quantize_with_accuracy_control (subset_size={size}, max_drop={max_drop}, "
        f"fast_bias_correction={FAST_BIAS_CORRECTION}, "
        f"validated on {len(x_val)} held-out training images)"
    )


# --------------------------------------------------------------------------------------------
# 5. Verification
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# 6. The whole stage
# --------------------------------------------------------------------------------------------
def folder_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def convert(options: ConversionOptions, log: Callable[[str], None] = print) -> ConversionReport:
    """Run the conversion stage; returns the report (also written to the output folder)."""
    started = time.perf_counter()
    input_path = Path(options.input_path)
    if source_format(input_path) == "keras":
        check_keras_archive(input_path)
    output_dir = Path(options.output_dir) if options.output_dir else default_output_dir(input_path)
    check_outputs(folders={"--output": output_dir}, inputs={"--input": input_path})
    output_existed = output_dir.exists()
    try:
        with output_lock(output_dir):
            return _convert_into(output_dir, input_path, options, log, started)
    except BaseException:
        if not output_existed:  # leave no empty output folder behind a failed first run
            with contextlib.suppress(OSError):
                output_dir.rmdir()
        raise


def _convert_into(output_dir: Path, input_path: Path, options: ConversionOptions,
                  log: Callable[[str], None], started: float) -> ConversionReport:
    if options.max_drop is not None and not options.int8:
        raise UserError("--max-drop applies to INT8: add --int8")
    if options.max_drop is not None and not 0 < options.max_drop < 1:
        raise UserError(
            f"--max-drop is a fraction of accuracy (0.001 = 0.1 pt), got {options.max_drop}"
        )

    mnist = load_data(options)
    x_pool, y_pool, x_val, y_val = calibration_pool(mnist)
    if options.int8:
        check_calibration_size(options.calibration_size, len(x_pool))
    log(f"data: {mnist.source}")

    import_tensorflow(options.verbose)
    source = load_source(input_path)
    log(f"source: {input_path} ({source.format}, arch {source.arch})")

    # Reference outputs of the source model, on float images in [0, 1] exactly as in training.
    task = get_task(source.model_type)
    if options.max_drop is not None and not task.accuracy_controlled_int8:
        raise UserError(f"--max-drop is for digit classifiers; {input_path} is a "
                        f"{task.description}")
    test_inputs, test_labels = task.test_set(mnist, None)
    parity_images = test_inputs[:PARITY_IMAGES]
    reference = source.predict(parity_images.reshape(-1, *task.input_shape).astype(np.float32)
                               / 255.0)
    check_probabilities(reference, input_path)

    core = ov.Core()
    cpu_default_precision = default_precision(core)
    report = ConversionReport(
        source={
            "path": str(input_path), "format": source.format, "arch": source.arch,
            "test_accuracy": source.test_accuracy,
        },
        settings={
            "variants": options.variants, "batch": options.batch or "dynamic",
            "model_type": task.model_type,
            "input": f"{contract.IR_INPUT_NAME}: u8 [N,{','.join(map(str, task.input_shape))}], "
                     "raw pixels, /255 in the graph",
            "output": f"{contract.IR_OUTPUT_NAME}: f32 [N,{','.join(map(str, task.output_shape))}]"
                      " softmax",
            "calibration_size": options.calibration_size if options.int8 else None,
            "max_drop": options.max_drop,
            "parity_images": PARITY_IMAGES,
            "accuracy_images": len(test_inputs),
            "evaluation_precision": "f32 (INFERENCE_PRECISION_HINT=f32)",
            "data": mnist.source,
        },
        parity={},
        environment={
            "openvino": ov.get_version(), "edgedigits": __version__,
            "cpu": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            "cpu_default_inference_precision": cpu_default_precision,
        },
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )

    results: dict[str, VariantResult] = {}
    with staged_set(output_dir, "ir", contract.CONVERSION_OUTPUTS) as staging:
        # Every variant is staged and verified first; the set (variants + report) is published
        # in one step when this block ends without an error. Any failure leaves the previous set.
        for variant in options.variants:
            variant_started = time.perf_counter()
            target = output_dir / variant
            staged = staging / variant
            model = build_float_ir(source)
            quantization = ""
            if variant == "int8":
                calibration_images = task.calibration(x_pool, y_pool, options.calibration_size)
                log(f"int8: calibrating on {len(calibration_images)} {task.units} of "
                    "MNIST training digits")
                model, quantization = quantize_int8(
                    model, calibration_images, (x_val, y_val), options.max_drop, options.verbose
                )
            set_static_batch(model, options.batch, task.input_shape)
            write_metadata(model, metadata_for(source, variant, options, quantization))
            staged.mkdir()
            xml_path = staged / contract.IR_FILE
            try:
                ov.save_model(model, xml_path, compress_to_fp16=(variant == "fp16"))
            except RuntimeError as error:
                raise UserError(f"cannot write {target}: {first_line(error)}") from None

            # Verify the files just written, not the in-memory model, the way inference loads
            # them (the runtime's OpenVINO backend checks the IR contract too), in true f32.
            written = OpenVINOClassifier(xml_path, "CPU", inference_precision="f32", core=core,
                                         accept=(task.model_type,))
            parity = compare(reference, written.predict(parity_images),
                             functools.partial(agreement, task))
            if variant == "fp32":
                check_parity(parity)
                report.parity = {
                    "images": parity.images, "agreement_with_keras": parity.agreement,
                    "max_abs_diff": parity.max_abs_diff,
                    "min_agreement": PARITY_MIN_AGREEMENT, "max_allowed_diff": PARITY_MAX_ABS_DIFF,
                    "precision": "f32", "ok": parity.ok,
                }
            accuracy = score(task, written.predict(test_inputs), test_labels)
            written.close()
            result = VariantResult(
                variant=variant,
                path=str(target / contract.IR_FILE),
                size_bytes=folder_size(staged),
                test_accuracy=accuracy,
                agreement_with_keras=parity.agreement,
                max_abs_diff=parity.max_abs_diff,
                seconds=round(time.perf_counter() - variant_started, 2),
                precision=VARIANT_PRECISION[variant],
                batch=str(options.batch or "dynamic"),
            )
            if variant == "int8":
                result.calibration_size = options.calibration_size
                result.quantization = quantization
                result.accuracy_drop_pt = round((results["fp32"].test_accuracy - accuracy) * 100, 4)
            results[variant] = result
            log(f"{variant}: verified ({accuracy:.2%} test accuracy, {result.seconds:.1f} s)")

        report.variants = list(results.values())
        for variant in contract.VARIANTS:
            stale = output_dir / variant
            # A variant left from an earlier conversion (maybe of another model) would be picked
            # up by inference, which prefers int8: the new set leaves it out.
            if variant not in results and (stale / contract.IR_FILE).exists():
                report.removed_stale.append(str(stale))
        report.settings["total_seconds"] = round(time.perf_counter() - started, 2)
        write_json(staging / "report.json", report.to_json())
        write_text(staging / "report.md", report_markdown(report))
    for result in report.variants:
        xml = Path(result.path)
        report.files += [str(xml), str(xml.with_suffix(".bin"))]
    report.files += [str(output_dir / "report.json"), str(output_dir / "report.md")]
    # The OVMS model repository beside the IR folder gets this run's best variant as a new version.
    if task.serving_repository:
        report.files += publish_best(output_dir, [result.variant for result in report.variants])
    return report


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def summary_rows(report: ConversionReport) -> list[list[str]]:
    rows = [["variant", "size", "test accuracy", "agreement with Keras", "max abs diff", "time"]]
    for result in report.variants:
        accuracy = f"{result.test_accuracy:.2%}"
        if result.accuracy_drop_pt is not None:
            accuracy += f" ({-result.accuracy_drop_pt:+.2f} pt)"
        rows.append([
            result.variant, human_size(result.size_bytes), accuracy,
            f"{result.agreement_with_keras:.2%}", f"{result.max_abs_diff:.1e}",
            f"{result.seconds:.1f} s",
        ])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def report_markdown(report: ConversionReport) -> str:
    rows = summary_rows(report)
    table = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    table += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    parity = report.parity
    source_accuracy = report.source.get("test_accuracy")
    lines = [
        "# OpenVINO IR conversion report",
        "",
        f"Source: `{report.source['path']}` ({report.source['format']}, "
        f"arch `{report.source['arch']}`"
        + (f", Keras test accuracy {source_accuracy:.2%}" if source_accuracy is not None else "")
        + f"). Created {report.created}.",
        "",
        *table,
        "",
        f"Test accuracy on {report.settings['accuracy_images']} MNIST test images, executed with "
        "`INFERENCE_PRECISION_HINT=f32`. Agreement and max |diff| against the source model on "
        f"the first {report.settings['parity_images']} test images.",
        "",
        f"FP32 parity: {parity.get('agreement_with_keras', 0):.2%} top-1 agreement, max |softmax "
        f"difference| {parity.get('max_abs_diff', float('nan')):.2e} "
        f"(required ≥ {PARITY_MIN_AGREEMENT:.1%} and ≤ {PARITY_MAX_ABS_DIFF:.0e}).",
        "",
        f"IR contract: input {report.settings['input']}; output {report.settings['output']}; "
        f"batch {report.settings['batch']}.",
    ]
    int8 = next((result for result in report.variants if result.variant == "int8"), None)
    if int8 is not None:
        lines += [
            "",
            f"INT8: {int8.quantization}; drop against FP32 {int8.accuracy_drop_pt:.2f} pt "
            "(goal ≤ 0.10 pt).",
        ]
    lines += [
        "",
        f"OpenVINO {report.environment['openvino']}, {report.environment['cpu']}.",
    ]
    return "\n".join(lines) + "\n"

