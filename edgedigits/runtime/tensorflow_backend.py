"""The native TensorFlow backends: the Keras model, run the two ways TensorFlow users run it.

- ``tensorflow`` (:class:`TensorFlowClassifier`): the model inside a compiled ``tf.function``
  with a fixed input signature, called as a concrete function (no per-call tracing or argument
  dispatch: ~80 µs less per call than calling the tf.function). With ``jit_compile="auto"``
  ``warmup`` times each batch size with and without XLA and keeps the faster, recording which:
  XLA wins at batch 1 on this kind of model and can lose on large batches.
- ``keras-predict`` (:class:`KerasPredictClassifier`): ``model.predict``, what the tutorial and
  most Keras users call.

TensorFlow is imported here only, when a backend is created: the OpenVINO path never loads it.
Models are loaded with :func:`load_keras_classifier` (``safe_mode``: a model file cannot run
code) and must be 28x28 -> 10 digit classifiers.
"""

from __future__ import annotations

import contextlib
import time
import zipfile
from pathlib import Path

import numpy as np

from edgedigits.errors import UserError, first_line
from edgedigits.runtime import MAX_BATCH, DigitClassifier, as_batch, in_batches
from edgedigits.tasks import task_for_shapes
from edgedigits.tasks.checks import check_signature
from edgedigits.tensorflow_import import import_tensorflow

_PRECISION_NAMES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


# What a .keras archive of a model this project reads may hold once inflated: its JSON
# (config.json, metadata.json) is kilobytes, its weights megabytes. Checked from the archive's
# directory before a byte is inflated: a small file must not inflate to gigabytes (zip bomb).
# zipfile never inflates a member past the size its directory declares, so the check holds.
MAX_KERAS_JSON_BYTES = 16 << 20
MAX_KERAS_BYTES = 1 << 30


def _check_member_sizes(path: Path, archive: zipfile.ZipFile) -> None:
    total = 0
    for member in archive.infolist():
        total += member.file_size
        if member.filename.endswith(".json") and member.file_size > MAX_KERAS_JSON_BYTES:
            raise UserError(f"{path}: not a loadable Keras model: {member.filename} inflates to "
                            f"{member.file_size:,} bytes (over {MAX_KERAS_JSON_BYTES >> 20} MiB; "
                            "a zip bomb?)")
        if total > MAX_KERAS_BYTES:
            raise UserError(f"{path}: not a loadable Keras model: its members inflate to over "
                            f"{MAX_KERAS_BYTES >> 30} GiB (a zip bomb?)")


def check_keras_archive(path: Path) -> None:
    """A .keras file is a zip archive: catch a truncated, damaged or inflating one (members'
    uncompressed sizes, before any is read) before importing TF."""
    if path.suffix.lower() != ".keras":
        return
    try:
        with zipfile.ZipFile(path) as archive:
            _check_member_sizes(path, archive)
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(
            f"{path}: not a loadable Keras model: corrupt or truncated .keras archive ({error})"
        ) from None
    if damaged is not None:
        raise UserError(f"{path}: not a loadable Keras model: {damaged} inside is damaged")
    if "config.json" not in names:
        raise UserError(f"{path}: not a loadable Keras model: no config.json in the archive")


