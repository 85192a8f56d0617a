"""The OpenVINO backend: an IR compiled for this machine's device, the fastest path we have.

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

Never imports TensorFlow: an edge box runs this with openvino and numpy alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.properties as ov_props
import openvino.properties.hint as ov_hints

from edgedigits import contract
from edgedigits.errors import UserError, first_line
from edgedigits.runtime import (
    HINTS,
    MAX_BATCH,
    PRECISIONS,
    AsyncCallback,
    AsyncResult,
    DigitClassifier,
    as_batch,
)
from edgedigits.tasks.checks import check_ir, ir_labels

try:  # the pybind11 class under openvino.InferRequest (see _bound_infer)
    from openvino._pyopenvino import InferRequest as _NativeInferRequest
except ImportError:  # pragma: no cover - another openvino layout: use the public API only
    _NativeInferRequest = None

# Device names OpenVINO accepts that are not physical devices listed by available_devices.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
# Ops whose runtime precision is what "this model executes in X" means.
_COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")
_PRECISION_NAMES = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "f16", "f32": "f32"}


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
                 async_jobs: int | None = None, core: ov.Core | None = None,
                 accept: tuple[str, ...] | None = None) -> None:
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
        self.task = check_ir(self._model, self.model_path, accept)
        self.labels = ir_labels(self._model, self.task)
        self.model_type = self.task.model_type
        self.input_shape, self.output_shape = self.task.input_shape, self.task.output_shape
        self.variant = contract.ir_variant(self._model, self.model_path)

        # Every batch runs on a static-shape model: batch sizes are rounded up to a power of
        # two (padding costs less than OpenVINO's dynamic-shape path: measured 1.5-2x slower
        # at every size here). Batch 1 is compiled now, so device problems show at load time.
        self._batches: dict[int, _StaticBatch] = {}
        self._lock = threading.Lock()
        self._callback_errors: list[BaseException] = []
        single = self._batch(1)
        self._single_run = single.run
        self.precision = _executed_precision(single.compiled)
        self.details = {"hint": hint.upper(),
                        "inference_precision": inference_precision or "device default",
                        "variant_in_ir": self.variant}

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
                model.reshape({model.input(0): ov.PartialShape([size, *self.input_shape])})
                # One image is too little work to split: a second thread only adds start-up cost.
                threads = self.threads or (1 if size == 1 and self.hint == "latency" else None)
                try:
                    compiled = self._core.compile_model(model, self.device,
                                                        self._config(self.hint, threads))
                except RuntimeError as error:
                    raise UserError(f"cannot compile {self.model_path} for device {self.device}: "
                                    f"{first_line(error)}") from None
                batch = self._batches[size] = _StaticBatch(compiled)
            return batch

    # -- inference -------------------------------------------------------------------------

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        images = as_batch(images, self.input_shape)
        count = len(images)
        limit = min(batch_size or MAX_BATCH, MAX_BATCH)
        if count > limit:
            return np.concatenate([self.predict(images[start:start + limit])
                                   for start in range(0, count, limit)])
        if count == 0:
            return np.zeros((0, *self.output_shape), np.float32)
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
        images = as_batch(images, self.input_shape)
        count = len(images)
        if count == 0 or count > MAX_BATCH:
            # Nothing to queue, or more than one request holds: answer synchronously.
            callback(AsyncResult(self.predict(images), 0.0, userdata))
            return
        size = _bucket(count)
        queue = self._queue(size)
        padded = np.zeros((size, *self.input_shape), np.uint8)
        padded[:count] = images  # a copy: the caller may reuse its array while we infer
        # Blocks only while every request of this queue is busy; userdata keeps `padded` alive.
        queue.start_async({0: ov.Tensor(padded, shared_memory=True)},
                          (callback, userdata, count, padded))

    def warmup(self, batch_sizes: tuple[int, ...] = (1,), use_async: bool = False) -> None:
        for size in sorted({_bucket(min(max(n, 1), MAX_BATCH)) for n in batch_sizes}):
            blank = np.zeros((size, *self.input_shape), np.uint8)
            self.predict(blank)
            if use_async:  # every request of the queue runs once, through predict_async: the
                # one path that keeps each input alive until its inference has read it (an
                # ov.Tensor sharing a numpy array does not: a freed array was read after free)
                queue = self._queue(size)
                for _ in range(len(queue)):
                    self.predict_async(blank, _discard)
                queue.wait_all()  # this size only: a serving thread's errors stay its own

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
        """Wait for queued batches, then let the compiled models go (a served version that was
        unloaded frees its memory; used again, a batch size is compiled again)."""
        with self._lock:
            batches, self._batches = list(self._batches.values()), {}
        for batch in batches:
            if batch.queue is not None:
                batch.queue.wait_all()
                batch.queue = None  # its callback refers back to this classifier
        self._single_run = lambda: self._batch(1).run()


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
    the INT8 tutorial model here (interleaved A/B, 12 rounds; re-measured with openvino 2026.4.1
    on the busy shared machine: 5.2 µs of ~93 µs, faster in all 12 rounds, so it still pays;
    ``tests/test_runtime.py`` checks the fallback gives identical outputs). A request whose
    tensors are bound once needs neither, so call the pybind11 method directly, with its
    arguments pre-bound. It is an implementation detail of the openvino package: if it is
    missing or its signature changed, fall back to the public method (same inference, same
    outputs).
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
    # Weights into memory, not mapped: by default OpenVINO mmaps model.bin, so a file
    # overwritten in place (cp, scp) changes a running model's answers at its next compile and
    # a truncated one kills the process with SIGBUS (issue 20, row 10).
    core.set_property({ov_props.enable_mmap: False})
    try:
        return core.read_model(path, weights)
    except RuntimeError as error:
        raise UserError(f"cannot read OpenVINO IR {path}: {first_line(error)}") from None


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


def _discard(result: AsyncResult) -> None:
    """A warm-up answer: nobody waits for it."""
