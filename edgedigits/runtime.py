"""The runtime interface: one "digit classifier", two backends (OpenVINO, TensorFlow).

Everything downstream (classify, webcam, benchmark) talks to :class:`DigitClassifier` and never
branches on the backend::

    classifier = load_classifier()                     # best IR under models/ (int8 > fp16 > fp32)
    probabilities = classifier.predict(images)         # uint8 (N, 28, 28[, 1]) -> float32 (N, 10)
    classifier.predict_async(images, on_result, userdata=frame_number)   # pipelined
    classifier.wait_all()

Images are MNIST-format: 28x28 uint8, white digit on black (``preprocess.to_mnist_format``
makes them from photos). The OpenVINO IR does the /255 inside its graph; the TensorFlow backend
does it itself.

Speed notes (measured on the 2-core EPYC; see the inference stage's report): a batch-1 call of
the INT8 tutorial model costs ~25 µs only when the request is reused, its input tensor bound
once, the model compiled with a static [1, 28, 28, 1] shape on one thread, CPU pinning off
under the LATENCY hint and the request run through the pybind11 call (see ``_config`` and
``_bound_infer``); ``request.infer({0: x})`` adds tens of µs of Python dispatch per call, and
OpenVINO's dynamic-batch path is 1.5-2x slower than a static shape at every batch size. So
every batch runs on a static-shape model compiled on first use for its size rounded up to a
power of two (padding is cheaper than dynamic shapes), and ``predict_async`` feeds the same
models through ``AsyncInferQueue``. Of those ~25 µs, OpenVINO's own C++ ``infer()`` takes ~21
(~3.3 for an empty model, the rest the conv, pool and two FC kernels): Python adds ~3.

This module never imports TensorFlow at import time: an edge box runs OpenVINO alone.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.properties as ov_props
import openvino.properties.hint as ov_hints

from edgedigits import contract
from edgedigits.cli import import_tensorflow, positive_int
from edgedigits.errors import UserError

try:  # the pybind11 class under openvino.InferRequest (see _bound_infer)
    from openvino._pyopenvino import InferRequest as _NativeInferRequest
except ImportError:  # pragma: no cover - another openvino layout: use the public API only
    _NativeInferRequest = None

IMAGE_SIZE = 28
NUM_CLASSES = 10
# Largest batch one request runs; bigger batches are split (the 10,000-image test set in 40).
MAX_BATCH = 256

_BACKEND_ALIASES = {"openvino": "openvino", "ov": "openvino", "tensorflow": "tensorflow",
                    "tf": "tensorflow", "keras": "tensorflow"}
HINTS = ("latency", "throughput")
PRECISIONS = ("f32", "bf16", "f16")
# Device names OpenVINO accepts that are not physical devices listed by available_devices.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
# Ops whose runtime precision is what "this model executes in X" means.
_COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")
_PRECISION_NAMES = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "f16", "f32": "f32"}


@dataclass
class AsyncResult:
    """What ``predict_async`` hands to its callback (on a worker thread)."""

    probabilities: np.ndarray  # float32 (N, 10), owned by the callback (a copy)
    latency_ms: float  # time the backend spent on this batch
    userdata: Any


AsyncCallback = Callable[[AsyncResult], None]


def as_batch(images: np.ndarray) -> np.ndarray:
    """Check a batch of MNIST-format images and return it as contiguous uint8 (N, 28, 28, 1)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"expected uint8 images shaped (N, 28, 28) or (N, 28, 28, 1), "
                         f"got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (raw 0-255 pixels), got {images.dtype}")
    return np.ascontiguousarray(images)


