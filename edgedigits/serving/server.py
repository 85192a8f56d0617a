"""Run the served models on KServe's ``ModelServer``: REST and gRPC on one host, the page at ``/``.

What this adds to ``kserve.ModelServer`` (0.21), and why:

- both listeners bind ``host`` (KServe binds every interface: 0.0.0.0 and [::]);
- bad requests are 4xx with a one-line ``{"error": ...}`` and one log line, no traceback:
  a body over ``max_body_bytes`` is refused from its Content-Length (or while it streams in)
  with 413, a body that is not the JSON OIP v2 request (or an unknown field layout) is a 400,
  a client that goes away mid-body is logged as such;
- connections are bounded (header size and count, slow and idle clients, pipelining, their
  number: :mod:`edgedigits.serving.connections`, for REST and gRPC);
- the page (``edgedigits.web``) is mounted on the same FastAPI app;
- SIGINT/SIGTERM/SIGHUP stop accepting, let in-flight requests finish (uvicorn's and gRPC's
  graceful shutdown, up to ``grace_seconds``), and ``serve`` returns normally (exit status 0),
  saying how many requests were cut if the grace period ran out;
- a ready line with the URLs, printed once both listeners accept connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

from edgedigits.errors import UserError
from edgedigits.serving.connections import ConnectionLimits, grpc_options, protocol_with
from edgedigits.serving.guard import BrowserGuard, send_error
from edgedigits.serving.rest import DEFAULT_MAX_JSON_BYTES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 8081
DEFAULT_MAX_BODY_BYTES = 32 << 20  # 64 camera frames, or a few full-size phone photos
GRACE_SECONDS = 10


@dataclass
class ServerOptions:
    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES  # JSON part: parsing it costs ~15x its size
    grpc_threads: int = 4
    verbose: bool = False
    allow_model_control: bool = False  # KServe's repository load/unload routes
    grace_seconds: int = GRACE_SECONDS  # for requests in flight when asked to stop
    reuse_port: bool = False  # one of serve.py --workers N: the ports are shared (SO_REUSEPORT)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # headers, timeouts


def check_ports_free(host: str, ports: list[int]) -> None:
    """UserError naming the port if another process already listens there."""
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error} "
                                "(choose another with --http-port / --grpc-port)") from None


def reusable_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes may bind too: the kernel
    spreads new connections over them (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(2048)
    return listener


def quiet_logs(verbose: bool) -> None:
    """KServe logs every request (and a traceback per bad one) at INFO: keep warnings only."""
    level = logging.INFO if verbose else logging.WARNING
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        logging.getLogger("uvicorn.access").disabled = True
    # Our one-line refusals: KServe's handlers and format (its logging set-up disabled loggers
    # created before it), warnings always, the rest with --verbose.
    ours = logging.getLogger("edgedigits.serving")
    ours.disabled = False
    ours.setLevel(level)
    ours.handlers = list(logging.getLogger("kserve").handlers)
    ours.propagate = not ours.handlers


# --------------------------------------------------------------------------------------------
# REST: limits, one-line errors, the page


class RequestGuard:
    """ASGI middleware: 413 for a body over ``limit`` bytes (from Content-Length, or counted as
    it streams in, so a chunked upload cannot get around it)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_error(send, 413, f"request body over this server's limit of "
                                         f"{self.limit} bytes (--max-body-mb)")
            return
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, f"request body over this server's limit of "
                                             f"{self.limit} bytes (--max-body-mb)")


class _TooLarge(Exception):
    pass


_send_error = send_error


