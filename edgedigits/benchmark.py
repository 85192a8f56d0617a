"""The benchmark: every model variant, measured the same way, each in a process of its own.

What is measured, per variant (one row):
  accuracy on the MNIST test set and agreement with the Keras model; batch-1 latency (warm-up,
  then at least 1,000 single-image calls: p50/p90/p99/mean in µs); throughput in images/s at
  each batch size; model file size; load + compile time; peak resident memory.

Why a process per variant: peak memory is a property of a process, so a process that only loads
and runs one variant is the only honest way to measure it; it also keeps one runtime's thread
pools and caches from slowing the next, and proves that the OpenVINO rows run without
TensorFlow (each child records whether ``tensorflow`` ended up in ``sys.modules``).

The parent (``run_benchmark``) finds the variants, writes the test images once, starts one
child per variant (``python -m edgedigits.benchmark SPEC.json``), follows its progress lines,
and writes ``benchmark.json`` / ``benchmark.md`` / ``benchmark.png``. The parent never imports
TensorFlow either; the peers (ONNX Runtime, LiteRT) are exported from the Keras model by a child
of their own (``edgedigits.peers``).

Every timing is taken on this machine by this code; nothing is estimated or remembered.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedigits import contract
from edgedigits.errors import UserError
from edgedigits.files import atomic_path, ensure_writable_dir, write_json, write_text

# --------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class Variant:
    """One row of the benchmark: a model file and the runtime that executes it."""

    name: str
    backend: str  # "TensorFlow" | "OpenVINO" | "ONNX Runtime" | "LiteRT"
    label: str  # what the row is, for a person reading the table
    source: str  # "keras", "ir/<fp32|fp16|int8>", or a peer file exported from the Keras model
    precision: str  # what the model file holds; the child reports what actually executes
    inference_precision: str | None = None  # OpenVINO: force this (f32), None = device default
    packages: tuple[str, ...] = ()  # modules the row needs beyond requirements.txt

    @property
    def is_peer(self) -> bool:
        return self.backend not in ("TensorFlow", "OpenVINO")


_ONNX_PACKAGES = ("onnxruntime", "onnx", "tf2onnx")
_LITERT_PACKAGES = ("ai_edge_litert",)

VARIANTS: tuple[Variant, ...] = (
    Variant("tf-predict", "TensorFlow", "Keras model.predict (what the tutorial calls)",
            "keras", "fp32"),
    Variant("tf-function", "TensorFlow", "compiled tf.function, direct call (XLA when faster)",
            "keras", "fp32"),
    Variant("ov-fp32", "OpenVINO", "FP32 IR, executed in f32 (INFERENCE_PRECISION_HINT=f32)",
            "ir/fp32", "fp32", inference_precision="f32"),
    Variant("ov-fp32-default", "OpenVINO", "FP32 IR, the device's default precision",
            "ir/fp32", "fp32"),
    Variant("ov-fp16", "OpenVINO", "FP16-weights IR, device default precision", "ir/fp16", "fp16"),
    Variant("ov-int8", "OpenVINO", "INT8 IR (NNCF post-training quantization)", "ir/int8", "int8"),
    Variant("ort-fp32", "ONNX Runtime", "Keras ONNX export", "model.onnx", "fp32",
            packages=_ONNX_PACKAGES),
    Variant("ort-int8", "ONNX Runtime", "ONNX Runtime quantize_static (QDQ, per-channel)",
            "model-int8.onnx", "int8", packages=_ONNX_PACKAGES),
    Variant("litert-fp32", "LiteRT", "Keras LiteRT export", "model.tflite", "fp32",
            packages=_LITERT_PACKAGES),
    Variant("litert-int8", "LiteRT", "Keras LiteRT export, full-integer quantization",
            "model-int8.tflite", "int8", packages=_LITERT_PACKAGES),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}
PEERS_INSTALL_HINT = "pip install -r requirements-peers.txt"


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


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Effort:
    """How long to measure. ``quick`` is for tests and smoke runs; its numbers are not a result."""

    test_images: int | None  # None = the full 10,000-image test set
    latency_warmup_calls: int
    latency_min_calls: int  # at least this many timed single-image calls ...
    latency_seconds: float  # ... and more until this much time has passed (fast runtimes)
    latency_max_calls: int
    throughput_seconds: float  # one timed window per repeat and batch size
    throughput_repeats: int
    calibration_images: int  # peers' own INT8 calibration, drawn from the training set


FULL = Effort(test_images=None, latency_warmup_calls=100, latency_min_calls=1000,
              latency_seconds=2.0, latency_max_calls=50_000, throughput_seconds=1.0,
              throughput_repeats=3, calibration_images=300)
QUICK = Effort(test_images=500, latency_warmup_calls=5, latency_min_calls=30,
               latency_seconds=0.0, latency_max_calls=30, throughput_seconds=0.05,
               throughput_repeats=1, calibration_images=32)
LATENCY_BLOCKS = 5  # latency calls are split into this many blocks to show their spread


@dataclass
class Settings:
    models_dir: Path
    keras_model: Path
    output: Path
    variants: list[str] | None = None  # None = all
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    threads: int = 0  # 0 = every core this process may use
    device: str = "CPU"
    quick: bool = False
    data_dir: str | None = None
    progress: bool = True
    command: str = ""

    @property
    def effort(self) -> Effort:
        return QUICK if self.quick else FULL


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Environment


_ISA_FLAGS = {
    "AVX2": "avx2",
    "AVX-512F": "avx512f",
    "AVX-512 VNNI": "avx512_vnni",
    "AVX-VNNI": "avx_vnni",
    "AVX-512 BF16": "avx512_bf16",
    "AVX-512 FP16": "avx512_fp16",
    "AMX-TILE": "amx_tile",
    "AMX-INT8": "amx_int8",
    "AMX-BF16": "amx_bf16",
}
_LIBRARIES = ("tensorflow", "keras", "openvino", "nncf", "numpy", "onnxruntime", "onnx",
              "tf2onnx", "ai-edge-litert")


def _cpuinfo() -> tuple[str, set[str], int]:
    """CPU model name, ISA flags and physical core count from /proc/cpuinfo (Linux)."""
    model, flags, cores = platform.processor() or platform.machine(), set(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags, 0
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    return model, flags, len(cores)


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def capture_environment(settings: Settings, threads: int) -> dict:
    """Where the numbers come from: CPU, ISA flags that matter, cores, threads, versions."""
    model, flags, physical = _cpuinfo()
    environment = {
        "cpu": model,
        "isa": {name: flag in flags for name, flag in _ISA_FLAGS.items()},
        "logical_cores": os.cpu_count(),
        "physical_cores": physical or None,
        "usable_cores": usable_cores(),
        "threads": threads,
        "device": settings.device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: package_version(name) for name in _LIBRARIES},
        "load_average_start": _load_average(),
    }
    try:  # the parent may import OpenVINO (never TensorFlow)
        import openvino as ov

        core = ov.Core()
        environment["openvino_devices"] = {
            device: core.get_property(device, "FULL_DEVICE_NAME")
            for device in core.available_devices
        }
    except Exception as error:  # a broken plugin must not stop the benchmark
        environment["openvino_devices"] = {"error": str(error)}
    return environment


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def check_device(device: str) -> str:
    """Fail early, with one line, on an OpenVINO device this machine does not have."""
    import openvino as ov

    from edgedigits.runtime import check_device as check_openvino_device

    return check_openvino_device(ov.Core(), device)


# --------------------------------------------------------------------------------------------
# Measurement (shared by every runtime; runs inside the child)


class Runner:
    """One loaded variant, driven the same way for every runtime.

    Subclasses use their runtime's fastest honest calling pattern: ``single`` answers one
    uint8 (1, 28, 28, 1) image, ``batched`` a uint8 (N, 28, 28, 1) batch, both returning
    probabilities (N, 10); ``stream`` keeps the runtime busy with ``batches`` until
    ``deadline`` (perf_counter seconds) and returns how many images it finished.
    """

    executes = "unknown"  # the precision that actually ran, as the runtime reports it
    trial_seconds = 0.15  # how long prepare_stream may try each calling pattern

    def __init__(self) -> None:
        self.details: dict = {}

    def single(self, image: np.ndarray) -> np.ndarray:
        return self.batched(image)

    def batched(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare_stream(self, batch_size: int) -> None:
        """Called before a batch size is measured (e.g. to pick a faster compiled form)."""

    def stream(self, batches: Sequence[np.ndarray], deadline: float) -> int:
        done = index = 0
        while time.perf_counter() < deadline:
            done += len(self.batched(batches[index % len(batches)]))
            index += 1
        return done

    def close(self) -> None:
        pass


def predict_all(runner: Runner, images: np.ndarray, chunk: int = 500) -> np.ndarray:
    """Predicted digits for every image, in chunks (accuracy does not need the fast path)."""
    labels = [np.argmax(runner.batched(images[start:start + chunk]), axis=1)
              for start in range(0, len(images), chunk)]
    return np.concatenate(labels).astype(np.uint8)


def _spread(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max())}


def measure_latency(runner: Runner, images: np.ndarray, effort: Effort) -> dict:
    """Batch-1 latency: warm-up, then timed single-image calls over different test images.

    At least ``latency_min_calls`` calls (model.predict, at tens of ms a call, stops there),
    and more until ``latency_seconds`` have passed, so fast runtimes get stable tails.
    """
    min_calls = effort.latency_min_calls
    singles = [images[i:i + 1] for i in range(min(len(images), 2000))]
    for index in range(effort.latency_warmup_calls):
        runner.single(singles[index % len(singles)])
    timings = np.empty(max(min_calls, effort.latency_max_calls), dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(effort.latency_seconds * 1e9)
    calls = 0
    while calls < len(timings) and (calls < min_calls or clock() < deadline):
        image = singles[calls % len(singles)]
        started = clock()
        runner.single(image)
        timings[calls] = clock() - started
        calls += 1
    micros = timings[:calls] / 1000.0
    blocks = np.array_split(micros, min(LATENCY_BLOCKS, calls))
    return {
        "calls": calls,
        "p50": float(np.percentile(micros, 50)),
        "p90": float(np.percentile(micros, 90)),
        "p99": float(np.percentile(micros, 99)),
        "mean": float(micros.mean()),
        "min": float(micros.min()),
        "p50_blocks": _spread([np.percentile(block, 50) for block in blocks]),
    }


def measure_throughput(runner: Runner, images: np.ndarray, batch_size: int,
                       effort: Effort) -> dict:
    """Images/s at one batch size: a short warm-up window, then timed windows (repeats)."""
    batches = _make_batches(images, batch_size)
    runner.prepare_stream(batch_size)
    runner.stream(batches, time.perf_counter() + min(0.2, effort.throughput_seconds))
    rates = []
    for _ in range(effort.throughput_repeats):
        started = time.perf_counter()
        done = runner.stream(batches, started + effort.throughput_seconds)
        rates.append(done / (time.perf_counter() - started))
    return _spread(rates)


def _make_batches(images: np.ndarray, batch_size: int, limit: int = 64) -> list[np.ndarray]:
    """Contiguous, writeable batches of test images (tiled when the set is smaller)."""
    if len(images) < batch_size:
        images = np.resize(images, (batch_size, *images.shape[1:]))
    count = max(1, min(limit, len(images) // batch_size))
    return [np.array(images[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: per process, unaffected by how it started)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------
# Runners: OpenVINO (through the shared runtime interface) and native TensorFlow


class OpenVINORunner(Runner):
    """OpenVINO through ``edgedigits.runtime``: the exact code classify and webcam run.

    Latency: the runtime's static batch-1 request with its input bound once (LATENCY hint).
    Throughput: a second classifier with the THROUGHPUT hint, fed through ``predict_async``
    (an ``AsyncInferQueue``), so every stream of the device is busy, or the LATENCY classifier's
    synchronous ``predict`` where that measures faster (small batches; see ``prepare_stream``).
    """

    def __init__(self, model_path: Path, device: str, threads: int,
                 inference_precision: str | None) -> None:
        super().__init__()
        from edgedigits.runtime import OpenVINOClassifier

        self._latency = OpenVINOClassifier(model_path, device, hint="latency",
                                           inference_precision=inference_precision,
                                           threads=threads)
        self._input, self._output = self._latency.bind_single()
        self._latency.infer_single()  # load = ready to answer, as for every runtime
        # Compiled after the load time is taken: a second classifier, not part of loading one.
        self._make_throughput = lambda: OpenVINOClassifier(
            model_path, device, hint="throughput", inference_precision=inference_precision,
            threads=threads)
        self._throughput_classifier = None
        self.executes = self._latency.precision
        self.details = {"hint_latency": "LATENCY", "hint_throughput": "THROUGHPUT",
                        "inference_precision": inference_precision or "device default",
                        "variant_in_ir": self._latency.variant}

    @property
    def _throughput(self):
        if self._throughput_classifier is None:
            self._throughput_classifier = self._make_throughput()
        return self._throughput_classifier

    def single(self, image: np.ndarray) -> np.ndarray:
        self._input[...] = image
        self._latency.infer_single()
        return self._output

    def batched(self, images: np.ndarray) -> np.ndarray:
        return self._throughput.predict(images)

    def prepare_stream(self, batch_size: int) -> None:
        # The async queue pays a Python callback per job: at small batches that can cost more
        # than the inference, and a plain loop on the LATENCY classifier wins. Measure both
        # briefly and keep the faster, recording which (as TFFunctionRunner does for XLA).
        batch = np.zeros((batch_size, 28, 28, 1), np.uint8)
        rates = {}
        for path in ("async", "sync"):
            self._path = path
            self.stream([batch], time.perf_counter() + self.trial_seconds / 3)  # warm-up
            started = time.perf_counter()
            done = self.stream([batch], started + self.trial_seconds)
            rates[path] = done / (time.perf_counter() - started)
        self._path = max(rates, key=rates.get)
        self.details.setdefault("throughput_path", {})[str(batch_size)] = (
            "predict_async, THROUGHPUT hint" if self._path == "async"
            else "synchronous predict, LATENCY hint")

    def stream(self, batches: Sequence[np.ndarray], deadline: float) -> int:
        if getattr(self, "_path", "async") == "sync":
            return self._stream_sync(batches, deadline)
        done = [0]

        def count(result) -> None:
            done[0] += len(result.probabilities)

        index = 0
        while time.perf_counter() < deadline:
            self._throughput.predict_async(batches[index % len(batches)], count)
            index += 1
        self._throughput.wait_all()
        return done[0]

    def _stream_sync(self, batches: Sequence[np.ndarray], deadline: float) -> int:
        done = index = 0
        while time.perf_counter() < deadline:
            done += len(self._latency.predict(batches[index % len(batches)]))
            index += 1
        return done

    def close(self) -> None:
        self._latency.close()
        if self._throughput_classifier is not None:
            self._throughput_classifier.close()


class KerasPredictRunner(Runner):
    """``model.predict``: what the tutorial and most Keras users call, per image and per batch."""

    def __init__(self, model_path: Path, threads: int) -> None:
        super().__init__()
        self._tf = _import_tensorflow(threads)
        self._model = _load_keras(model_path)
        self.executes = "f32"
        self.single(np.zeros((1, 28, 28, 1), np.uint8))
        self._batch_size = 32  # Keras' default

    def batched(self, images: np.ndarray) -> np.ndarray:
        return self._model.predict(_to_float(images), batch_size=256, verbose=0)

    def single(self, image: np.ndarray) -> np.ndarray:
        return self._model.predict(_to_float(image), verbose=0)

    def prepare_stream(self, batch_size: int) -> None:
        self._batch_size = batch_size

    def stream(self, batches: Sequence[np.ndarray], deadline: float) -> int:
        # predict over a large array with batch_size=b: how Keras users run many images.
        chunk = np.concatenate(batches)[: max(256, 8 * self._batch_size)]
        done = 0
        while time.perf_counter() < deadline:
            self._model.predict(_to_float(chunk), batch_size=self._batch_size, verbose=0)
            done += len(chunk)
        return done


class TFFunctionRunner(Runner):
    """The fastest native TensorFlow path: a ``tf.function`` around the model, called directly.

    Each use (single images, each batch size) tries the graph with and without XLA
    (``jit_compile``) and keeps the faster, recording which: XLA wins at batch 1 on this kind of
    model and can lose on large batches, so one fixed choice would be unfair to TensorFlow.
    The uint8 -> float /255 happens inside the graph, as in the OpenVINO IR.
    """

    def __init__(self, model_path: Path, threads: int) -> None:
        super().__init__()
        tf = self._tf = _import_tensorflow(threads)
        model = _load_keras(model_path)
        self.executes = "f32"
        spec = tf.TensorSpec((None, 28, 28, 1), tf.uint8)

        def scaled(images):
            return model(tf.cast(images, tf.float32) / 255.0, training=False)

        # A concrete function skips tf.function's argument dispatch: ~80 µs less per call.
        self._functions = {
            xla: tf.function(scaled, jit_compile=xla, input_signature=[spec])
            .get_concrete_function()
            for xla in (False, True)
        }
        self._current = self._functions[True]
        self._current(tf.constant(np.zeros((1, 28, 28, 1), np.uint8)))
        self.details = {"xla": {}}
        self._choose("single", np.zeros((1, 28, 28, 1), np.uint8), calls=50)

    def _choose(self, use: str, batch: np.ndarray, calls: int) -> None:
        tensor = self._tf.constant(batch)
        timings = {}
        for xla, function in self._functions.items():
            function(tensor)  # compile for this shape
            started = time.perf_counter()
            for _ in range(calls):
                function(tensor).numpy()
            timings[xla] = time.perf_counter() - started
        best = min(timings, key=timings.get)
        self._current = self._functions[best]
        self.details["xla"][use] = best

    def single(self, image: np.ndarray) -> np.ndarray:
        return self._current(self._tf.constant(image)).numpy()

    def batched(self, images: np.ndarray) -> np.ndarray:
        return self._current(self._tf.constant(images)).numpy()

    def prepare_stream(self, batch_size: int) -> None:
        calls = max(3, 2048 // batch_size) if batch_size > 1 else 50
        self._choose(f"batch {batch_size}", np.zeros((batch_size, 28, 28, 1), np.uint8), calls)


def _import_tensorflow(threads: int):
    from edgedigits.cli import import_tensorflow

    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def _load_keras(path: Path):
    import keras

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / np.float32(255.0)


def import_runtime(variant: Variant) -> None:
    """Import the variant's runtime library, so its (large) import time is reported apart."""
    if variant.backend == "OpenVINO":
        import edgedigits.runtime  # noqa: F401  (openvino, and never TensorFlow)
    elif variant.backend == "TensorFlow":
        from edgedigits.cli import import_tensorflow

        import_tensorflow()
    elif variant.backend == "ONNX Runtime":
        import onnxruntime  # noqa: F401
    elif variant.backend == "LiteRT":
        import ai_edge_litert.interpreter  # noqa: F401


