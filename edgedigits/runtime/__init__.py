"""The runtime interface: one "digit classifier", one registry of backends.

Everything downstream (classify, webcam, benchmark, serve) talks to :class:`DigitClassifier`
and never branches on the backend::

    classifier = load_classifier()                     # best IR under models/ (int8 > fp16 > fp32)
    probabilities = classifier.predict(images)         # uint8 (N, 28, 28[, 1]) -> float32 (N, 10)
    classifier.predict_async(images, on_result, userdata=frame_number)   # pipelined
    classifier.wait_all()

Images are MNIST-format: 28x28 uint8, white digit on black (``preprocess.to_mnist_format``
makes them from photos). Each backend does the /255 its model needs (the OpenVINO IR does it
inside its graph).

Backends (``--backend`` in every inference command; the benchmark measures each one through
this same interface, so its numbers are what the commands run):

==============  =====================================  =============================
name (aliases)  what runs                              module (imported on first use)
==============  =====================================  =============================
openvino (ov)   an OpenVINO IR (.xml + .bin)           ``openvino_backend``
tensorflow (tf) the Keras model, compiled tf.function  ``tensorflow_backend``
keras-predict   the Keras model through model.predict  ``tensorflow_backend``
onnxruntime     an ONNX file (optional package)        ``peers``
litert          a .tflite file (optional package)      ``peers``
remote (oip)    an OIP v2 server (``--server URL``)    ``remote`` (tritonclient)
==============  =====================================  =============================

Adding a backend is one :func:`register_backend` line naming its class as "module:Class"; the
class subclasses :class:`DigitClassifier`, takes ``(model, device="CPU", **options)`` (or, for
a backend whose model is an address rather than a file, ``(address, **options)``) and
implements ``predict``. Its module is imported only when the backend is used, so this module
imports neither OpenVINO nor TensorFlow: an edge box loads only the runtime it runs.
"""

from __future__ import annotations

import abc
import importlib
import inspect
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedigits import contract
from edgedigits.errors import UserError

IMAGE_SIZE = contract.IMAGE_SIZE
NUM_CLASSES = contract.NUM_CLASSES
# Largest batch one inference call runs; bigger batches are split (the 10,000-image test set
# in 40).
MAX_BATCH = 256
HINTS = ("latency", "throughput")
PRECISIONS = contract.PRECISIONS


@dataclass
class AsyncResult:
    """What ``predict_async`` hands to its callback (on a worker thread)."""

    probabilities: np.ndarray  # float32 (N, 10), owned by the callback (a copy)
    latency_ms: float  # time the backend spent on this batch
    userdata: Any


AsyncCallback = Callable[[AsyncResult], None]


