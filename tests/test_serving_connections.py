"""infer/serve.py's connections (edgedigits/serving/connections.py, issue 20 rows 2 and 3): huge or
numerous headers, pipelined requests never read, silent, slow and idle clients, too many
connections; the gRPC port's handshake timeout.

A real server on free loopback ports with short timeouts; raw sockets play the client. After
each abuse a normal request is answered.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest
from test_serving import Server, _valid_json_request
from test_serving_hardening import _wait_until_idle

from edgedigits import contract

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 12
CLOSED_WITHIN = 15.0  # seconds: the timeouts above, with room for a loaded 2-core machine


@pytest.fixture(scope="module")
def server(ir_models_dir):
    running = Server("--model", str(ir_models_dir / contract.IR_DIR / "fp32" / contract.IR_FILE),
                     "--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout",
                     str(IDLE_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
                     "--max-header-kb", "16")
    _wait_until_idle(running)  # other batch sizes compiled: peak memory is the server's own
    yield running
    assert running.stop() == 0
    assert "Traceback" not in "".join(running.stderr), running.stderr


def _still_serving(server, mnist) -> None:
    status, answer = server.request("POST", "/v2/models/digits/infer", _valid_json_request(mnist))
    assert status == 200 and len(answer["outputs"][0]["data"]) == 10, answer
    assert server.process.poll() is None


def _connect(server, port: int | None = None) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port or server.http_port), timeout=30)


def _read_until_closed(raw: socket.socket, limit: float = CLOSED_WITHIN) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    raw.settimeout(limit)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := raw.recv(1 << 16):
            received += chunk
    return received, time.monotonic() - started


def _send_quietly(raw: socket.socket, data: bytes) -> None:
    """Send what the server may refuse halfway (it closes, the send then fails)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        raw.sendall(data)


def _peak_rss_mb(server) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


HEAD = b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n"


# --------------------------------------------------------------------------------------------
# Headers: size and count


def test_a_huge_header_is_431_and_never_held(server, mnist):
    peak = _peak_rss_mb(server)
    sockets = [_connect(server) for _ in range(4)]
    for raw in sockets:  # four at once, 16 MiB each (uvicorn alone keeps every byte)
        raw.sendall(HEAD + b"X-Big: ")
    filler = b"a" * (1 << 20)
    for _ in range(16):
        for raw in sockets:
            _send_quietly(raw, filler)
    for raw in sockets:
        answer, _ = _read_until_closed(raw)
        raw.close()
        assert _status(answer) == 431, answer[:200]
        assert b"request head over 16384 bytes" in answer
    assert _peak_rss_mb(server) - peak < 32, (peak, _peak_rss_mb(server))
    _still_serving(server, mnist)