def open_runner(spec: dict) -> Runner:
    variant = VARIANTS_BY_NAME[spec["variant"]]
    path = Path(spec["model_path"])
    threads = spec["threads"]
    if variant.backend == "OpenVINO":
        return OpenVINORunner(path, spec["device"], threads, variant.inference_precision)
    if variant.name == "tf-predict":
        return KerasPredictRunner(path, threads)
    if variant.name == "tf-function":
        return TFFunctionRunner(path, threads)
    from edgedigits import peers

    return peers.open_peer_runner(variant.backend, path, threads)


# --------------------------------------------------------------------------------------------
# The child process: load one variant, measure it, write one JSON result


def _progress(message: str) -> None:
    print(f"progress: {message}", flush=True)


def measure_variant(spec: dict) -> dict:
    """Everything about one variant, in this process. ``spec`` comes from the parent."""
    effort = Effort(**spec["effort"])
    with np.load(spec["test_set"]) as test_set:
        images, labels = test_set["images"], test_set["labels"]
    variant = VARIANTS_BY_NAME[spec["variant"]]

    _progress("importing")
    started = time.perf_counter()
    import_runtime(variant)
    import_seconds = time.perf_counter() - started
    _progress("loading")
    started = time.perf_counter()
    runner = open_runner(spec)  # read + compile + the first answer
    load_seconds = time.perf_counter() - started
    runner.trial_seconds = min(runner.trial_seconds, effort.throughput_seconds)
    try:
        _progress("accuracy")
        predicted = predict_all(runner, images)
        np.save(spec["predictions"], predicted)
        _progress("batch-1 latency")
        latency = measure_latency(runner, images, effort)
        throughput = {}
        for batch_size in spec["batch_sizes"]:
            _progress(f"throughput, batch {batch_size}")
            throughput[str(batch_size)] = measure_throughput(runner, images, batch_size, effort)
    finally:
        runner.close()
    return {
        "variant": variant.name,
        "executes": runner.executes,
        "accuracy": float(np.mean(predicted == labels)),
        "test_images": len(labels),
        "latency": latency,
        "throughput": throughput,
        "import_seconds": import_seconds,
        "load_seconds": load_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "details": runner.details,
    }