def as_batch(images: np.ndarray, shape: tuple[int, ...] = contract.IMAGE_SHAPE) -> np.ndarray:
    """Check a batch of MNIST-format images (or of another model's ``shape``, (H, W, 1)) and
    return it as contiguous uint8 (N, H, W, 1)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != shape:
        height, width, _ = shape
        raise ValueError(f"expected uint8 images shaped (N, {height}, {width}) or "
                         f"(N, {height}, {width}, 1), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (raw 0-255 pixels), got {images.dtype}")
    return np.ascontiguousarray(images)


def in_batches(images: np.ndarray, batch_size: int | None,
               run: Callable[[np.ndarray], np.ndarray],
               output_shape: tuple[int, ...] = (NUM_CLASSES,)) -> np.ndarray:
    """``run`` over ``images`` (already :func:`as_batch`) at most ``batch_size`` at a time.

    ``run`` may return a view of a buffer it reuses: every answer is copied out.
    """
    size = min(batch_size or MAX_BATCH, MAX_BATCH)
    if len(images) == 0:
        return np.zeros((0, *output_shape), np.float32)
    if len(images) <= size:
        return np.array(run(images), dtype=np.float32)
    return np.concatenate([run(images[start:start + size])
                           for start in range(0, len(images), size)]).astype(np.float32)


class DigitClassifier(abc.ABC):
    """A digit classifier: uint8 MNIST-format images in, float32 probabilities (N, 10) out.

    Attributes: ``backend`` (its registry name), ``variant`` ("fp32" | "fp16" | "int8" |
    "keras" | ...: what the model file holds), ``precision`` (what actually executes: "f32",
    "bf16", "int8", ...), ``device``, ``model_path``, ``labels``, ``details`` (how the backend
    runs, for reports).

    ``predict`` is synchronous and meant for one caller at a time; ``batch_size`` caps how many
    images one inference call runs (a large array is split; default and ceiling
    :data:`MAX_BATCH`). ``predict_async`` queues a batch and calls ``callback(AsyncResult)``
    from a worker thread when it is done (in completion order, which may differ from
    submission order when several jobs run at once); ``wait_all`` blocks until every queued
    batch is done and re-raises the first exception a callback raised. ``bind_single`` /
    ``infer_single`` are the cheapest batch-1 call a backend has (the latency benchmark and
    live video use them).
    """

    backend: str
    variant: str
    precision: str
    device: str
    model_path: Path
    labels: tuple[str, ...] = contract.LABELS
    details: dict
    # What the model is (its task, edgedigits.tasks): a digit classifier unless the backend
    # says otherwise (the backends that read a model file set these from the model itself).
    model_type: str = contract.MODEL_TYPE
    input_shape: tuple[int, ...] = contract.IMAGE_SHAPE
    output_shape: tuple[int, ...] = (NUM_CLASSES,)

    @property
    def reading_task(self):
        """The task (edgedigits.tasks) that reads images with this model."""
        from edgedigits.tasks import get_task

        return get_task(self.model_type)

    @abc.abstractmethod
    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Probabilities (N, 10) for uint8 images (N, 28, 28[, 1])."""

    def predict_async(self, images: np.ndarray, callback: AsyncCallback,
                      userdata: Any = None) -> None:
        # Default: one worker thread running predict; OpenVINO overrides with AsyncInferQueue.
        batch = as_batch(images, self.input_shape).copy()
        if getattr(self, "_executor", None) is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
            self._futures: list = []

        def job() -> None:
            started = _now_ms()
            probabilities = self.predict(batch)
            callback(AsyncResult(probabilities, _now_ms() - started, userdata))

        self._futures = [f for f in self._futures if not f.done() or f.exception()]
        self._futures.append(self._executor.submit(job))

    def bind_single(self) -> tuple[np.ndarray, np.ndarray]:
        """The batch-1 buffers: (input (1, 28, 28, 1) uint8, output (1, 10) float32).

        Write an image into ``input[0, :, :, 0]``, call :meth:`infer_single`, read ``output``
        (overwritten by the next call). Backends with a zero-copy path bind these to it.
        """
        single = getattr(self, "_single_buffers", None)
        if single is None:
            single = self._single_buffers = (np.zeros((1, *self.input_shape), np.uint8),
                                             np.zeros((1, *self.output_shape), np.float32))
        return single

    def infer_single(self) -> None:
        image, output = self.bind_single()
        output[...] = self.predict(image)

    def warmup(self, batch_sizes: tuple[int, ...] = (1,), use_async: bool = False) -> None:
        """Run each batch size once (first runs allocate and compile: keep them out of timings).

        Backends with a choice of compiled forms make it here, per batch size.
        """
        for size in batch_sizes:
            blank = np.zeros((size, *self.input_shape), np.uint8)
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
# The registry of backends


@dataclass(frozen=True)
class Backend:
    """One registered backend: its class (imported on first use) and the models it reads."""

    name: str
    target: str  # "module:Class"
    aliases: tuple[str, ...] = ()
    model_suffixes: tuple[str, ...] = ()  # files it reads; empty: the model is not a file (URL)
    default_files: tuple[str, ...] = ()  # what it looks for inside a models folder
    summary: str = ""
    install: str = ""  # how to install its optional packages
    library: str = ""  # the runtime library it imports (the benchmark times that import)

    def load(self) -> type[DigitClassifier]:
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    def import_library(self) -> None:
        """Import the runtime library itself (TensorFlow quietly), then the backend's module."""
        if self.library == "tensorflow":
            from edgedigits.tensorflow_import import import_tensorflow

            import_tensorflow()
        elif self.library:
            importlib.import_module(self.library)
        self.load()

    @property
    def flag(self) -> str:
        """The shortest name for --backend, as error messages suggest it."""
        return min((self.name, *self.aliases), key=len)


BACKENDS: dict[str, Backend] = {}
_NAMES: dict[str, str] = {}


