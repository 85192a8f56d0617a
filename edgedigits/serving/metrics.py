"""Prometheus metrics an operator watches, added to KServe's ``/metrics`` (same registry, same
library: prometheus_client).

    edgedigits_requests_total{model, protocol, status}         inference requests answered
    edgedigits_request_errors_total{model, protocol, status}   those that were not a success
    edgedigits_request_duration_seconds{model, protocol}       latency histogram, per model
    edgedigits_request_images{model}                           images per request (histogram)
    edgedigits_inference_batch_size{model}                     images per runtime call, after
                                                               concurrent requests are batched
    edgedigits_inference_queue_images{model}                   images waiting or in inference
    edgedigits_model_loaded{model, version, backend, path}     1 per model version loaded
    edgedigits_gc_pause_seconds{generation}                    Python garbage-collector pauses
                                                               (histogram; the event loop stops)
    edgedigits_gc_frozen_objects                               start-up objects kept out of them

``protocol`` is ``rest`` or ``grpc``; ``status`` is the HTTP status code for REST
(``status="200"``) and the gRPC status name for gRPC (``status="OK"``,
``"INVALID_ARGUMENT"``, ...). ``model`` is a served model's name, or ``other`` for a name
the server does not serve (so a client cannot grow the label set without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time

from prometheus_client import Counter, Gauge, Histogram

REST, GRPC = "rest", "grpc"
OTHER = "other"

REQUESTS = Counter("edgedigits_requests", "Inference requests answered",
                   ("model", "protocol", "status"))
ERRORS = Counter("edgedigits_request_errors", "Inference requests answered with an error",
                 ("model", "protocol", "status"))
LATENCY = Histogram("edgedigits_request_duration_seconds",
                    "Inference request latency, from the request to the last byte of the answer",
                    ("model", "protocol"),
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                             5.0, 10.0))
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REQUEST_IMAGES = Histogram("edgedigits_request_images", "Images per inference request",
                           ("model",), buckets=_SIZES)
BATCH_SIZE = Histogram("edgedigits_inference_batch_size",
                       "Images per runtime call (concurrent requests inferred together)",
                       ("model",), buckets=_SIZES)
QUEUE = Gauge("edgedigits_inference_queue_images",
              "Images waiting for or in inference", ("model",))
LOADED = Gauge("edgedigits_model_loaded", "1 for each model version the server has loaded",
               ("model", "version", "backend", "path"))

GC_PAUSE = Histogram("edgedigits_gc_pause_seconds",
                     "Python garbage-collector pauses (nothing else runs in the process meanwhile)",
                     ("generation",),
                     buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
FROZEN = Gauge("edgedigits_gc_frozen_objects",
               "Objects alive at start-up, frozen out of the garbage collector's full passes")
FROZEN.set_function(gc.get_freeze_count)

STOPPED_BODY = (b'{"error": "the server stopped before this request was answered: its grace '
                b'period (--grace-period) ran out; send it again"}')

INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")


class Recorder:
    """Counts requests for the served ``models`` (any other name is ``other``)."""

    def __init__(self, models: set[str]) -> None:
        self.models = set(models)
        self.stopping = False  # set when the server stops gRPC (REST has stopped by then)
        self.cut = 0  # requests cancelled by a stop whose grace period ran out

    def label(self, model: str) -> str:
        return model if model in self.models else OTHER

    def record(self, model: str, protocol: str, status: str, seconds: float,
               success: bool) -> None:
        model = self.label(model)
        REQUESTS.labels(model, protocol, status).inc()
        if not success:
            ERRORS.labels(model, protocol, status).inc()
        LATENCY.labels(model, protocol).observe(seconds)


def watch_garbage_collector() -> None:
    """Time every collection into ``edgedigits_gc_pause_seconds`` (once per process)."""
    pauses = [GC_PAUSE.labels(str(generation)) for generation in range(3)]
    began = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses[info["generation"]].observe(time.perf_counter() - began[0])

    if not _WATCHING:
        _WATCHING.append(timed)
        gc.callbacks.append(timed)


_WATCHING: list = []


def model_loaded(model: str, version: str, backend: str, path: str) -> None:
    LOADED.labels(model, version, backend, path).set(1)


def model_unloaded(model: str, version: str, backend: str, path: str) -> None:
    with contextlib.suppress(KeyError):
        LOADED.remove(model, version, backend, path)


class RestMetrics:
    """ASGI middleware: every REST inference request, whatever answered it (the route, the
    size guard or the browser guard), by model and status."""

    def __init__(self, app, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope, receive, send) -> None:
        match = INFER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, answered = 500, False

        async def watching(message):
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watching)
        except asyncio.CancelledError:  # uvicorn cancels requests only when its grace runs out
            self.recorder.cut += 1
            if answered:
                raise
            # Say so (503: try again elsewhere) rather than uvicorn's traceback and bare 500.
            status = 503
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": STOPPED_BODY})
        finally:
            self.recorder.record(match.group(1), REST, str(status),
                                 time.perf_counter() - started, 200 <= status < 300)


def grpc_interceptor(recorder: Recorder, allow_model_control: bool):
    """A grpc.aio interceptor: ModelInfer counted by model and status; repository load/unload
    refused (PERMISSION_DENIED) unless model control is allowed."""
    import grpc
    from grpc import aio

    control = ("/RepositoryModelLoad", "/RepositoryModelUnload")

    class Interceptor(aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            method = details.method or ""
            if handler is None or handler.unary_unary is None:
                return handler
            inner = handler.unary_unary
            if method.endswith(control) and not allow_model_control:
                async def refuse(request, context):
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                        "model control is off: repository load/unload need "
                                        "serve.py --allow-model-control")
                behavior = refuse
            elif method.endswith("/ModelInfer"):
                async def behavior(request, context):
                    started = time.perf_counter()
                    failed = True
                    try:
                        answer = await inner(request, context)
                        failed = False
                        return answer
                    except asyncio.CancelledError:  # a client's cancel, or a stop's grace over
                        if recorder.stopping:
                            recorder.cut += 1
                        raise
                    finally:
                        code = context.code() if hasattr(context, "code") else None
                        status = (code.name if isinstance(code, grpc.StatusCode)
                                  else "UNKNOWN" if failed else "OK")
                        recorder.record(getattr(request, "model_name", ""), GRPC, status,
                                        time.perf_counter() - started, status == "OK")
            else:
                return handler
            return grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)

    return Interceptor()