def _child_main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = measure_variant(spec)
    except UserError as error:
        result = {"variant": spec["variant"], "error": str(error)}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# The parent: plan, run children, collect rows


@dataclass
class Row:
    """One variant's line in the report (measured, skipped or failed)."""

    variant: Variant
    model_path: Path | None = None
    status: str = "pending"  # "ok" | "skipped" | "failed"
    note: str = ""
    result: dict = field(default_factory=dict)
    agreement_with_keras: float | None = None


def _model_path(variant: Variant, settings: Settings, peers_dir: Path) -> Path:
    if variant.source == "keras":
        return settings.keras_model
    if variant.source.startswith("ir/"):
        return settings.models_dir / contract.IR_DIR / variant.source[3:] / contract.IR_FILE
    return peers_dir / variant.source


def _size_bytes(path: Path) -> int:
    if path.suffix == ".xml":  # an IR is the .xml and its .bin
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size
    return path.stat().st_size


def plan_rows(settings: Settings, peers_dir: Path) -> list[Row]:
    """The rows to measure, with missing models and packages marked as skipped (and why)."""
    names = settings.variants or list(VARIANTS_BY_NAME)
    rows = []
    for name in names:
        variant = VARIANTS_BY_NAME[name]
        row = Row(variant, _model_path(variant, settings, peers_dir))
        missing = [package for package in variant.packages
                   if importlib.util.find_spec(package) is None]
        if variant.source == "keras" or variant.is_peer:
            if not settings.keras_model.is_file():
                row.status, row.note = "skipped", (
                    f"no Keras model {settings.keras_model} (run train/train.py)")
        elif not row.model_path.is_file():
            row.status, row.note = "skipped", (
                f"no {row.model_path} (run convert/to_ir.py"
                + {"ir/fp16": " --fp16", "ir/int8": " --int8"}.get(variant.source, "") + ")")
        if row.status == "pending" and missing:
            row.status, row.note = "skipped", f"needs {', '.join(missing)}: {PEERS_INSTALL_HINT}"
        rows.append(row)
    return rows