def register_backend(name: str, target: str, **fields: Any) -> Backend:
    """Make ``name`` (and ``aliases``) a backend of every inference command; see Backend."""
    backend = BACKENDS[name] = Backend(name, target, **fields)
    for key in (name, *backend.aliases):
        _NAMES[key] = name
    return backend


_PEERS = "pip install -r requirements-peers.txt"
_TRAIN = "pip install -r requirements.txt (the full install; an edge box runs OpenVINO IRs)"
register_backend("openvino", "edgedigits.runtime.openvino_backend:OpenVINOClassifier",
                 aliases=("ov",), model_suffixes=(".xml",), summary="OpenVINO IR (default)",
                 library="openvino",
                 install="pip install -r requirements-edge.txt")
register_backend("tensorflow", "edgedigits.runtime.tensorflow_backend:TensorFlowClassifier",
                 aliases=("tf", "keras", "tf-function"), model_suffixes=(".keras",),
                 default_files=(contract.KERAS_FILE,),
                 summary="native TensorFlow: the Keras model in a compiled tf.function",
                 library="tensorflow", install=_TRAIN)
register_backend("keras-predict", "edgedigits.runtime.tensorflow_backend:KerasPredictClassifier",
                 aliases=("tf-predict",), model_suffixes=(".keras",),
                 default_files=(contract.KERAS_FILE,),
                 summary="the Keras model through model.predict, as the tutorial calls it",
                 library="tensorflow", install=_TRAIN)
register_backend("onnxruntime", "edgedigits.runtime.peers:OnnxRuntimeClassifier", aliases=("ort",),
                 model_suffixes=(".onnx",), default_files=("model.onnx",),
                 summary="ONNX Runtime (optional)", install=_PEERS, library="onnxruntime")
register_backend("remote", "edgedigits.runtime.remote:RemoteClassifier", aliases=("oip", "server"),
                 summary="an Open Inference Protocol v2 server (--server URL)",
                 install="pip install -r requirements.txt", library="tritonclient")
register_backend("litert", "edgedigits.runtime.peers:LiteRTClassifier", aliases=("tflite",),
                 model_suffixes=(".tflite",), default_files=("model.tflite",),
                 summary="LiteRT (optional)", install=_PEERS,
                 library="ai_edge_litert.interpreter")


def get_backend(name: str) -> Backend:
    key = _NAMES.get((name or "").strip().lower())
    if key is None:
        raise UserError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[key]


def normalize_backend(name: str) -> str:
    """argparse type and check: any name or alias -> the registry name (UserError if none)."""
    return get_backend(name).name


def _backend_for_file(path: Path) -> Backend | None:
    return next((b for b in BACKENDS.values() if path.suffix.lower() in b.model_suffixes), None)


_FILE_KINDS = {".xml": "an OpenVINO IR", ".keras": "a Keras model", ".onnx": "an ONNX model",
               ".tflite": "a LiteRT model"}


# --------------------------------------------------------------------------------------------
# Choosing and loading a model


def find_model(model: str | Path | None = None, backend: str = "openvino",
               variant: str | None = None) -> Path:
    """The model file to load: ``model`` itself, or the best one inside a folder.

    OpenVINO: ``<dir>/ir/<variant>/model.xml`` in the order int8, fp16, fp32 (also accepts the
    ``ir`` folder or a variant folder itself). Other backends: their default file in the folder
    (``model.keras`` for TensorFlow). ``None`` means ``contract.default_models_dir()``.
    """
    entry = get_backend(backend)
    if variant is not None and variant not in contract.VARIANTS:
        raise UserError(f"unknown variant {variant!r}; choose from {', '.join(contract.VARIANTS)}")
    folder = contract.default_models_dir() if model is None else Path(model)
    if model is not None and not folder.exists():
        raise UserError(f"model not found: {folder}")
    if folder.is_file():
        return folder
    is_openvino = entry.name == "openvino"
    if not folder.exists():
        steps = "train/train.py" + (" and convert/to_ir.py" if is_openvino else "")
        raise UserError(f"no models folder {folder}: run {steps} first, or pass --model")
    if is_openvino:
        variants = (variant,) if variant else contract.VARIANT_PREFERENCE
        candidates = []
        for name in variants:
            candidates += [folder / contract.IR_DIR / name / contract.IR_FILE,
                           folder / name / contract.IR_FILE]
        if variant is None:
            candidates.append(folder / contract.IR_FILE)
    else:
        candidates = [folder / name for name in entry.default_files]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates[:4]) + (", ..." if len(candidates) > 4 else "")
    kind = _FILE_KINDS.get(entry.model_suffixes[0] if entry.model_suffixes else "", "model")
    step = {"openvino": "convert/to_ir.py", "tensorflow": "train/train.py",
            "keras-predict": "train/train.py"}.get(entry.name, "infer/benchmark.py (peers)")
    raise UserError(f"no {kind.split(' ', 1)[1]} in {folder} (looked for {tried}): run {step} "
                    "first, or pass --model")