def test_too_many_headers_is_431(server, mnist):
    with _connect(server) as raw:
        raw.sendall(HEAD + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n")
        answer, _ = _read_until_closed(raw)
    assert _status(answer) == 431 and b"more than 100 request headers" in answer, answer[:300]
    with _connect(server) as raw:  # 100 are fine
        raw.sendall(HEAD + b"".join(b"X-%d: 1\r\n" % i for i in range(98)) +
                    b"Connection: close\r\n\r\n")
        answer, _ = _read_until_closed(raw)
    assert _status(answer) == 200, answer[:300]
    _still_serving(server, mnist)


# --------------------------------------------------------------------------------------------
# Pipelined requests that are never read


def test_pipelined_requests_are_bounded_per_connection(server, mnist):
    peak = _peak_rss_mb(server)
    sockets = [_connect(server) for _ in range(4)]
    burst = HEAD.replace(b"\r\nHost", b"\r\nX-Pad: " + b"p" * 200 + b"\r\nHost") + b"\r\n"
    for raw in sockets:  # 4 x 4 MiB of requests, none of their answers read yet
        for _ in range(16):
            _send_quietly(raw, burst * ((1 << 18) // len(burst)))
    time.sleep(1)
    grown = _peak_rss_mb(server) - peak
    for raw in sockets:
        answer, _ = _read_until_closed(raw)
        raw.close()
        # the one being answered and 8 queued behind it; then the connection is closed
        assert 1 <= answer.count(b"HTTP/1.1 200") <= 9, answer.count(b"HTTP/1.1 200")
    assert grown < 32, grown
    _still_serving(server, mnist)


# --------------------------------------------------------------------------------------------
# Silent, slow and idle clients


def test_a_silent_connection_is_closed(server, mnist):
    with _connect(server) as raw:
        answer, took = _read_until_closed(raw)
    assert answer == b"" and took < CLOSED_WITHIN, (answer, took)
    _still_serving(server, mnist)


def test_a_slowloris_head_is_408_and_closed(server, mnist):
    """One header byte every 0.25 s: each byte would restart an idle timer, not the head's."""
    trickle = b"X-Slow: 1\r\n"
    with _connect(server) as raw:
        raw.sendall(HEAD)
        raw.settimeout(0.25)
        started = time.monotonic()
        received = b""
        sent = 0
        while time.monotonic() - started < CLOSED_WITHIN:
            try:
                raw.sendall(trickle[sent % len(trickle):][:1])
                sent += 1
                chunk = raw.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            received += chunk
            if not chunk:
                break
        took = time.monotonic() - started
    assert _status(received) == 408 and b"--header-timeout" in received, received[:300]
    assert took < CLOSED_WITHIN
    _still_serving(server, mnist)


def test_a_body_that_stops_coming_is_closed(server, mnist):
    with _connect(server) as raw:
        raw.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 10000\r\n\r\n" + b'{"inputs": [')
        _, took = _read_until_closed(raw)
    assert took < CLOSED_WITHIN, took
    _still_serving(server, mnist)


def test_a_body_trickled_below_the_minimum_rate_is_closed(server, mnist):
    # a byte every 0.3 s: never silent for --header-timeout, but ~3 bytes/s (minimum 500 after
    # the first --header-timeout seconds): before, it held the connection as long as it liked
    import select

    with _connect(server) as raw:
        raw.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 100000\r\n\r\n")
        started, closed = time.monotonic(), False
        while not closed and time.monotonic() - started < CLOSED_WITHIN:
            try:
                raw.sendall(b" ")
            except OSError:  # reset by the server
                closed = True
                break
            readable, _, _ = select.select([raw], [], [], 0.3)
            if readable:
                try:
                    closed = raw.recv(1 << 16) == b""
                except OSError:
                    closed = True
    assert closed, "the trickled body kept its connection"
    assert time.monotonic() - started >= HEADER_TIMEOUT  # the grace before the rate counts
    _still_serving(server, mnist)


def test_an_idle_kept_alive_connection_is_closed(server, mnist):
    with _connect(server) as raw:
        raw.sendall(HEAD + b"\r\n")
        answer, took = _read_until_closed(raw)
    assert _status(answer) == 200
    assert took < CLOSED_WITHIN, took  # KServe's default: 65 s
    _still_serving(server, mnist)


# --------------------------------------------------------------------------------------------
# Connections


def test_connections_over_the_limit_get_503(server, mnist):
    held = [_connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # accepted by the server
        with _connect(server) as extra:
            answer, _ = _read_until_closed(extra)
        assert _status(answer) == 503 and b"--max-connections" in answer, answer[:300]
    finally:
        for raw in held:
            raw.close()
    time.sleep(0.3)
    _still_serving(server, mnist)


def test_a_silent_grpc_connection_is_closed(server, mnist):
    with _connect(server, server.grpc_port) as raw:
        _, took = _read_until_closed(raw)
    assert took < CLOSED_WITHIN, took
    _still_serving(server, mnist)


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = bytes.fromhex("000000" "04" "00" "00000000")  # length 0, SETTINGS, stream 0


def _http2_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each whole HTTP/2 frame in ``data``."""
    frames = []
    while len(data) >= 9:
        length, kind = int.from_bytes(data[:3], "big"), data[3]
        frames.append((kind, data[9:9 + length]))
        data = data[9 + length:]
    return frames


def test_an_idle_grpc_connection_is_closed_and_streams_are_bounded(server, mnist):
    from edgedigits.serving.connections import ConnectionLimits

    with _connect(server, server.grpc_port) as raw:  # a client that speaks HTTP/2, then idles
        raw.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
        received, took = _read_until_closed(raw)
    assert took < CLOSED_WITHIN, took
    frames = _http2_frames(received)
    kind, payload = frames[0]  # the server's SETTINGS: MAX_CONCURRENT_STREAMS (id 3) is ours
    assert kind == 0x04, frames
    settings = {int.from_bytes(payload[i:i + 2], "big"): int.from_bytes(payload[i + 2:i + 6], "big")
                for i in range(0, len(payload), 6)}
    assert settings.get(3) == ConnectionLimits().max_grpc_streams, settings
    assert any(kind == 0x07 for kind, _ in frames), frames  # GOAWAY: closed for idling
    _still_serving(server, mnist)
