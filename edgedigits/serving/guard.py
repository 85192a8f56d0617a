"""What the REST server refuses before a request reaches KServe, and the headers it adds.

:class:`BrowserGuard` (ASGI middleware), in this order:

- **Host** (DNS rebinding): a server bound to a loopback address answers only requests whose
  ``Host`` is a loopback name or address (``localhost``, ``127.x.x.x``, ``[::1]``); any other
  is a 421. A web page whose name was re-pointed at 127.0.0.1 sends its own name as Host.
- **Cross-origin browser requests**: a request that changes something or runs inference
  (any method but GET/HEAD/OPTIONS) with an ``Origin`` that is not this server's own
  (``http://<Host>``), or with ``Sec-Fetch-Site: cross-site``, is a 403. The page (same origin)
  and clients that are not browsers (no Origin: curl, tritonclient, classify.py) are served.
- **Model control**: KServe's ``/v2/repository/models/<m>/load|unload`` are a 403 unless the
  server runs with ``--allow-model-control``.
- **KServe's v1 protocol** (``POST /v1/models/<m>:predict|:explain``): a 404 with one log line
  (the models speak OIP v2 only; KServe answered a 500 and two tracebacks).
- **Security headers** on every answer: a Content-Security-Policy allowing this origin only (plus
  the ``data:``/``blob:`` images the page draws), ``X-Content-Type-Options: nosniff`` and
  ``X-Frame-Options: DENY``.

Each refusal is ``{"error": "<one line>"}`` and one log line (INFO: shown with --verbose;
the v1 route's at WARNING, always shown).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re

log = logging.getLogger("edgedigits.serving")

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; "
                           "media-src 'self' blob: mediastream:; object-src 'none'; "
                           "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY")]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
V1_ROUTE = re.compile(r"^/v1/models/[^/]+:(predict|explain)$")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name, no port) is this machine's loopback."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8080`` -> ``::1``)."""
    host_header = host_header.strip()
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


async def send_error(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BrowserGuard:
    """ASGI middleware: Host, Origin / Sec-Fetch-Site, model control, v1 routes, headers."""

    def __init__(self, app, *, bind_host: str, allow_model_control: bool = False) -> None:
        self.app = app
        self.loopback = is_loopback(bind_host)
        self.allow_model_control = allow_model_control

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {}
        for key, value in scope.get("headers") or []:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        method, path = scope.get("method", "GET"), scope.get("path", "")
        host = headers.get("host")
        if self.loopback and host is not None and not is_loopback(host_name(host)):
            return 421, (f"Host {host!r} is not this machine: a server on a loopback address "
                         "answers only to localhost, 127.0.0.1 or [::1] (DNS rebinding guard)")
        if method not in SAFE_METHODS:
            origin = headers.get("origin")
            own = {f"{scheme}://{host}" for scheme in ("http", "https")} if host else set()
            if origin is not None and origin not in own:
                return 403, (f"cross-origin request refused: Origin {origin!r} is not this "
                             "server's page (requests from other web pages cannot run "
                             "inference or change the server)")
            if headers.get("sec-fetch-site", "").lower() == "cross-site":
                return 403, ("cross-site request refused (Sec-Fetch-Site: cross-site): "
                             "requests from other web pages cannot run inference or change "
                             "the server")
        if path.startswith("/v2/repository/") and not self.allow_model_control:
            return 403, ("model control is off: the repository load/unload routes need "
                         "serve.py --allow-model-control")
        if V1_ROUTE.match(path):
            return 404, ("KServe's v1 protocol is not served here: use the Open Inference "
                         "Protocol v2, POST /v2/models/<model>/infer")
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            status, message = refused
            # A client speaking KServe's v1 protocol is misconfigured: say so without --verbose.
            level = logging.WARNING if status == 404 else logging.INFO
            log.log(level, "%s %s -> %d %s", scope.get("method"), scope.get("path"), status,
                    message)
            await send_error(send, status, message, SECURITY_HEADERS)
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {key.lower() for key, _ in message.get("headers") or []}
                message = {**message, "headers": [*(message.get("headers") or []),
                                                  *(h for h in SECURITY_HEADERS
                                                    if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, with_headers)