def _install_handlers(app) -> None:
    """One-line JSON errors (KServe's own handlers log a traceback for every bad request)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import errors
    from starlette.requests import ClientDisconnect

    log = logging.getLogger("edgedigits.serving")

    def reply(status: int, text: str, request) -> JSONResponse:
        log.info("%s %s -> %d %s", request.method, request.url.path, status, text)
        return JSONResponse(status_code=status, content={"error": text})

    async def invalid(request, error):
        return reply(400, str(error), request)

    async def not_found(request, error):
        return reply(404, str(error), request)

    async def not_ready(request, error):
        return reply(503, str(error), request)

    async def validation(request, error: RequestValidationError):
        problems = error.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        what = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid" or "JSON" in what:
            text = "request body is not JSON (an OIP v2 inference request, or the binary " \
                   "tensor extension with an Inference-Header-Content-Length header)"
        else:
            text = f"not an OIP v2 inference request: {where + ': ' if where else ''}{what}"
        return reply(400, text, request)

    async def disconnected(request, error):
        log.info("%s %s: client went away before sending the whole body",
                 request.method, request.url.path)
        return JSONResponse(status_code=400, content={"error": "incomplete request body"})

    async def bad_body(request, error: Exception):
        # KServe reads the binary extension's JSON header with unchecked key lookups and
        # slicing: a malformed header surfaces as one of these, and it is the client's fault.
        return reply(400, f"malformed inference request ({type(error).__name__}: {error})",
                     request)

    app.add_exception_handler(errors.InvalidInput, invalid)
    app.add_exception_handler(errors.ModelNotFound, not_found)
    app.add_exception_handler(errors.ModelNotReady, not_ready)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(ClientDisconnect, disconnected)
    for kind in (KeyError, TypeError, ValueError, IndexError):
        app.add_exception_handler(kind, bad_body)


# --------------------------------------------------------------------------------------------
# The server


def untracked_startup_objects() -> None:
    """Move everything alive at start-up out of the cyclic garbage collector's sight.

    The libraries, models and routes loaded before the first request (~145,000 objects for
    the tutorial's server) live as long as the process; each full collection walked them all,
    ~50 ms with the event loop stopped, about twice a second under 32 clients: every request in
    flight waited for it, and the one-image p99 was ~6x the p50. Frozen (``gc.freeze``), a full
    collection walks only what was made since. Versions loaded live are not frozen (they are
    unloaded later), nor is anything else made after this call.
    """
    gc.collect()
    gc.freeze()


def serve(models: list, options: ServerOptions, *, on_ready: Callable[[float], None],
          started: float) -> int:
    """Run REST + gRPC until SIGINT/SIGTERM; returns 0 after a graceful stop."""
    from edgedigits.image import decode

    decode.keep_library_messages()  # the server's log lines never go to /dev/null mid-decode
    import kserve
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
    from kserve.protocol.rest.server import RESTServer
    from starlette.routing import Route

    from edgedigits.serving import metrics
    from edgedigits.serving.rest import make_infer_endpoint
    from edgedigits.serving.versions import (
        VersionedDataPlane,
        VersionedServicer,
        versioned_rest_routes,
    )

    recorder = metrics.Recorder({model.name for model in models})
    metrics.watch_garbage_collector()

    if not options.reuse_port:  # workers: serve.py's supervisor checked before starting them
        check_ports_free(options.host, [options.http_port, options.grpc_port])

    class OneLineErrors(ExceptionToStatusInterceptor):
        """gRPC: a bad request is INVALID_ARGUMENT / NOT_FOUND with one log line."""

        async def handle_exception(self, error, request_or_iterator, context, method_name):
            from grpc import StatusCode
            from kserve.errors import InvalidInput, ModelNotFound

            if isinstance(error, InvalidInput | ModelNotFound):
                logging.getLogger("edgedigits.serving").info("gRPC %s: %s", method_name, error)
                code = (StatusCode.NOT_FOUND if isinstance(error, ModelNotFound)
                        else StatusCode.INVALID_ARGUMENT)
                await context.abort(code, error.reason)
            await super().handle_exception(error, request_or_iterator, context, method_name)

    class PageRESTServer(RESTServer):
        async def start(self):
            if not options.reuse_port:
                return await super().start()
            self.create_application()  # then uvicorn on a socket its sibling workers share
            await self._server.serve(sockets=[reusable_socket(options.host, options.http_port)])

        def create_application(self):
            super().create_application()
            from uvicorn.importer import import_from_string

            from edgedigits.web import mount_page

            app = import_from_string(FASTAPI_APP_IMPORT_STRING)
            # Our OIP v2 REST inference route goes before KServe's (see edgedigits.serving.rest).
            endpoint = make_infer_endpoint(self.dataplane, options.max_json_bytes)
            for path in ("/v2/models/{model_name}/infer",
                         "/v2/models/{model_name}/versions/{model_version}/infer"):
                app.router.routes.insert(0, Route(path, endpoint, methods=["POST"]))
            app.router.routes[:0] = versioned_rest_routes(self.dataplane)
            _install_handlers(app)
            app.add_middleware(RequestGuard, limit=options.max_body_bytes)
            app.add_middleware(BrowserGuard, bind_host=options.host,
                               allow_model_control=options.allow_model_control)
            app.add_middleware(metrics.RestMetrics, recorder=recorder)  # outermost: sees all
            mount_page(app, page_config)

    class DigitServer(kserve.ModelServer):
        def start(self, models: list) -> None:
            # Model versions in metadata and ready (KServe 0.21 refuses every model_version).
            self.dataplane = VersionedDataPlane(model_registry=self.registered_models)
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = PageRESTServer(
                FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                self.http_port, grace_period=options.grace_seconds, event_loop="asyncio")
            self._rest_server.config.host = options.host
            # header size and count, slow and idle clients, pipelining, connections
            self._rest_server.config.http = protocol_with(options.limits)
            self._rest_server.config.timeout_keep_alive = options.limits.idle_timeout
            self._rest_server.config.access_log = options.verbose
            if os.environ.get("EDGEDIGITS_EVENT_LOOP", "uvloop") == "uvloop":
                import uvloop  # a kserve dependency: libuv's loop, faster HTTP and gRPC I/O

                uvloop.run(self._run())
            else:
                asyncio.run(self._run())

        async def _run(self) -> None:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(futures.ThreadPoolExecutor(max_workers=4,
                                                                 thread_name_prefix="decode"))
            from grpc import aio

            self._grpc = aio.server(
                futures.ThreadPoolExecutor(max_workers=options.grpc_threads),
                interceptors=(metrics.grpc_interceptor(recorder, options.allow_model_control),
                              OneLineErrors()),
                options=[("grpc.max_send_message_length", options.max_body_bytes),
                         ("grpc.max_receive_message_length", options.max_body_bytes),
                         ("grpc.so_reuseport", int(options.reuse_port)),
                         *grpc_options(options.limits)])
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                VersionedServicer(self.dataplane, self.model_repository_extension), self._grpc)
            host = f"[{options.host}]" if ":" in options.host else options.host
            self._grpc.add_insecure_port(f"{host}:{options.grpc_port}")
            await self._grpc.start()

            stopping = asyncio.Event()

            def on_signal(signum, frame):  # uvicorn re-raises the signals it caught, after it
                loop.call_soon_threadsafe(stopping.set)  # has drained REST: then stop gRPC

            def on_hangup(signum, frame):  # a closed terminal: stop as for SIGTERM (uvicorn
                self._rest_server._server.should_exit = True  # does not handle SIGHUP)
                loop.call_soon_threadsafe(stopping.set)

            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, on_signal)
            if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup: left ignored
                signal.signal(signal.SIGHUP, on_hangup)
            rest = asyncio.create_task(self._rest_server.start())
            watcher = asyncio.create_task(self._announce())
            await rest
            watcher.cancel()
            if not stopping.is_set():  # REST ended without a signal (e.g. it could not start)
                await self._grpc.stop(0)
                raise UserError("the REST server stopped unexpectedly")
            recorder.stopping = True
            await self._grpc.stop(options.grace_seconds)
            for model in self.registered_models.get_models().values():
                with contextlib.suppress(Exception):
                    model.stop()

        async def _announce(self) -> None:
            server = self._rest_server._server
            while not server.started:
                await asyncio.sleep(0.01)
            untracked_startup_objects()
            on_ready(time.perf_counter() - started)

    from edgedigits.serving.models import page_config_of

    page_config = page_config_of(models)
    kserve_server = DigitServer(http_port=options.http_port, grpc_port=options.grpc_port,
                                enable_latency_logging=options.verbose,
                                enable_docs_url=False, grace_period=options.grace_seconds)
    quiet_logs(options.verbose)
    kserve_server.start(models)
    if recorder.cut:
        print(f"stopped: {recorder.cut} request(s) in flight were cut after the "
              f"{options.grace_seconds} s grace period (--grace-period)", file=sys.stderr,
              flush=True)
    else:
        print("stopped: in-flight requests finished", file=sys.stderr, flush=True)
    return 0