def default_model_for(accept: tuple[str, ...] | None, backend: str = "openvino") -> Path | None:
    """The trained model a caller that can use the kinds ``accept`` should read by default:
    ``models/<folder>/`` of the first such kind that has its own default folder (the number
    reader's ``models/number-reader/``, for whole numbers) when one was trained (and, for
    OpenVINO, converted); None: the default models folder."""
    from edgedigits.tasks import all_tasks

    for task in all_tasks():
        if task.default_folder and (accept is None or task.model_type in accept):
            try:
                return find_model(contract.default_models_dir() / task.default_folder, backend)
            except UserError:
                continue
    return None


def load_classifier(model: str | Path | None = None, backend: str = "openvino",
                    device: str = "CPU", *, variant: str | None = None, hint: str = "latency",
                    inference_precision: str | None = None, threads: int | None = None,
                    async_jobs: int | None = None, verbose: bool = False,
                    accept: tuple[str, ...] | None = None,
                    **backend_options: Any) -> DigitClassifier:
    """Load a model: a model file, a folder to search, or (None) the default one.

    ``accept``: the kinds of model (model types, ``tasks.kinds_for(mode)``) the caller can use;
    None: any registered kind. With no ``model``, a kind with its own default folder among them
    comes first when it was trained (:func:`default_model_for`).
    Options a backend does not take are left out (``hint`` means nothing to TensorFlow).
    """
    entry = get_backend(backend)
    if model is None and accept is not None:
        model = default_model_for(accept, entry.name)
    if entry.model_suffixes:
        path = find_model(model, entry.name, variant)
        if path.suffix.lower() not in entry.model_suffixes:
            other = _backend_for_file(path)
            kind = _FILE_KINDS.get(path.suffix.lower(), "not a model file this backend reads")
            hint_text = (f"use --backend {other.flag}" if other else
                         f"the {entry.name} backend reads {', '.join(entry.model_suffixes)} files")
            if other is not None and other.name == "tensorflow" and entry.name == "openvino":
                hint_text += ", or convert it to OpenVINO IR with convert/to_ir.py"
            raise UserError(f"{path} is {kind}; {hint_text}")
    else:  # the model is an address (a server), not a file: created as cls(address, **options)
        if not model:
            raise UserError(f"the {entry.name} backend needs the server's address as --model "
                            "(or --server URL)")
        path = model
    options = dict(hint=hint, inference_precision=inference_precision, threads=threads,
                   async_jobs=async_jobs, verbose=verbose, accept=accept, **backend_options)
    try:
        cls = entry.load()
        accepted = inspect.signature(cls.__init__).parameters
        if "accept" not in accepted and accept is not None and contract.MODEL_TYPE not in accept:
            raise UserError(f"the {entry.name} backend runs digit classifiers only; "
                            "use --backend openvino or tf")
        options = {key: value for key, value in options.items()
                   if key in accepted and value is not None}
        if not entry.model_suffixes:
            return cls(path, **options)
        return cls(path, device, **options)
    except ModuleNotFoundError as error:  # an optional runtime that is not installed
        if entry.install and not (error.name or "").startswith("edgedigits"):
            raise UserError(f"the {entry.name} backend needs {error.name}: "
                            f"{entry.install}") from None
        raise


# The OpenVINO names older code imports from here, loaded only when asked for.
_LAZY = {"OpenVINOClassifier": "edgedigits.runtime.openvino_backend",
         "check_device": "edgedigits.runtime.openvino_backend",
         "TensorFlowClassifier": "edgedigits.runtime.tensorflow_backend"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
