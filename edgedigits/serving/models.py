"""The served models: a predictor (``digits``) and a transformer in front of it (``digit-reader``).

KServe's split, kept visible so either half can be replaced:

    client --BYTES (PNG/JPEG)--> digit-reader --UINT8 [N,28,28,1]--> digits --FP32 [N,10]--> ...
                                 (transformer: decode,                (predictor: the runtime;
                                  MNIST-format, segment,               with serve.py --server,
                                  rows like classify --json)           OVMS / Triton over OIP v2)

``DigitsModel`` wraps any :class:`edgedigits.runtime.DigitClassifier` (OpenVINO for ``digits``,
native TensorFlow for ``digits-tf``) and runs it through the classifier's ``predict_async``
(OpenVINO's ``AsyncInferQueue`` under the THROUGHPUT hint), awaited without blocking the event
loop. ``DigitReaderModel`` reads images with the same functions ``classify.py`` uses
(:mod:`edgedigits.reading.classify`) and fills rows with the same code, so a reading through
the server
is the row ``classify.py --json`` prints for that file (``path`` is ``images[i]``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
from dataclasses import dataclass, field

import cv2
import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from edgedigits import runtime
from edgedigits.reading import classify
from edgedigits.serving import metrics
from edgedigits.serving.image_readers import HEAVY_THREADS, ImageReaders
from edgedigits.serving.rest import tensor_array
from edgedigits.tasks import MULTI, SINGLE, Task

READER_NAME = "digit-reader"
TENSORFLOW_NAME = "digits-tf"
NUMBER_READER_NAME = "number-reader"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
RESULTS_NAME = "results"

DEFAULT_MAX_BATCH = 256  # images per request to `digits` (runtime.MAX_BATCH: one inference)
DEFAULT_MAX_IMAGES = 64  # encoded images per request to `digit-reader`
# Uploads are decoded with a pixel limit below the command line's: a server decodes several at
# once, and 25 MP (a 6000 x 4000 phone photo) is more than any digit needs.
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000


def bool_parameter(request: InferRequest, name: str) -> bool:
    """A request-level boolean parameter, from REST JSON or gRPC InferParameter."""
    parameters = request.parameters
    if not parameters or name not in parameters:
        return False
    value = parameters[name]
    if hasattr(value, "WhichOneof"):  # gRPC InferParameter
        kind = value.WhichOneof("parameter_choice")
        value = getattr(value, kind) if kind else False
    if isinstance(value, str):
        value = value.strip().lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no", ""):
            return False
    if isinstance(value, bool | int) and value in (0, 1):
        return bool(value)
    raise InvalidInput(f"parameter {name!r} must be true or false, got {value!r}")


def only_input(request: InferRequest, model: str, datatype: str) -> InferInput:
    """The request's single input tensor `images`, checked for name and datatype."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"model {model!r} takes one input {INPUT_NAME!r}, "
                           f"got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.name != INPUT_NAME:
        raise InvalidInput(f"model {model!r} has no input {tensor.name!r}; "
                           f"its input is {INPUT_NAME!r}")
    if tensor.datatype != datatype:
        raise InvalidInput(f"input {INPUT_NAME!r} of model {model!r} must be {datatype}, "
                           f"got {tensor.datatype}")
    return tensor


def _response(request: InferRequest, model: str, name: str, datatype: str,
              data: np.ndarray) -> InferResponse:
    for requested in request.request_outputs or []:  # REST and gRPC alike
        if requested.name != name:
            raise InvalidInput(f"model {model!r} has no output {requested.name!r}; its output "
                               f"is {name!r}")
    output = InferOutput(name, list(data.shape), datatype)
    # gRPC answers in raw_output_contents (the only place tritonclient's gRPC client reads);
    # REST starts from JSON lists, and KServe re-encodes them if the client asked for binary.
    output.set_data_from_numpy(data, binary_data=bool(request.from_grpc))
    return InferResponse(response_id=request.id or "", model_name=model, infer_outputs=[output],
                         use_binary_outputs=request.use_binary_outputs,
                         requested_outputs=request.request_outputs)


# --------------------------------------------------------------------------------------------
# The predictor