def _child_env() -> dict:
    # Children must import this package the same way the parent did, installed or not.
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_child(module: str, spec: dict, workdir: Path, on_progress: Callable[[str], None],
              timeout: float) -> dict:
    """Run ``python -m module SPEC`` and return the JSON it wrote (or an ``error``)."""
    name = spec.get("variant", module.rsplit(".", 1)[-1])
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = workdir / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(spec_path)], stdout=subprocess.PIPE,
            stderr=log, text=True, env=_child_env(), cwd=os.getcwd())
        started = time.monotonic()
        try:
            for line in process.stdout:
                if line.startswith("progress: "):
                    on_progress(line[len("progress: "):].strip())
                if time.monotonic() - started > timeout:
                    raise subprocess.TimeoutExpired(module, timeout)
            process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return {"error": f"timed out after {timeout:.0f} s"}
        except BaseException:  # Ctrl-C: do not leave a child running
            process.kill()
            process.wait()
            raise
    result_path = Path(spec["result"])
    if process.returncode != 0 or not result_path.is_file():
        return {"error": f"crashed (exit {process.returncode}): {_last_line(log_path)}"}
    return json.loads(result_path.read_text())


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
             if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _test_set(settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from edgedigits.data import load_mnist

    mnist = load_mnist(settings.data_dir)
    count = settings.effort.test_images or len(mnist.x_test)
    calibration = mnist.x_train[: settings.effort.calibration_images]
    return mnist.x_test[:count, :, :, None], mnist.y_test[:count], calibration


def run_benchmark(settings: Settings) -> dict:
    """Measure every planned variant, each in its own process; return the report data."""
    from tqdm import tqdm

    threads = settings.threads or usable_cores()
    effort = settings.effort
    with tempfile.TemporaryDirectory(prefix="edgedigits-benchmark-") as temporary:
        workdir = Path(temporary)
        peers_dir = workdir / "peers"
        rows = plan_rows(settings, peers_dir)
        runnable = [row for row in rows if row.status == "pending"]
        if not runnable:
            reasons = "; ".join(f"{row.variant.name}: {row.note}" for row in rows)
            raise UserError(f"nothing to benchmark in {settings.models_dir} ({reasons})")
        if any(row.variant.backend == "OpenVINO" for row in runnable):
            check_device(settings.device)
        environment = capture_environment(settings, threads)
        images, labels, calibration = _test_set(settings)
        test_set = workdir / "test_set.npz"
        np.savez(test_set, images=images, labels=labels)

        peers = [row for row in runnable if row.variant.is_peer]
        bar = tqdm(total=len(runnable) + (1 if peers else 0), unit="variant",
                   disable=not settings.progress, file=sys.stderr, leave=False)
        timeout = 300 if settings.quick else 1200
        try:
            if peers:
                bar.set_description("exporting peers")
                calibration_path = workdir / "calibration.npy"
                np.save(calibration_path, calibration)
                exported = run_child(
                    "edgedigits.peers",
                    {"keras_model": str(settings.keras_model), "output": str(peers_dir),
                     "calibration": str(calibration_path), "threads": threads,
                     "formats": [row.variant.source for row in peers],
                     "result": str(workdir / "peers.result.json")},
                    workdir, bar.set_postfix_str, timeout)
                for row in peers:
                    problem = exported.get("error") or exported.get("errors", {}).get(
                        row.variant.source)
                    if problem or not row.model_path.is_file():
                        row.status = "failed"
                        row.note = f"export failed: {problem or 'no file written'}"
                bar.update(1)
            for row in runnable:
                if row.status != "pending":
                    bar.update(1)
                    continue
                bar.set_description(row.variant.name)
                spec = {
                    "variant": row.variant.name, "model_path": str(row.model_path),
                    "device": settings.device, "threads": threads,
                    "batch_sizes": list(settings.batch_sizes),
                    "effort": dataclasses.asdict(effort), "test_set": str(test_set),
                    "predictions": str(workdir / f"{row.variant.name}.predictions.npy"),
                    "result": str(workdir / f"{row.variant.name}.result.json"),
                }
                result = run_child("edgedigits.benchmark", spec, workdir,
                                   bar.set_postfix_str, timeout)
                if "error" in result:
                    row.status, row.note = "failed", result["error"]
                else:
                    row.status, row.result = "ok", result
                    row.result["size_bytes"] = _size_bytes(row.model_path)
                    row.result["predictions"] = np.load(spec["predictions"])
                bar.update(1)
        finally:
            bar.close()
        environment["load_average_end"] = _load_average()
        return build_report(rows, environment, settings, threads)


# --------------------------------------------------------------------------------------------
# Report data: rows, ratios, goals


def _keras_reference(rows: list[Row]) -> np.ndarray | None:
    for name in ("tf-predict", "tf-function"):
        for row in rows:
            if row.variant.name == name and row.status == "ok":
                return row.result["predictions"]
    return None


def _row_record(row: Row, reference: np.ndarray | None) -> dict:
    variant = row.variant
    record = {
        "variant": variant.name,
        "backend": variant.backend,
        "label": variant.label,
        "precision": variant.precision,
        "status": row.status,
        "note": row.note,
        "model_path": str(row.model_path) if row.model_path and not variant.is_peer else None,
    }
    if row.status != "ok":
        return record
    result = row.result
    latency = result["latency"]
    agreement = None
    if reference is not None:
        agreement = float(np.mean(result["predictions"] == reference))
    record.update({
        "executes": result["executes"],
        "accuracy": result["accuracy"],
        "agreement_with_keras": agreement,
        "test_images": result["test_images"],
        "latency_us_p50": latency["p50"],
        "latency_us_p90": latency["p90"],
        "latency_us_p99": latency["p99"],
        "latency_us_mean": latency["mean"],
        "latency_us_min": latency["min"],
        "latency_calls": latency["calls"],
        "latency_us_p50_spread": latency["p50_blocks"],
        "throughput_ips": {batch: spread["median"]
                           for batch, spread in result["throughput"].items()},
        "throughput_ips_spread": result["throughput"],
        "size_bytes": result["size_bytes"],
        "import_seconds": result["import_seconds"],
        "load_seconds": result["load_seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "tensorflow_imported": result["tensorflow_imported"],
        "details": result["details"],
    })
    return record


def _best_throughput(record: dict) -> float | None:
    values = list(record.get("throughput_ips", {}).values())
    return max(values) if values else None


def compute_goals(records: list[dict]) -> list[dict]:
    """The issue's goals for this machine, each with its measured value and met / not met."""
    ok = {r["variant"]: r for r in records if r["status"] == "ok"}
    goals = []

    def goal(text: str, value: float | None, target: float, unit: str,
             higher_is_better: bool = True) -> None:
        if value is None:
            return
        met = value >= target if higher_is_better else value <= target
        goals.append({"goal": text, "measured": value, "target": target, "unit": unit,
                      "met": bool(met)})

    int8 = ok.get("ov-int8")
    if int8:
        p50 = int8["latency_us_p50"]
        goal("OpenVINO INT8 batch-1 p50", p50, 30.0, "µs", higher_is_better=False)
        if "tf-predict" in ok:
            goal("Keras predict p50 / OpenVINO INT8 p50", ok["tf-predict"]["latency_us_p50"] / p50,
                 300.0, "x")
        if "tf-function" in ok:
            goal("fastest native TF p50 / OpenVINO INT8 p50",
                 ok["tf-function"]["latency_us_p50"] / p50, 10.0, "x")
        goal("OpenVINO INT8 throughput (best batch size)", _best_throughput(int8), 150_000.0,
             "images/s")
        if "tf-predict" in ok:
            goal("OpenVINO INT8 / Keras predict throughput (best batch sizes)",
                 _best_throughput(int8) / _best_throughput(ok["tf-predict"]), 10.0, "x")
        if "ov-fp32" in ok:
            goal("INT8 accuracy drop vs FP32", 100 * (ok["ov-fp32"]["accuracy"]
                                                      - int8["accuracy"]),
                 0.10, "pt", higher_is_better=False)
    openvino = [r for r in ok.values() if r["backend"] == "OpenVINO"]
    peers = [r for r in ok.values() if r["backend"] not in ("OpenVINO", "TensorFlow")]
    if openvino and peers:
        best_ov = min(openvino, key=lambda r: r["latency_us_p50"])
        best_peer = min(peers, key=lambda r: r["latency_us_p50"])
        goal(f"OpenVINO speed-up over the best peer at batch 1: {best_peer['variant']} p50 / "
             f"{best_ov['variant']} p50", best_peer["latency_us_p50"] / best_ov["latency_us_p50"],
             1.3, "x")
        best_ov = max(openvino, key=_best_throughput)
        best_peer = max(peers, key=_best_throughput)
        goal(f"OpenVINO speed-up over the best peer in throughput: {best_ov['variant']} / "
             f"{best_peer['variant']}", _best_throughput(best_ov) / _best_throughput(best_peer),
             1.3, "x")
    return goals


def build_report(rows: list[Row], environment: dict, settings: Settings, threads: int) -> dict:
    reference = _keras_reference(rows)
    records = [_row_record(row, reference) for row in rows]
    effort = settings.effort
    return {
        "command": settings.command,
        "quick": settings.quick,
        "settings": {
            "models_dir": str(settings.models_dir), "keras_model": str(settings.keras_model),
            "batch_sizes": list(settings.batch_sizes), "threads": threads,
            "device": settings.device, "effort": dataclasses.asdict(effort),
        },
        "environment": environment,
        "rows": records,
        "goals": compute_goals(records),
    }


# --------------------------------------------------------------------------------------------
# Writing: table, JSON, Markdown, chart


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _size(value: int | None) -> str:
    return "—" if value is None else f"{value / 1e6:.2f} MB"


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table (shared by the terminal and Markdown)."""
    batch_sizes = report["settings"]["batch_sizes"]
    header = ["variant", "backend", "executes", "accuracy", "agree w/ Keras", "p50 µs", "p90 µs",
              "p99 µs", *[f"img/s @{b}" for b in batch_sizes], "size", "import s", "load s",
              "peak RSS MB"]
    cells = []
    for record in report["rows"]:
        if record["status"] != "ok":
            cells.append([record["variant"], record["backend"],
                          f"{record['status']}: {record['note']}"])
            continue
        agreement = record["agreement_with_keras"]
        cells.append([
            record["variant"], record["backend"], record["executes"],
            f"{100 * record['accuracy']:.2f} %",
            "—" if agreement is None else f"{100 * agreement:.2f} %",
            _fmt(record["latency_us_p50"], 1), _fmt(record["latency_us_p90"], 1),
            _fmt(record["latency_us_p99"], 1),
            *[_fmt(record["throughput_ips"].get(str(b))) for b in batch_sizes],
            _size(record["size_bytes"]), f"{record['import_seconds']:.2f}",
            f"{record['load_seconds']:.2f}",
            f"{record['peak_rss_mb']:.0f}",
        ])
    return header, cells


def format_table(report: dict) -> str:
    """A plain-text table for the terminal (skipped rows span the measured columns)."""
    header, cells = table_rows(report)
    full = [row for row in cells if len(row) == len(header)]
    widths = [max(len(header[i]), *(len(row[i]) for row in full)) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) if i >= 3 else h.ljust(w)
                       for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        if len(row) != len(header):
            lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]))
            continue
        lines.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def format_goals(report: dict, markdown: bool = False) -> list[str]:
    lines = []
    for goal in report["goals"]:
        digits = 1 if goal["unit"] in ("µs", "x") else (2 if goal["unit"] == "pt" else 0)
        comparison = "≤" if goal["unit"] in ("µs", "pt") else "≥"
        verdict = "met" if goal["met"] else "NOT met"
        verdict = f"**{verdict}**" if markdown else verdict.ljust(7)
        lines.append(f"{verdict}  {goal['goal']}: {_fmt(goal['measured'], digits)} "
                     f"{goal['unit']} (goal {comparison} {_fmt(goal['target'], digits)} "
                     f"{goal['unit']})")
    return lines


def spread_table(report: dict) -> list[str]:
    """Markdown rows showing the noise: p50 per block of calls, throughput per repeat."""
    batch_sizes = report["settings"]["batch_sizes"]
    lines = ["| variant | p50 µs per block (min / median / max) | "
             + " | ".join(f"img/s @{b} (min – max)" for b in batch_sizes) + " |",
             "|" + "---|" * (2 + len(batch_sizes))]
    for record in report["rows"]:
        if record["status"] != "ok":
            continue
        blocks = record["latency_us_p50_spread"]
        cells = [record["variant"],
                 f"{blocks['min']:,.1f} / {blocks['median']:,.1f} / {blocks['max']:,.1f}"]
        for batch in batch_sizes:
            spread = record["throughput_ips_spread"].get(str(batch))
            cells.append("—" if spread is None
                         else f"{spread['min']:,.0f} – {spread['max']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def environment_lines(report: dict) -> list[str]:
    environment = report["environment"]
    isa = ", ".join(name for name, present in environment["isa"].items() if present) or "none"
    libraries = ", ".join(f"{name} {version}" for name, version in
                          environment["libraries"].items() if version)
    load = environment.get("load_average_start"), environment.get("load_average_end")
    return [
        f"CPU: {environment['cpu']} — {environment['physical_cores'] or '?'} physical / "
        f"{environment['logical_cores']} logical cores ({environment['usable_cores']} usable)",
        f"ISA: {isa}",
        f"Threads: {environment['threads']} for every runtime (OpenVINO INFERENCE_NUM_THREADS, "
        "TensorFlow intra-op, ONNX Runtime intra-op, LiteRT num_threads); "
        f"OpenVINO device {environment['device']}",
        f"Libraries: {libraries}; Python {environment['python']}",
        f"Load average (1/5/15 min) at start {load[0]}, at end {load[1]}",
    ]


def render_markdown(report: dict) -> str:
    header, cells = table_rows(report)
    lines = ["# Benchmark: native TensorFlow vs OpenVINO (and peers)", ""]
    if report["quick"]:
        lines += ["> **Quick mode** (`--quick`): few iterations on a small subset. These numbers "
                  "check that the benchmark runs; they are not a measurement.", ""]
    lines += [f"Command: `{report['command']}`", ""]
    lines += [f"- {line}" for line in environment_lines(report)] + [""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in cells:
        if len(row) != len(header):
            row = [*row[:2], row[2], *[""] * (len(header) - 3)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines += ["", "Latency: batch-1 calls, one different test image each, after a warm-up; "
              "OpenVINO with the LATENCY hint. Throughput: the median of "
              f"{report['settings']['effort']['throughput_repeats']} timed windows per batch "
              "size; OpenVINO with the THROUGHPUT hint and an AsyncInferQueue (or its synchronous "
              "LATENCY path where that measured faster, see `details`). import s: importing "
              "the runtime library; load s: reading + compiling the model + its first answer. "
              "Each row ran in its own process (peak RSS is that process's).", ""]
    if report["goals"]:
        lines += ["## Goals", ""]
        lines += [f"- {line}" for line in format_goals(report, markdown=True)] + [""]
    lines += ["## Spread across repeats", "",
              f"Batch-1 calls are split into {LATENCY_BLOCKS} consecutive blocks; throughput is "
              f"timed {report['settings']['effort']['throughput_repeats']} times per batch size. "
              "A wide spread means the machine was busy.", ""]
    lines += [*spread_table(report), ""]
    lines += ["## Variants", ""]
    lines += [f"- `{r['variant']}` ({r['backend']}): {r['label']}" for r in report["rows"]]
    return "\n".join(lines) + "\n"


_BACKEND_COLOURS = {"TensorFlow": "#e8710a", "OpenVINO": "#1a73e8", "ONNX Runtime": "#7b1fa2",
                    "LiteRT": "#188038"}


def plot_report(report: dict, path: Path) -> Path:
    """Two panels a person can read at a glance: batch-1 latency and best throughput (log)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: CI and edge boxes have no display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    measured = [r for r in report["rows"] if r["status"] == "ok"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.5 * len(measured) + 2.2),
                                         sharey=True)
    names = [r["variant"] for r in measured][::-1]
    records = measured[::-1]
    colours = [_BACKEND_COLOURS.get(r["backend"], "grey") for r in records]
    positions = np.arange(len(records))

    p50 = np.array([r["latency_us_p50"] for r in records])
    p99 = np.array([r["latency_us_p99"] for r in records])
    left.barh(positions, p50, color=colours)
    left.errorbar(p50, positions, xerr=[np.zeros_like(p50), p99 - p50], fmt="none",
                  ecolor="black", capsize=3, linewidth=1)
    for y, value, tail in zip(positions, p50, p99, strict=True):
        left.text(max(value, tail) * 1.25, y,
                  f"{value:,.0f} µs" if value >= 100 else f"{value:.1f} µs",
                  va="center", fontsize=8)
    left.set_xscale("log")
    left.set_xlim(right=max(p99.max(), p50.max()) * 12)
    left.set_title("Batch-1 latency, p50 (whisker: p99) — shorter is better")
    left.set_xlabel("µs per image (log scale)")
    left.set_yticks(positions, names)

    best = np.array([_best_throughput(r) for r in records])
    best_batch = [max(r["throughput_ips"], key=r["throughput_ips"].get) for r in records]
    right.barh(positions, best, color=colours)
    for y, value, batch in zip(positions, best, best_batch, strict=True):
        right.text(value * 1.08, y, f"{value:,.0f}/s (batch {batch})", va="center", fontsize=8)
    right.set_xscale("log")
    right.set_xlim(right=best.max() * 12)
    right.set_title("Throughput at the best batch size — longer is better")
    right.set_xlabel("images per second (log scale)")

    backends = dict.fromkeys(r["backend"] for r in measured)
    figure.legend(handles=[Patch(color=_BACKEND_COLOURS.get(b, "grey"), label=b)
                           for b in backends], loc="lower center", ncol=len(backends),
                  frameon=False)
    environment = report["environment"]
    load = environment.get("load_average_start")
    title = (f"{environment['cpu']}, {environment['threads']} threads per runtime"
             + (f", load average {load[0]:.1f} at start" if load else "")
             + (" — QUICK MODE, not a measurement" if report["quick"] else ""))
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 0.97))
    with atomic_path(path, suffix=".png") as staged:
        figure.savefig(staged, dpi=120)
    plt.close(figure)
    return path


def write_report(report: dict, output: Path) -> dict[str, Path]:
    """benchmark.json, benchmark.md and benchmark.png in ``output`` (each written atomically)."""
    ensure_writable_dir(output)
    paths = {"json": output / "benchmark.json", "markdown": output / "benchmark.md",
             "chart": output / "benchmark.png"}
    write_json(paths["json"], report)
    write_text(paths["markdown"], render_markdown(report))
    if any(r["status"] == "ok" for r in report["rows"]):
        plot_report(report, paths["chart"])
    else:
        del paths["chart"]
    return paths


if __name__ == "__main__":
    # Run the importable copy of this module, so peers' runners and ours share one Runner class.
    from edgedigits.benchmark import _child_main as child_main

    sys.exit(child_main(sys.argv[1:]))
