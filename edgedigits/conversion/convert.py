"""Conversion: a trained Keras model → OpenVINO IR (FP32, FP16 weights, INT8 by NNCF), verified.

This module is the stage's ordered story; the source model is :mod:`.source`, the checks
:mod:`.verify`, the report :mod:`.report`; what differs per kind of model is the task's
(:mod:`edgedigits.tasks`).

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import openvino as ov

from edgedigits import __version__, contract
from edgedigits.contract import IMAGE_SHAPE, write_metadata
from edgedigits.conversion.int8 import quantize_int8
from edgedigits.conversion.report import ConversionReport, VariantResult, report_markdown
from edgedigits.conversion.source import SourceModel, load_source, source_format
from edgedigits.conversion.verify import (
    PARITY_IMAGES,
    PARITY_MAX_ABS_DIFF,
    PARITY_MIN_AGREEMENT,
    agreement,
    check_parity,
    check_probabilities,
    compare,
    default_precision,
    score,
)
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
from edgedigits.runtime.tensorflow_backend import check_keras_archive
from edgedigits.tasks import get_task
from edgedigits.tensorflow_import import import_tensorflow

# INT8 calibration. On the tutorial model (5 epochs, 98.72 %) 100, 300, 1,000 and 3,000 images
# all land within 0.07 pt of FP32 (see README); 300 is NNCF's own default and takes ~2 s.
DEFAULT_CALIBRATION_SIZE = 300
# The validation split is the last 5,000 training images (as in training); calibration images
# are always drawn from the part before it, so validation stays unseen by calibration.
VALIDATION_SIZE = 5000
CALIBRATION_SEED = 0

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


# --------------------------------------------------------------------------------------------
# 1. Inputs checked up front
# --------------------------------------------------------------------------------------------
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
# 2. The source model: edgedigits.conversion.source
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
# 4. INT8: edgedigits.conversion.int8
# --------------------------------------------------------------------------------------------
# 5. Verification: edgedigits.conversion.verify
# 6. The whole stage (the report: edgedigits.conversion.report)
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
