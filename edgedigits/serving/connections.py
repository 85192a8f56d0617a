"""HTTP/1.1 connections bounded in memory and time: what uvicorn (0.54) does not limit by itself.

uvicorn's httptools protocol keeps every header byte a client sends (one 64 MiB header is held
whole), parses every pipelined request in a read into a queued request (a client that never
reads its answers makes the queue grow), never closes a connection that has not sent a request
yet (its keep-alive timeout starts only after a first answer, and stops at the next byte, so a
client sending one byte per second holds the connection for ever) and accepts as many
connections as the process has file descriptors. :class:`LimitedHttpProtocol` is that protocol
with these limits (``uvicorn.Config(http=...)`` takes the class):

- **request head** (request line and headers) over ``max_header_bytes``, or more than
  ``max_headers`` headers: 431 and the connection is closed; nothing past the limit is kept;
- a request head not complete ``header_timeout`` seconds after it started (or after the
  connection opened): 408 and closed, however slowly its bytes keep coming (slowloris);
- a request body from which nothing arrives for ``header_timeout`` seconds: closed (the request
  sees a client disconnect);
- a request body that keeps trickling: closed once it averages under ``min_body_rate`` bytes a
  second, counted after its first ``header_timeout`` seconds;
- idle between requests: uvicorn's keep-alive timeout (``Config.timeout_keep_alive``);
- more than ``max_pipelined`` requests queued behind the one being answered: the queued ones are
  answered, the connection is closed after them and the rest of what it sent is not parsed;
- more than ``max_connections`` open connections: a new one gets 503 and is closed at once.

Each refusal is ``{"error": "<one line>"}`` with ``Connection: close`` and one log line
(INFO: shown with --verbose). gRPC has the same limits as channel options
(:func:`grpc_options`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from edgedigits.serving.guard import SECURITY_HEADERS

log = logging.getLogger("edgedigits.serving")

DEFAULT_MAX_HEADER_BYTES = 64 << 10  # request line + headers; nginx's default allows 32 KiB
DEFAULT_MAX_HEADERS = 100  # as Python's http.client and h11
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds for a whole request head, or between body bytes
DEFAULT_IDLE_TIMEOUT = 5  # seconds a kept-alive connection may wait for its next request
DEFAULT_MAX_PIPELINED = 8  # requests queued behind the one being answered, per connection
DEFAULT_MAX_CONNECTIONS = 512  # open REST connections (and gRPC ones), at ulimit -n 1024
DEFAULT_MAX_GRPC_STREAMS = 100  # concurrent calls on one gRPC connection
# A request body must keep coming at this many bytes a second on average, after a first
# header_timeout of grace (as Apache's mod_reqtimeout "body=...,MinRate=500"): a body
# trickled a byte every few seconds would otherwise hold its connection for as long as the
# body size limit allows (32 MiB at one byte every 9 s: ~9 years).
DEFAULT_MIN_BODY_RATE = 500


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_pipelined: int = DEFAULT_MAX_PIPELINED
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_grpc_streams: int = DEFAULT_MAX_GRPC_STREAMS
    min_body_rate: int = DEFAULT_MIN_BODY_RATE


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def protocol_with(limits: ConnectionLimits) -> type:
    """The protocol class to give ``uvicorn.Config(http=...)``, bound to ``limits``."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})


