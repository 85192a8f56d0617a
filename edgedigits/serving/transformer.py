"""The transformer ``digit-reader`` in front of the predictor ``digits`` (:mod:`.models`).

``DigitReaderModel`` reads images with the same functions ``classify.py`` uses
(:mod:`edgedigits.reading.classify`) and fills rows with the same code, so a reading through
the server is the row ``classify.py --json`` prints for that file (``path`` is ``images[i]``).
Its predictor is ``digits`` in this process (a :class:`.models.DigitsModel`, or the
:class:`.versions.VersionedModel` of a model repository, whose version current when a request
starts reads all of it), or with ``serve.py --server URL`` a remote OIP v2 server.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import json
from dataclasses import dataclass, field

import cv2
import numpy as np
from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb

from edgedigits.reading import classify
from edgedigits.serving import metrics
from edgedigits.serving.image_readers import HEAVY_THREADS, ImageReaders
from edgedigits.serving.models import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_IMAGES,
    INPUT_NAME,
    READER_NAME,
    RESULTS_NAME,
    DigitsModel,
    bool_parameter,
    infer_response,
    only_input,
)
from edgedigits.serving.rest import tensor_array
from edgedigits.tasks import MULTI, SINGLE, Task

# The predictor version a digit-reader request reads with, chosen when the request starts.
_PINNED: contextvars.ContextVar[DigitsModel] = contextvars.ContextVar("pinned_predictor")


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

    async def __call__(self, body, headers: dict | None = None,
                       verb: InferenceVerb = InferenceVerb.PREDICT):
        # The predictor's current version reads the whole request (prepare, infer, read) and
        # stays loaded until it is answered, even if a new version is switched in meanwhile.
        with self.predictor.lease() as predictor:
            token = _PINNED.set(predictor)
            try:
                return await super().__call__(body, headers, verb)
            finally:
                _PINNED.reset(token)

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": RESULTS_NAME, "datatype": "BYTES", "shape": [-1]}]

    def model_for(self, mode: str, compare: bool) -> DigitsModel:
        """The predictor whose task reads in ``mode`` (a comparison keeps to ``digits``)."""
        if mode == MULTI and self.number_reader is not None and not compare:
            return self.number_reader
        predictor = _PINNED.get(None) or self.predictor.current()
        if not predictor.classifier.reading_task.supports(mode):
            raise InvalidInput(f"model {predictor.name!r} is a "
                               f"{predictor.classifier.reading_task.description}: it "
                               f"cannot read {'several digits' if mode == MULTI else 'one digit'}"
                               f" per image{'' if mode == MULTI else ' (use multi)'}")
        return predictor

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
        return infer_response(job.request, self.name, RESULTS_NAME, "BYTES",
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