class DigitsModel(Model):
    """OIP v2 model: input `images` UINT8 [-1,28,28,1] -> output `probabilities` FP32 [-1,10]
    (the number reader: [-1,32,192,1] -> [-1,48,11], contract.SHAPES)."""

    def __init__(self, name: str, classifier: runtime.DigitClassifier,
                 max_batch: int = DEFAULT_MAX_BATCH, in_flight: int = 4) -> None:
        super().__init__(name)
        self.classifier = classifier
        self.max_batch = max_batch
        # OpenVINO's AsyncInferQueue blocks the submitting thread while all its requests are
        # busy: submit at most as many batches as it holds, so the event loop never waits on it
        # (measured: the loop spent ~0.3 ms per request blocked in start_async without this).
        self._slots = asyncio.Semaphore(in_flight)
        self._waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self._flush_scheduled = False
        self._batches: set[asyncio.Future] = set()  # keeps running batches referenced
        self._queue = metrics.QUEUE.labels(name)
        self._batch_sizes = metrics.BATCH_SIZE.labels(name)
        self._request_images = metrics.REQUEST_IMAGES.labels(name)
        path = getattr(classifier, "model_path", "")
        folder = getattr(path, "parent", None)
        # An OVMS repository version folder (models/serving/digits/<N>/model.xml): N.
        version = folder.name if folder is not None and folder.name.isdigit() else "none"
        metrics.model_loaded(name, version, str(getattr(classifier, "backend", "")), str(path))
        self.ready = True

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT_NAME, "datatype": "UINT8",
                 "shape": [-1, *self.classifier.input_shape]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_NAME, "datatype": "FP32",
                 "shape": [-1, *self.classifier.output_shape]}]

    def images_from(self, request: InferRequest) -> np.ndarray:
        tensor = only_input(request, self.name, "UINT8")
        shape = list(tensor.shape)
        expected = list(self.classifier.input_shape)
        if len(shape) != 4 or shape[1:] != expected or shape[0] < 0:
            raise InvalidInput(f"input {INPUT_NAME!r} must have shape "
                               f"[N, {', '.join(map(str, expected))}], got {shape}")
        if shape[0] > self.max_batch:
            raise InvalidInput(f"batch of {shape[0]} images is over this server's limit of "
                               f"{self.max_batch} per request (--max-batch)")
        return tensor_array(tensor)

    async def predict(self, payload: InferRequest, headers: dict | None = None,
                      response_headers: dict | None = None) -> InferResponse:
        images = self.images_from(payload)
        self._request_images.observe(len(images))
        probabilities, _ = await self.infer(images)
        return _response(payload, self.name, OUTPUT_NAME, "FP32", probabilities)

    async def infer(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        """(probabilities (N, 10), milliseconds the runtime spent) without blocking the loop.

        Requests that arrive together are inferred together: every batch waiting when the loop
        gets round to it goes to the runtime as one (up to ``max_batch`` images), the way OVMS
        and Triton batch dynamically, but without waiting for more to come. At 32 clients of one
        image each this replaces dozens of runtime calls and thread hand-overs by a few.
        """
        if len(images) == 0:
            return np.zeros((0, *self.classifier.output_shape), np.float32), 0.0
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()
        self._waiting.append((images, answer))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, []
        group: list = []
        count = 0
        for item in waiting:
            if group and count + len(item[0]) > self.max_batch:
                self._batches.add(asyncio.ensure_future(self._run_group(group)))
                group, count = [], 0
            group.append(item)
            count += len(item[0])
        if group:
            self._batches.add(asyncio.ensure_future(self._run_group(group)))
        for task in list(self._batches):
            if task.done():
                self._batches.discard(task)

    async def _run_group(self, group: list) -> None:
        images = group[0][0] if len(group) == 1 else np.concatenate([g[0] for g in group])
        self._queue.inc(len(images))
        try:
            async with self._slots:
                self._batch_sizes.observe(len(images))
                probabilities, milliseconds = await self._submit(images)
        except Exception as error:  # every caller of this batch gets the error
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(error)
            return
        finally:
            self._queue.dec(len(images))
        start = 0
        for batch, answer in group:
            if not answer.done():  # the caller may have gone away
                answer.set_result((probabilities[start:start + len(batch)], milliseconds))
            start += len(batch)

    async def _submit(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def deliver(future: asyncio.Future, result: runtime.AsyncResult) -> None:
            if not future.done():
                future.set_result((result.probabilities, result.latency_ms))

        def fail(future: asyncio.Future, error: BaseException) -> None:
            if not future.done():
                future.set_exception(error)

        def on_result(result: runtime.AsyncResult) -> None:  # a runtime worker thread
            loop.call_soon_threadsafe(deliver, done, result)

        try:
            self.classifier.predict_async(images, on_result)
        except Exception as error:  # handed to the waiting requests
            fail(done, error)
        return await done


# --------------------------------------------------------------------------------------------
# The transformer


@dataclass
class ReaderJob:
    """One digit-reader request between preprocess, predict and postprocess."""

    request: InferRequest
    multi: bool
    preprocessed: bool
    compare: bool
    model: DigitsModel  # the predictor that reads this request (its task prepares the images)
    rows: list[classify.Row] = field(default_factory=list)
    prepared: list = field(default_factory=list)  # per row: tasks.Prepared, or None if unread
    probabilities: np.ndarray | None = None
    inference_ms: float = 0.0
    compared: dict = field(default_factory=dict)  # backend -> (probabilities, ms)
    all_probabilities: bool = False  # the page's bar chart: all ten, not only the top 3

    @property
    def mode(self) -> str:
        return MULTI if self.multi else SINGLE

    @property
    def task(self) -> Task:
        return self.model.classifier.reading_task


class DigitReaderModel(Model):
    """OIP v2 model: `images` BYTES [N] (encoded image files) -> `results` BYTES [N] (JSON rows).

    Request parameters: ``multi`` (every digit with its box), ``preprocessed`` (the input(s) the
    model saw, as PNG data URLs), ``probabilities`` (all ten per digit, not only the top 3),
    ``compare`` (also native TensorFlow; needs --compare).
    The predictor is the ``digits`` model: the local runtime, or with ``serve.py --server URL``
    a :class:`edgedigits.runtime.remote.RemoteClassifier` in front of OVMS, Triton or another
    server. Whatever kind of model a predictor holds, its task (:mod:`edgedigits.tasks`)
    prepares the images and reads the outputs. With a ``number_reader`` (the
    ``number-reader`` model), ``multi`` is read by it; ``compare`` keeps to the digit models.
    """

    def __init__(self, predictor: DigitsModel, tensorflow: DigitsModel | None = None, *,
                 number_reader: DigitsModel | None = None,
                 max_images: int = DEFAULT_MAX_IMAGES,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 heavy_threads: int = HEAVY_THREADS) -> None:
        super().__init__(READER_NAME)
        self.predictor = predictor
        self.tensorflow = tensorflow
        self.number_reader = number_reader
        self.max_images = max_images
        self.max_pixels = max_pixels
        self._readers = ImageReaders(heavy_threads, READER_NAME)  # heavy requests in turns
        self.ready = True

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": RESULTS_NAME, "datatype": "BYTES", "shape": [-1]}]

    def model_for(self, mode: str, compare: bool) -> DigitsModel:
        """The predictor whose task reads in ``mode`` (a comparison keeps to ``digits``)."""
        if mode == MULTI and self.number_reader is not None and not compare:
            return self.number_reader
        if not self.predictor.classifier.reading_task.supports(mode):
            raise InvalidInput(f"model {self.predictor.name!r} is a "
                               f"{self.predictor.classifier.reading_task.description}: it "
                               f"cannot read {'several digits' if mode == MULTI else 'one digit'}"
                               f" per image{'' if mode == MULTI else ' (use multi)'}")
        return self.predictor

    # -- 1. preprocess: encoded images -> the model's inputs (the task layer's preprocessing)

    async def preprocess(self, payload: InferRequest, headers: dict | None = None) -> ReaderJob:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("digit-reader speaks the Open Inference Protocol v2 only")
        tensor = only_input(payload, self.name, "BYTES")
        if len(tensor.shape) != 1 or tensor.shape[0] < 0:
            raise InvalidInput(f"input {INPUT_NAME!r} must have shape [N] (one element per "
                               f"encoded image), got {list(tensor.shape)}")
        if tensor.shape[0] > self.max_images:
            raise InvalidInput(f"{tensor.shape[0]} images is over this server's limit of "
                               f"{self.max_images} per request (--max-images)")
        metrics.REQUEST_IMAGES.labels(self.name).observe(tensor.shape[0])
        compare = bool_parameter(payload, "compare")
        if compare and self.tensorflow is None:
            raise InvalidInput("compare: TensorFlow is not loaded (start the server with "
                               "--compare)")
        multi = bool_parameter(payload, "multi")
        job = ReaderJob(payload, multi, bool_parameter(payload, "preprocessed"), compare,
                        self.model_for(MULTI if multi else SINGLE, compare))
        job.all_probabilities = bool_parameter(payload, "probabilities")
        encoded = [_image_bytes(element, i) for i, element in
                   enumerate(tensor_array(tensor).reshape(-1))]
        read = await self._readers.read_all(functools.partial(self._read, job=job), encoded)
        for i, (prepared, error) in enumerate(read):
            name = f"{INPUT_NAME}[{i}]"
            if error is not None and error != classify.NO_DIGIT:
                raise InvalidInput(f"{name}: {error}")
            job.rows.append(classify.Row(name, error=error))
            job.prepared.append(prepared)
        return job

    def _read(self, data: bytes, index: int, *, job: ReaderJob):
        return classify.prepare_bytes(data, f"{INPUT_NAME}[{index}]", job.task, job.mode,
                                      max_pixels=self.max_pixels)

    # -- 2. predict: the predictor (in process, or remote over OIP v2)

    async def predict(self, job: ReaderJob, headers: dict | None = None,
                      response_headers: dict | None = None) -> ReaderJob:
        present = [p.inputs for p in job.prepared if p is not None]
        images = (np.concatenate(present)[..., None] if present
                  else np.zeros((0, *job.model.classifier.input_shape), np.uint8))
        job.probabilities, job.inference_ms = await job.model.infer(images)
        if job.compare:
            job.compared["openvino"] = (job.probabilities, job.inference_ms)
            job.compared["tensorflow"] = await self.tensorflow.infer(images)
        return job

    # -- 3. postprocess: rows exactly like classify --json, plus what the page asked for

    async def postprocess(self, job: ReaderJob, headers: dict | None = None,
                          response_headers: dict | None = None) -> InferResponse:
        start = 0
        results = []
        for row, prepared in zip(job.rows, job.prepared, strict=True):
            count = 0 if prepared is None else len(prepared)
            reading = None
            if count:
                reading = job.task.read(prepared, job.probabilities[start:start + count])
                classify.fill_row(row, reading, job.mode)
            data = row.as_json(job.multi)
            data["inference_ms"] = round(job.inference_ms, 3)
            if job.preprocessed:
                shown = reading.inputs if reading is not None and reading.inputs is not None \
                    else []
                urls = [_png_data_url(image) for image in shown]
                data["preprocessed"] = urls if job.multi else (urls[0] if urls else None)
            if job.all_probabilities and job.task.one_digit_per_input:
                vectors = [[round(float(p), 4) for p in digit.probabilities]
                           for digit in (reading.digits if reading is not None else [])]
                data["probabilities"] = vectors if job.multi else (vectors[0] if vectors else None)
            if job.compare:
                data["compare"] = {
                    backend: _summary(job.task, prepared, p[start:start + count], ms, job.multi)
                    for backend, (p, ms) in job.compared.items()}
            results.append(json.dumps(data).encode())
            start += count
        return _response(job.request, self.name, RESULTS_NAME, "BYTES",
                         np.array(results, dtype=np.object_))


def _summary(task: Task, prepared, outputs: np.ndarray, milliseconds: float,
             multi: bool) -> dict:
    """One backend's reading for the compare view."""
    digits = task.read(prepared, outputs).digits if len(outputs) else []
    if not digits:
        return {"digit": None, "confidence": None, "inference_ms": round(milliseconds, 3)}
    summary = {"digit": digits[0].digit if not multi else None,
               "confidence": min(d.confidence for d in digits),
               "inference_ms": round(milliseconds, 3)}
    if multi:
        summary["digits"] = [d.digit for d in digits]
    return summary


def page_config_of(models: list[Model]) -> dict:
    """The names the page needs, from the served models (never repeated in its JavaScript)."""
    names = {model.name for model in models}
    return {"reader": READER_NAME, "input": INPUT_NAME, "output": RESULTS_NAME,
            "tensorflow": TENSORFLOW_NAME if TENSORFLOW_NAME in names else None,
            "number_reader": NUMBER_READER_NAME if NUMBER_READER_NAME in names else None}


def _image_bytes(element: object, index: int) -> bytes:
    """One BYTES element: raw file bytes (binary/gRPC), or base64 text / a data URL (JSON)."""
    if isinstance(element, bytes | bytearray | memoryview):
        return bytes(element)
    if isinstance(element, str):
        text = element.split(",", 1)[1] if element.startswith("data:") else element
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{INPUT_NAME}[{index}]: a JSON string must hold the image as "
                               "base64 (or send raw bytes with the binary tensor extension)"
                               ) from None
    raise InvalidInput(f"{INPUT_NAME}[{index}]: expected encoded image bytes")


def _png_data_url(digit: np.ndarray) -> str:
    _, png = cv2.imencode(".png", digit)
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