def grpc_options(limits: ConnectionLimits) -> list[tuple[str, int]]:
    """gRPC core's own limits for the same cases (its headers are HPACK-bounded already:
    ``grpc.max_metadata_size``, 8 KiB by default)."""
    return [("grpc.max_allowed_incoming_connections", limits.max_connections),
            ("grpc.max_concurrent_streams", limits.max_grpc_streams),
            ("grpc.server_handshake_timeout_ms", int(limits.header_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(limits.idle_timeout * 1000))]


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the module's limits (``limits``: set by
    :func:`protocol_with`)."""

    limits = ConnectionLimits()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._ignoring = False  # refused: nothing more is parsed from this connection
        self._head_timer = None
        self._body_timer = None
        self._body_started = 0.0  # loop time the current body began, and its bytes since
        self._body_bytes = 0
        self._body_paused = False  # we stopped reading it at some point: its rate is ours

    # -- connections

    def connection_made(self, transport) -> None:
        if len(self.server_state.connections) >= self.limits.max_connections:
            self.transport = transport
            self._ignoring = True
            self._answer_and_close(503, f"too many connections (this server's limit is "
                                        f"{self.limits.max_connections}, --max-connections)")
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    # -- reading: the head counted and timed, pipelining bounded

    def data_received(self, data: bytes) -> None:
        if self._ignoring:
            return
        if self._reading_head:
            self._arm_head_timer()  # a kept-alive connection's next request starts
        while data:
            if self._reading_head:
                room = self.limits.max_header_bytes - self._head_bytes
                if room <= 0:
                    self._refuse(431, f"request head over {self.limits.max_header_bytes} bytes "
                                      "(request line and headers; --max-header-kb)")
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            self._feed(piece)
            if self._ignoring or self.transport.is_closing():
                return
        self._watch_body()

    def _feed(self, piece: bytes) -> None:
        """uvicorn's ``data_received``, with our refusals raised from the parser's callbacks."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            refused = error.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, str(refused))
            else:
                log.info("%s -> 400 invalid HTTP request", _peer(self))
                self.send_400_response("Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(431, f"more than {self.limits.max_headers} request headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._body_started, self._body_bytes, self._body_paused = self.loop.time(), 0, False
        self._cancel_head_timer()
        if self._ignoring:
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy and len(self.pipeline) >= self.limits.max_pipelined:
            # Answer what is queued, then close: the rest of this connection's bytes are never
            # parsed, so a client that sends requests without reading answers holds nothing.
            self._ignoring = True
            self.flow.pause_reading()
            newest = self.pipeline[0][0] if self.pipeline else self.cycle
            newest.keep_alive = False
            log.info("%s: more than %d pipelined requests: closing after the queued ones",
                     _peer(self), self.limits.max_pipelined)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._ignoring:
            return
        self._body_bytes += len(body)
        super().on_body(body)
        self._body_paused |= self.flow.read_paused
        elapsed = self.loop.time() - self._body_started
        allowed = self.limits.header_timeout + self._body_bytes / self.limits.min_body_rate
        if elapsed > allowed and not self._body_paused:
            raise _Refused(408, f"request body arriving slower than {self.limits.min_body_rate} "
                                f"bytes/s ({self._body_bytes} bytes in {elapsed:.0f} s)")

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        self._cancel_body_timer()
        if not self._ignoring:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._ignoring and not self.pipeline and not self.transport.is_closing():
            self.transport.close()

    # -- timers

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                    self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self._head_bytes == 0 and not (self.cycle and not self.cycle.response_complete):
            # nothing of a request yet: a connection opened and left silent
            self._ignoring = True
            self.transport.close()
            log.info("%s: no request within %g s: closed", _peer(self),
                     self.limits.header_timeout)
            return
        self._refuse(408, f"request head not received within {self.limits.header_timeout:g} "
                          "seconds (--header-timeout)")

    def _watch_body(self) -> None:
        """Between body bytes: no data for header_timeout seconds closes the connection."""
        self._cancel_body_timer()
        cycle = self.cycle
        if (not self._reading_head and cycle is not None and cycle.more_body
                and not cycle.response_complete):
            self._body_timer = self.loop.call_later(self.limits.header_timeout,
                                                    self._body_too_slow)

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (the app is slow): not the client's fault
            self._watch_body()
            return
        log.info("%s: no request body bytes for %g s: closed", _peer(self),
                 self.limits.header_timeout)
        self._ignoring = True
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()

    # -- refusing

    def _refuse(self, status: int, message: str) -> None:
        self._ignoring = True
        self._cancel_timers()
        if self.cycle is not None and not self.cycle.response_complete:
            # a request is being answered (or its body read by the app): an answer cannot be
            # interleaved with it, so the connection is closed (the app sees a disconnect)
            log.info("%s -> closed: %s", _peer(self), message)
            self.transport.close()
            return
        log.info("%s -> %d %s", _peer(self), status, message)
        self._answer_and_close(status, message)

    def _answer_and_close(self, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in SECURITY_HEADERS]
        self.transport.write(b"".join(head) + b"\r\n" + body)
        self.transport.close()


def _peer(protocol) -> str:
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "a client"