class DigitClassifier:
    """A digit classifier: uint8 MNIST-format images in, float32 probabilities (N, 10) out.

    Attributes: ``backend`` ("openvino" | "tensorflow"), ``variant`` ("fp32" | "fp16" | "int8"
    | "keras"), ``precision`` (what actually executes: "f32", "bf16", "int8", ...), ``device``,
    ``model_path``, ``labels``.

    ``predict`` is synchronous and meant for one caller at a time; ``predict_async`` queues a
    batch and calls ``callback(AsyncResult)`` from a worker thread when it is done (in
    completion order, which may differ from submission order when several jobs run at once);
    ``wait_all`` blocks until every queued batch is done and re-raises the first exception a
    callback raised.
    """

    backend: str
    variant: str
    precision: str
    device: str
    model_path: Path
    labels: tuple[str, ...] = contract.LABELS

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_async(self, images: np.ndarray, callback: AsyncCallback,
                      userdata: Any = None) -> None:
        # Default: one worker thread running predict; OpenVINO overrides with AsyncInferQueue.
        batch = as_batch(images).copy()
        if getattr(self, "_executor", None) is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
            self._futures: list = []

        def job() -> None:
            started = _now_ms()
            probabilities = self.predict(batch)
            callback(AsyncResult(probabilities, _now_ms() - started, userdata))

        self._futures = [f for f in self._futures if not f.done() or f.exception()]
        self._futures.append(self._executor.submit(job))

    def warmup(self, batch_sizes: tuple[int, ...] = (1,), use_async: bool = False) -> None:
        """Run each batch size once (first runs allocate and compile: keep them out of timings)."""
        for size in batch_sizes:
            blank = np.zeros((size, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
            self.predict(blank)
            if use_async:
                self.predict_async(blank, lambda result: None)
        self.wait_all()

    def wait_all(self) -> None:
        futures, self._futures = getattr(self, "_futures", []), []
        for future in futures:
            future.result()

    def close(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
            self._executor = None

    def describe(self) -> str:
        """One line for logs and report headers."""
        return (f"{self.backend} {self.variant} (executes {self.precision}) on {self.device}: "
                f"{self.model_path}")

    def __enter__(self) -> DigitClassifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def _now_ms() -> float:
    return time.perf_counter() * 1000.0


# --------------------------------------------------------------------------------------------
# OpenVINO


class OpenVINOClassifier(DigitClassifier):
    """An OpenVINO IR (``model.xml`` + ``model.bin``) that honours the edgedigits IR contract.

    ``device``: CPU (default), GPU, NPU, AUTO, or any name ``Core().available_devices`` lists.
    ``hint``: "latency" (default: one stream, best for single images and live video) or
    "throughput" (parallel streams, for large batches through ``predict_async``).
    ``inference_precision``: force what the plugin computes non-quantized layers in — "f32"
    for honest FP32 numbers (this CPU would otherwise run bf16), or "bf16"/"f16"; None keeps
    the device default.
    ``threads``: CPU inference threads; None = one thread for single images (thread start-up
    costs more than this model) and OpenVINO's default for batches.
    ``async_jobs``: infer requests in the ``predict_async`` queue; None = the device's optimum
    (at least 2, so preparing the next batch overlaps the current inference).
    """

    backend = "openvino"

    def __init__(self, model_path: str | Path, device: str = "CPU", *, hint: str = "latency",
                 inference_precision: str | None = None, threads: int | None = None,
                 async_jobs: int | None = None, core: ov.Core | None = None) -> None:
        self.model_path = Path(model_path)
        self._core = core or ov.Core()
        self.device = check_device(self._core, device)
        if hint not in HINTS:
            raise UserError(f"unknown performance hint {hint!r}; choose from {', '.join(HINTS)}")
        if inference_precision is not None and inference_precision not in PRECISIONS:
            raise UserError(f"unknown inference precision {inference_precision!r}; "
                            f"choose from {', '.join(PRECISIONS)}")
        self.hint = hint
        self.inference_precision = inference_precision
        self.threads = threads
        self._async_jobs = async_jobs

        self._model = _read_ir(self._core, self.model_path)
        self.labels = _check_contract(self._model, self.model_path)
        self.variant = _ir_variant(self._model, self.model_path)

        # Every batch runs on a static-shape model: batch sizes are rounded up to a power of
        # two (padding costs less than OpenVINO's dynamic-shape path: measured 1.5-2x slower
        # at every size here). Batch 1 is compiled now, so device problems show at load time.
        self._batches: dict[int, _StaticBatch] = {}
        self._lock = threading.Lock()
        self._callback_errors: list[BaseException] = []
        single = self._batch(1)
        self._single_run = single.run
        self.precision = _executed_precision(single.compiled)

    # -- compilation -----------------------------------------------------------------------

    def _config(self, hint: str, threads: int | None) -> dict:
        config: dict = {
            ov_hints.performance_mode: (ov_hints.PerformanceMode.LATENCY if hint == "latency"
                                        else ov_hints.PerformanceMode.THROUGHPUT),
        }
        if self.inference_precision is not None:
            config[ov_hints.inference_precision] = getattr(ov.Type, self.inference_precision)
        on_cpu = self.device.split(".")[0] == "CPU"
        if threads is not None and on_cpu:
            config[ov_props.inference_num_threads] = threads
        if hint == "latency" and on_cpu:
            # Under the LATENCY hint a synchronous infer runs on the caller's thread, and with
            # pinning on (the Linux default) OpenVINO pins that thread to its stream's cores and
            # restores its affinity mask around every inference: two syscalls per call, ~1.5-2
            # µs of a ~26 µs batch-1 call of the INT8 tutorial model here (p99 lower too; batch
            # 32 and 256 unchanged). Off, the caller's own affinity is also left alone.
            config[ov_hints.enable_cpu_pinning] = False
        return config

    def _batch(self, size: int) -> _StaticBatch:
        """The compiled static model for batch ``size`` (a power of two), compiled once."""
        batch = self._batches.get(size)  # lock-free once compiled: this is on every call's path
        if batch is not None:
            return batch
        with self._lock:
            batch = self._batches.get(size)
            if batch is None:
                model = self._model.clone()
                model.reshape({model.input(0): ov.PartialShape([size, IMAGE_SIZE, IMAGE_SIZE, 1])})
                # One image is too little work to split: a second thread only adds start-up cost.
                threads = self.threads or (1 if size == 1 and self.hint == "latency" else None)
                try:
                    compiled = self._core.compile_model(model, self.device,
                                                        self._config(self.hint, threads))
                except RuntimeError as error:
                    raise UserError(f"cannot compile {self.model_path} for device {self.device}: "
                                    f"{_first_line(error)}") from None
                batch = self._batches[size] = _StaticBatch(compiled)
            return batch

    # -- inference -------------------------------------------------------------------------

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = as_batch(images)
        count = len(images)
        if count > MAX_BATCH:
            return np.concatenate([self.predict(images[start:start + MAX_BATCH])
                                   for start in range(0, count, MAX_BATCH)])
        if count == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        batch = self._batch(_bucket(count))
        batch.input[:count] = images  # the bound input tensor: no per-call tensor or dispatch
        batch.run()
        return batch.output[:count].copy()

    def bind_single(self) -> tuple[np.ndarray, np.ndarray]:
        """The zero-copy batch-1 path: (input buffer (1, 28, 28, 1), output view (1, 10)).

        Write an image into ``input[0, :, :, 0]``, call :meth:`infer_single`, read ``output``
        (overwritten by the next call). For tight loops such as the latency benchmark.
        """
        batch = self._batch(1)
        return batch.input, batch.output

    def infer_single(self) -> None:
        self._single_run()

    def predict_async(self, images: np.ndarray, callback: AsyncCallback,
                      userdata: Any = None) -> None:
        images = as_batch(images)
        count = len(images)
        if count == 0 or count > MAX_BATCH:
            # Nothing to queue, or more than one request holds: answer synchronously.
            callback(AsyncResult(self.predict(images), 0.0, userdata))
            return
        size = _bucket(count)
        queue = self._queue(size)
        padded = np.zeros((size, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
        padded[:count] = images  # a copy: the caller may reuse its array while we infer
        # Blocks only while every request of this queue is busy; userdata keeps `padded` alive.
        queue.start_async({0: ov.Tensor(padded, shared_memory=True)},
                          (callback, userdata, count, padded))

    def warmup(self, batch_sizes: tuple[int, ...] = (1,), use_async: bool = False) -> None:
        for size in sorted({_bucket(min(max(n, 1), MAX_BATCH)) for n in batch_sizes}):
            blank = np.zeros((size, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
            self.predict(blank)
            if use_async:  # every request of the queue runs once
                queue = self._queue(size)
                for _ in range(len(queue)):
                    queue.start_async({0: ov.Tensor(blank.copy(), shared_memory=True)},
                                      (lambda result: None, None, size, None))
                queue.wait_all()

    def _queue(self, size: int) -> ov.AsyncInferQueue:
        batch = self._batch(size)
        with self._lock:
            if batch.queue is None:
                jobs = self._async_jobs or max(2, batch.compiled.get_property(
                    ov_props.optimal_number_of_infer_requests))
                batch.queue = ov.AsyncInferQueue(batch.compiled, jobs)
                batch.queue.set_callback(self._on_done)
        return batch.queue

    def _on_done(self, request: ov.InferRequest, userdata: tuple) -> None:
        callback, user, count, _padded = userdata
        try:
            probabilities = request.get_output_tensor().data[:count].copy()
            # request.latency: from start_async to completion, waiting for a free stream included
            callback(AsyncResult(probabilities, float(request.latency), user))
        except BaseException as error:  # re-raised by wait_all on the caller's thread
            self._callback_errors.append(error)

    def wait_all(self) -> None:
        for batch in list(self._batches.values()):
            if batch.queue is not None:
                batch.queue.wait_all()
        if self._callback_errors:
            error, self._callback_errors = self._callback_errors[0], []
            raise error

    def close(self) -> None:
        for batch in list(self._batches.values()):
            if batch.queue is not None:
                batch.queue.wait_all()


class _StaticBatch:
    """One static-shape compiled model, its reusable request with bound tensors, its queue."""

    def __init__(self, compiled: ov.CompiledModel) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        shape = tuple(compiled.input(0).get_shape())
        self.input = np.zeros(shape, np.uint8)
        self.request.set_input_tensor(ov.Tensor(self.input, shared_memory=True))
        self.run = _bound_infer(self.request)
        self.output = self.request.get_output_tensor().data  # a view, refreshed in place
        self.queue: ov.AsyncInferQueue | None = None


def _bound_infer(request: ov.InferRequest) -> Callable[[], object]:
    """A no-argument call that runs ``request`` on its bound tensors, as cheaply as Python can.

    ``request.infer()`` is a Python wrapper around the pybind11 method: per call it dispatches
    the (absent) inputs and wraps the outputs in an OVDict, ~1.3 µs of a ~26 µs batch-1 call of
    the INT8 tutorial model here (interleaved A/B, 12 rounds). A request whose tensors are bound
    once needs neither, so call the pybind11 method directly, with its arguments pre-bound.
    It is an implementation detail of the openvino package: if it is missing or its signature
    changed, fall back to the public method (same inference, same outputs).
    """
    native = getattr(_NativeInferRequest, "infer", None)
    if native is not None:
        call = functools.partial(native, request, {}, True, True)  # inputs, share/decode
        try:
            call()
            return call
        except TypeError:
            pass
    return functools.partial(request.infer, share_outputs=True)


def _bucket(count: int) -> int:
    return 1 << (count - 1).bit_length()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # OpenVINO messages start with "Exception from src/...cpp:123:"; the reason follows.
    for line in lines:
        if not line.startswith(("Exception from", "Check '")):
            return line
    return lines[0] if lines else type(error).__name__


def check_device(core: ov.Core, device: str) -> str:
    """The normalised device name, or UserError listing what this machine has."""
    name = (device or "").strip().upper()
    available = list(core.available_devices)
    base = name.split(":")[0].split(".")[0]
    known = base in _VIRTUAL_DEVICES or name in available or base in {
        d.split(".")[0] for d in available}
    if not name or not known:
        raise UserError(f"unknown or unavailable OpenVINO device {device!r}; this machine has: "
                        f"{', '.join(available) or 'none'} (or AUTO)")
    return name


def _read_ir(core: ov.Core, path: Path) -> ov.Model:
    if not path.exists():
        raise UserError(f"model not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass the model.xml inside it or use load_classifier")
    if path.suffix.lower() == ".keras":
        raise UserError(f"{path} is a Keras model: use --backend tf, or convert it to OpenVINO IR "
                        "with convert/to_ir.py")
    if path.suffix.lower() != ".xml":
        raise UserError(f"{path} is not an OpenVINO IR (expected a .xml file with its .bin)")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise UserError(f"{path} has no weights file {weights.name} beside it "
                        "(an IR is the .xml and the .bin together)")
    try:
        return core.read_model(path, weights)
    except RuntimeError as error:
        raise UserError(f"cannot read OpenVINO IR {path}: {_first_line(error)}") from None


def _rt_info(model: ov.Model, key: str) -> str | None:
    path = [contract.RT_INFO_SECTION, key]
    if not model.has_rt_info(path):
        return None
    return model.get_rt_info(path).astype(str)


def _check_contract(model: ov.Model, path: Path) -> tuple[str, ...]:
    """Refuse any IR that is not an edgedigits digit classifier; return its labels."""
    model_type = _rt_info(model, "model_type")
    if model_type != contract.MODEL_TYPE:
        found = "no edgedigits metadata" if model_type is None else f"model_type {model_type!r}"
        raise UserError(f"{path} is not an edgedigits digit classifier ({found}); "
                        "convert a trained model with convert/to_ir.py")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{path}: expected one input and one output, got "
                        f"{len(model.inputs)} and {len(model.outputs)}")
    input_shape = model.input(0).get_partial_shape()
    output_shape = model.output(0).get_partial_shape()
    expected_input = ov.PartialShape([-1, IMAGE_SIZE, IMAGE_SIZE, 1])
    expected_output = ov.PartialShape([-1, NUM_CLASSES])
    if not (input_shape.compatible(expected_input) and output_shape.compatible(expected_output)):
        raise UserError(f"{path} is not a 28x28 digit classifier: input {input_shape}, "
                        f"output {output_shape} (expected [?,28,28,1] -> [?,10])")
    if model.input(0).get_element_type() != ov.Type.u8:
        raise UserError(f"{path}: input must be uint8 raw pixels, got "
                        f"{model.input(0).get_element_type()}")
    labels = _rt_info(model, "labels")
    if labels:
        parts = labels.replace(",", " ").split()
        if len(parts) == NUM_CLASSES:
            return tuple(parts)
    return contract.LABELS


def _ir_variant(model: ov.Model, path: Path) -> str:
    """fp32 | fp16 | int8: the rt_info says so, else the folder name, else the graph itself."""
    for key in ("variant", "precision"):
        value = (_rt_info(model, key) or "").lower()
        if value in contract.VARIANTS:
            return value
    if path.parent.name in contract.VARIANTS:
        return path.parent.name
    types = {op.get_type_name() for op in model.get_ops()}
    if "FakeQuantize" in types or "FakeConvert" in types:
        return "int8"
    if any(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f16
           for op in model.get_ops()):
        return "fp16"
    return "fp32"


def _executed_precision(compiled: ov.CompiledModel) -> str:
    """Read back what the compute layers run in: "int8", "bf16", "f32", or e.g. "int8+bf16"."""
    found: set[str] = set()
    try:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in _COMPUTE_LAYERS:
                runtime = info["runtimePrecision"].astype(str).lower()
                found.add(_PRECISION_NAMES.get(runtime, runtime))
    except RuntimeError:  # plugins without a runtime model (some GPU/NPU builds)
        pass
    if found:
        order = ["int8", "f16", "bf16", "f32"]
        return "+".join(sorted(found, key=lambda p: (order.index(p) if p in order else 9, p)))
    try:
        hint = compiled.get_property(ov_hints.inference_precision)
        return _PRECISION_NAMES.get(hint.get_type_name(), hint.get_type_name())
    except RuntimeError:
        return "unknown"


# --------------------------------------------------------------------------------------------
# TensorFlow


class TensorFlowClassifier(DigitClassifier):
    """A Keras model file (``.keras``), run by native TensorFlow for comparison.

    TensorFlow is imported here, lazily, so the OpenVINO path never loads it. The model is
    loaded with ``safe_mode=True`` (no arbitrary code from the file) and called through a
    ``tf.function`` with a fixed input signature (one trace, no per-call Python overhead).
    """

    backend = "tensorflow"
    variant = "keras"

    def __init__(self, model_path: str | Path, device: str = "CPU", *,
                 threads: int | None = None, verbose: bool = False) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise UserError(f"model not found: {self.model_path}")
        if self.model_path.suffix.lower() != ".keras":
            raise UserError(f"{self.model_path} is not a Keras model (.keras); the TensorFlow "
                            "backend reads the model.keras that train/train.py writes")
        tf = import_tensorflow(verbose)
        import keras

        if threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TF already initialised in this process: keep its setting
                pass
        name = (device or "CPU").strip().upper()
        physical = {d.device_type for d in tf.config.list_physical_devices()}
        if name not in physical:
            raise UserError(f"TensorFlow has no device {device!r}; this machine has: "
                            f"{', '.join(sorted(physical))}")
        self.device = name
        self._tf = tf
        try:
            model = keras.saving.load_model(self.model_path, compile=False, safe_mode=True)
        except Exception as error:  # corrupt zip, unknown layer, unsafe lambda: all user-fixable
            raise UserError(f"cannot load Keras model {self.model_path}: "
                            f"{_first_line(error)}") from None
        input_shape = tuple(model.inputs[0].shape) if model.inputs else None
        output_shape = tuple(model.outputs[0].shape) if model.outputs else None
        if input_shape not in ((None, 28, 28, 1), (None, 28, 28)) or output_shape != (None, 10):
            raise UserError(f"{self.model_path} is not a 28x28 digit classifier: input "
                            f"{input_shape}, output {output_shape}")
        self._model = model
        compute = getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32")
        self.precision = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(
            compute, compute)
        rank = len(input_shape)

        def scaled(x):
            # The /255 the IR does in its graph; the model itself expects [0, 1] floats.
            x = tf.cast(x, tf.float32) / 255.0
            if rank == 3:
                x = tf.squeeze(x, -1)
            return model(x, training=False)

        self._call = tf.function(
            scaled, input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.uint8)],
            reduce_retracing=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        batch = as_batch(images)
        if len(batch) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        with self._tf.device(f"/{self.device}:0"):
            return np.asarray(self._call(batch), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Choosing a model


def normalize_backend(name: str) -> str:
    backend = _BACKEND_ALIASES.get((name or "").strip().lower())
    if backend is None:
        raise UserError(f"unknown backend {name!r}; choose openvino or tf")
    return backend


def find_model(model: str | Path | None = None, backend: str = "openvino",
               variant: str | None = None) -> Path:
    """The model file to load: ``model`` itself, or the best one inside a folder.

    OpenVINO: ``<dir>/ir/<variant>/model.xml`` in the order int8, fp16, fp32 (also accepts the
    ``ir`` folder or a variant folder itself). TensorFlow: ``<dir>/model.keras``. ``None`` means
    ``contract.default_models_dir()``.
    """
    backend = normalize_backend(backend)
    if variant is not None and variant not in contract.VARIANTS:
        raise UserError(f"unknown variant {variant!r}; choose from {', '.join(contract.VARIANTS)}")
    folder = contract.default_models_dir() if model is None else Path(model)
    if model is not None and not folder.exists():
        raise UserError(f"model not found: {folder}")
    if folder.is_file():
        return folder
    if not folder.exists():
        steps = "train/train.py" + ("" if backend == "tensorflow" else " and convert/to_ir.py")
        raise UserError(f"no models folder {folder}: run {steps} first, or pass --model")
    if backend == "tensorflow":
        candidates = [folder / contract.KERAS_FILE]
    else:
        variants = (variant,) if variant else contract.VARIANT_PREFERENCE
        candidates = []
        for name in variants:
            candidates += [folder / contract.IR_DIR / name / contract.IR_FILE,
                           folder / name / contract.IR_FILE]
        if variant is None:
            candidates.append(folder / contract.IR_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates[:4]) + (", ..." if len(candidates) > 4 else "")
    step = "train/train.py" if backend == "tensorflow" else "convert/to_ir.py"
    raise UserError(f"no {'Keras model' if backend == 'tensorflow' else 'OpenVINO IR'} in "
                    f"{folder} (looked for {tried}): run {step} first, or pass --model")


def load_classifier(model: str | Path | None = None, backend: str = "openvino",
                    device: str = "CPU", *, variant: str | None = None, hint: str = "latency",
                    inference_precision: str | None = None, threads: int | None = None,
                    async_jobs: int | None = None, verbose: bool = False) -> DigitClassifier:
    """Load a digit classifier: a model file, a folder to search, or (None) the default one."""
    backend = normalize_backend(backend)
    path = find_model(model, backend, variant)
    if backend == "openvino":
        return OpenVINOClassifier(path, device, hint=hint, inference_precision=inference_precision,
                                  threads=threads, async_jobs=async_jobs)
    if path.suffix.lower() == ".xml":
        raise UserError(f"{path} is an OpenVINO IR; the TensorFlow backend needs a .keras model")
    return TensorFlowClassifier(path, device, threads=threads, verbose=verbose)


# --------------------------------------------------------------------------------------------
# The flags every inference command shares (same words as train/convert/benchmark)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --precision, --threads, --verbose."""
    group = parser.add_argument_group("model and runtime")
    group.add_argument("--model", metavar="PATH",
                       help="model file (.xml IR or .keras) or a models folder to search "
                            f"(default: {contract.default_models_dir()}/, the best IR: "
                            "int8, else fp16, else fp32; model.keras for --backend tf)")
    group.add_argument("--backend", default="openvino", type=normalize_backend,
                       help="openvino (default) or tf (native TensorFlow, for comparison)")
    group.add_argument("--device", default="CPU",
                       help="OpenVINO device: CPU (default), GPU, NPU, AUTO")
    group.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="force what OpenVINO computes non-quantized layers in (f32 for honest "
                            "FP32; default: the device's choice, bf16 on CPUs that have it)")
    group.add_argument("--threads", type=positive_int, default=None,
                       help="inference threads (default: the runtime's choice)")
    group.add_argument("--server", metavar="URL",
                       help="run inference on an Open Inference Protocol v2 server instead "
                            "(http://HOST:8080 REST or grpc://HOST:8081; infer/serve.py, OVMS, "
                            "Triton); preprocessing stays local")
    parser.add_argument("--verbose", action="store_true", help="show runtime details and logs")


def load_from_args(args: argparse.Namespace, **overrides: Any) -> DigitClassifier:
    """load_classifier with the flags of :func:`add_runtime_arguments`."""
    if getattr(args, "server", None):
        from edgedigits.remote import RemoteClassifier  # tritonclient only when asked for

        return RemoteClassifier(args.server)
    options = dict(model=args.model, backend=args.backend, device=args.device,
                   inference_precision=args.precision, threads=args.threads,
                   verbose=args.verbose)
    options.update(overrides)
    return load_classifier(**options)
