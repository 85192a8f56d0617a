"""The served models: a predictor (``digits``) and a transformer in front of it (``digit-reader``).

KServe's split, kept visible so either half can be replaced:

    client --BYTES (PNG/JPEG)--> digit-reader --UINT8 [N,28,28,1]--> digits --FP32 [N,10]--> ...
                                 (transformer: decode,                (predictor: the runtime;
                                  MNIST-format, segment,               with serve.py --server,
                                  rows like classify --json)           OVMS / Triton over OIP v2)

``DigitsModel`` (here) wraps any :class:`edgedigits.runtime.DigitClassifier` (OpenVINO for
``digits``, native TensorFlow for ``digits-tf``) and runs it through the classifier's
``predict_async`` (OpenVINO's ``AsyncInferQueue`` under the THROUGHPUT hint), awaited without
blocking the event loop. ``DigitReaderModel`` is in :mod:`.transformer`; a model repository's
versions are served by :mod:`.versions`. The tensors' names and the helpers both halves use
are here.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from edgedigits import runtime
from edgedigits.serving import metrics
from edgedigits.serving.rest import tensor_array

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


def infer_response(request: InferRequest, model: str, name: str, datatype: str,
                   data: np.ndarray, version: str | None = None) -> InferResponse:
    for requested in request.request_outputs or []:  # REST and gRPC alike
        if requested.name != name:
            raise InvalidInput(f"model {model!r} has no output {requested.name!r}; its output "
                               f"is {name!r}")
    output = InferOutput(name, list(data.shape), datatype)
    # gRPC answers in raw_output_contents (the only place tritonclient's gRPC client reads);
    # REST starts from JSON lists, and KServe re-encodes them if the client asked for binary.
    output.set_data_from_numpy(data, binary_data=bool(request.from_grpc))
    return InferResponse(response_id=request.id or "", model_name=model, infer_outputs=[output],
                         model_version=version,
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
        self.version = folder.name if folder is not None and folder.name.isdigit() else None
        self._loaded_labels = (name, self.version or "none",
                               str(getattr(classifier, "backend", "")), str(path))
        metrics.model_loaded(*self._loaded_labels)
        self.ready = True

    def current(self) -> DigitsModel:
        """The model that serves a request starting now (a VersionedModel's changes)."""
        return self

    @contextlib.contextmanager
    def lease(self, version: str | None = None):
        yield self

    def unregister_metrics(self) -> None:
        """Its edgedigits_model_loaded series goes (an unloaded version)."""
        metrics.model_unloaded(*self._loaded_labels)

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
        return infer_response(payload, self.name, OUTPUT_NAME, "FP32", probabilities, self.version)

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


def page_config_of(models: list[Model]) -> dict:
    """The names the page needs, from the served models (never repeated in its JavaScript)."""
    names = {model.name for model in models}
    return {"reader": READER_NAME, "input": INPUT_NAME, "output": RESULTS_NAME,
            "tensorflow": TENSORFLOW_NAME if TENSORFLOW_NAME in names else None,
            "number_reader": NUMBER_READER_NAME if NUMBER_READER_NAME in names else None}