def load_keras_classifier(path: str | Path, verbose: bool = False,
                          accept: tuple[str, ...] | None = None):
    """The one safe Keras loader: a .keras file that is a model of a registered kind in
    ``accept`` (model types; None: any), or UserError. Its kind is its shapes'
    (:func:`edgedigits.tasks.checks.check_signature`).

    ``safe_mode=True``: a model file must not be able to run arbitrary code (Lambda layers).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"model not found: {path}")
    if path.suffix.lower() != ".keras":
        raise UserError(f"{path} is not a Keras model (.keras); the TensorFlow backends read "
                        "the model.keras that train/train.py writes")
    check_keras_archive(path)
    import_tensorflow(verbose)
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # corrupt zip, unknown layer, unsafe lambda: all user-fixable
        raise UserError(f"{path}: not a loadable Keras model (corrupt, truncated or unsafe?): "
                        f"{first_line(error)}") from None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise UserError(f"{path}: the model has no defined input/output (build it before saving)")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{path}: expected one input and one output, got {len(inputs)} and "
                        f"{len(outputs)}")
    check_signature(inputs[0].shape, outputs[0].shape, str(path), accept)
    return model


def _start_tensorflow(threads: int | None, verbose: bool):
    tf = import_tensorflow(verbose)
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already initialised in this process: keep its setting
            pass
    return tf


def _check_device(tf, device: str) -> tuple[str, object]:
    """The device name and a placement scope (None when the CPU is all there is)."""
    name = (device or "CPU").strip().upper()
    physical = {d.device_type for d in tf.config.list_physical_devices()}
    if name not in physical:
        raise UserError(f"TensorFlow has no device {device!r}; this machine has: "
                        f"{', '.join(sorted(physical))}")
    return name, (None if physical == {"CPU"} else f"/{name}:0")


class _KerasBackend(DigitClassifier):
    variant = "keras"

    def __init__(self, model_path: str | Path, device: str = "CPU", *,
                 threads: int | None = None, verbose: bool = False,
                 accept: tuple[str, ...] | None = None) -> None:
        self.model_path = Path(model_path)
        self._tf = _start_tensorflow(threads, verbose)
        self.device, self._placement = _check_device(self._tf, device)
        self._model = load_keras_classifier(self.model_path, verbose, accept)
        self.task = task_for_shapes(self._model.inputs[0].shape, self._model.outputs[0].shape)
        self.model_type = self.task.model_type
        self.input_shape, self.output_shape = self.task.input_shape, self.task.output_shape
        compute = getattr(getattr(self._model, "dtype_policy", None), "compute_dtype", "float32")
        self.precision = _PRECISION_NAMES.get(compute, compute)
        self.details = {}

    def _placed(self):
        if self._placement is None:  # default placement: no per-call device scope
            return contextlib.nullcontext()
        return self._tf.device(self._placement)


class TensorFlowClassifier(_KerasBackend):
    """The Keras model in a compiled ``tf.function`` (uint8 in, /255 inside the graph).

    ``jit_compile``: False (default), True (XLA), or "auto" (``warmup`` picks per batch size).
    """

    backend = "tensorflow"

    def __init__(self, model_path: str | Path, device: str = "CPU", *,
                 threads: int | None = None, jit_compile: bool | str = False,
                 verbose: bool = False, accept: tuple[str, ...] | None = None) -> None:
        super().__init__(model_path, device, threads=threads, verbose=verbose, accept=accept)
        tf, model = self._tf, self._model

        def scaled(images):
            # The /255 the IR does in its graph; the model itself expects [0, 1] floats.
            return model(tf.cast(images, tf.float32) / 255.0, training=False)

        spec = tf.TensorSpec((None, *self.input_shape), tf.uint8)
        choices = (True, False) if jit_compile == "auto" else (bool(jit_compile),)
        self._auto = jit_compile == "auto"
        with self._placed():
            self._functions = {
                xla: tf.function(scaled, jit_compile=xla, input_signature=[spec])
                .get_concrete_function()
                for xla in choices
            }
        self._default = self._functions[choices[0]]
        self._by_size: dict[int, object] = {}
        self.details = {"xla": {} if self._auto else bool(jit_compile)}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        function = self._by_size.get(len(batch), self._default)
        with self._placed():
            return function(self._tf.constant(batch)).numpy()

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        return in_batches(as_batch(images, self.input_shape), batch_size, self._run,
                          self.output_shape)

    def infer_single(self) -> None:
        image, output = self.bind_single()
        output[...] = self._run(image)

    def warmup(self, batch_sizes: tuple[int, ...] = (1,), use_async: bool = False) -> None:
        if not self._auto:
            return super().warmup(batch_sizes, use_async)
        for size in batch_sizes:
            self._choose(min(size, MAX_BATCH))
        return None

    def _choose(self, size: int) -> None:
        """Time this batch size with and without XLA; keep the faster for it."""
        calls = max(3, 2048 // size) if size > 1 else 50
        tensor = self._tf.constant(np.zeros((size, *self.input_shape), np.uint8))
        timings = {}
        with self._placed():
            for xla, function in self._functions.items():
                function(tensor)  # compile for this shape
                started = time.perf_counter()
                for _ in range(calls):
                    function(tensor).numpy()
                timings[xla] = time.perf_counter() - started
        best = min(timings, key=timings.get)
        self._by_size[size] = self._functions[best]
        self.details["xla"]["single" if size == 1 else f"batch {size}"] = best


class KerasPredictClassifier(_KerasBackend):
    """``model.predict(images / 255, batch_size=...)``: the tutorial's way, per call overhead
    and all (tens of ms a call: this is the baseline the edge runtimes are compared with)."""

    backend = "keras-predict"

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        batch = as_batch(images, self.input_shape)
        if len(batch) == 0:
            return np.zeros((0, *self.output_shape), np.float32)
        floats = batch.astype(np.float32) / np.float32(255.0)
        size = min(batch_size or MAX_BATCH, len(batch))
        with self._placed():
            return np.asarray(self._model.predict(floats, batch_size=size, verbose=0),
                              dtype=np.float32)
