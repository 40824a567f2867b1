"""`podtui serve ENDPOINT`: a local OpenAI-compatible URL for a Runpod Serverless endpoint.

Chat clients and browser UIs point at `http://127.0.0.1:PORT/v1` and never hold the Runpod key:
each `/v1/*` request is forwarded to the endpoint's `/openai/v1/*` (SERVERLESS.md §3.2) with the
key added and whatever Authorization the client sent removed. Streamed answers are relayed chunk
by chunk as they arrive (httpx `iter_raw`, one write per chunk, Nagle off), never buffered.

Who may use the port: like the engines behind `podtui tunnel` (README, "The engine's API key"),
a loopback port is reachable by every web page open in the user's browser, and this one spends
the user's money. So clients must send a LOCAL key (`Authorization: Bearer <local key>`, kept in
podtui's state dir, shown beside the base URL; not the Runpod key), unless the user opts out with
--no-api-key; then CORS stays closed and requests carrying a foreign `Origin` are refused. A Host
header that is not a loopback name is always refused (DNS rebinding). Only loopback addresses
may be bound: the command refuses any other.

Why the standard library's ThreadingHTTPServer and httpx: a thread per client connection is
plenty for the few chat clients one person runs; the blocking httpx.Client is thread-safe and
keeps the TLS connections to api.runpod.ai alive across requests; no new dependency.

The endpoint's state is read from `/health` (podtui.services.endpoint_runtime.classify) and
changes are reported; the wake job is sent at start (§3.6); keep-alive (KeepWarm) sends the
same no-op job every `idleTimeout − margin` while requests flow, and stops after an idle limit.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from podtui.errors import UsageProblem
from podtui.providers.runpod_api import RunpodUnavailable
from podtui.providers.runpod_runtime import RuntimeClient, RuntimeUnreachable

EventSink = Callable[[str, dict], None]
MAX_BODY = 10 * 1024 * 1024            # §3.2: /run takes at most 10 MB; the OpenAI route is not larger
# Sent again, for any method: 429 (§3.2 rate limits) and 503 ("no workers available") refuse before a job
# exists. 502 and 504 mean a gateway gave up waiting, when the job may still be queued and will run:
# sent again only for GET (/v1/models, answered without generating), never for a billed generation.
RETRY_ANY = frozenset({429, 503})
RETRY_GET = frozenset({502, 504})
READ_TIMEOUT_S = 900.0                 # a cold start may take 7 min before the worker is unhealthy (§1.7)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
DROP_REQUEST = HOP_BY_HOP | {"authorization", "cookie", "origin", "referer", "accept-encoding"}
DROP_RESPONSE = HOP_BY_HOP | {"set-cookie", "server", "date"}
LOCAL_KEY_FILE = "serve-api-key"


def check_loopback(host: str) -> str:
    """`host` when it is a loopback name or address (127.0.0.0/8, ::1, localhost); UsageProblem
    otherwise: the port forwards with the user's Runpod key, so it never listens on a network."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise UsageProblem(f"podtui serve listens on loopback only; {host!r} would let other machines spend your "
                           "Runpod endpoint with your key",
                           "use --host 127.0.0.1 (the default); to reach it from elsewhere, use SSH: "
                           "ssh -L 5002:127.0.0.1:5002 THIS-MACHINE")
    return host.strip("[]")


def local_api_key(path: Path) -> str:
    """The key local clients must send, read from `path`, or generated (secrets.token_urlsafe)
    and written there mode 0600 on first use. OSError when the file cannot be written."""
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = "podtui-serve-" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _is_loopback_name(hostname: str | None) -> bool:
    if not hostname:
        return False
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return hostname == "localhost"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: "Proxy"

    def __init__(self, address: tuple[str, int], proxy: "Proxy") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        """One request failed unexpectedly (a client gone mid-answer, or a bug): one warning line
        instead of socketserver's traceback on stderr; the server goes on."""
        kind, exc = sys.exc_info()[:2]
        if kind in (BrokenPipeError, ConnectionResetError):
            return
        self.proxy.emit("warning", {"message": f"a request failed: {kind.__name__ if kind else '?'}: {exc}"})


class Proxy:
    """The local HTTP side. `bind()` opens the port (OSError when it is taken); `serve_forever`
    runs in its own thread; `close()` stops it. `on_start()`/`on_end()` tell KeepWarm when a
    client request begins and ends; events go to `emit(kind, data)` (kinds: request, retry)."""

    def __init__(self, client: RuntimeClient, host: str, port: int, *, local_key: str | None,
                 retries: int = 3, retry_wait_s: float = 5.0, emit: EventSink,
                 on_start: Callable[[], None] = lambda: None, on_end: Callable[[], None] = lambda: None) -> None:
        self.client = client
        self.host = check_loopback(host)
        self.port = port
        self.local_key = local_key
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self.emit = emit
        self.on_start = on_start
        self.on_end = on_end
        self.requests = 0
        self.retried = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> int:
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        return self.port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="serve-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- one request, called by the handler thread ------------------------------------------

    def forward(self, handler: "_Handler", method: str, path: str, body: bytes | None) -> None:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in DROP_REQUEST}
        headers["Accept-Encoding"] = "identity"    # relay bytes as they come: no gzip to buffer
        started = time.monotonic()
        with self._lock:
            self.requests += 1
        self.on_start()
        status = 0
        try:
            for attempt in range(self.retries + 1):
                try:
                    response = self.client.openai_request(method, path[len("/v1"):], content=body, headers=headers,
                                                          read_timeout_s=READ_TIMEOUT_S)
                except RunpodUnavailable as exc:
                    if attempt < self.retries and (isinstance(exc, RuntimeUnreachable) or method == "GET"):
                        self._retry(path, attempt, exc.title, self.retry_wait_s)
                        continue
                    status = 502
                    handler.send_json(502, _error("upstream_unreachable", f"{exc.title}; {exc.fix}"))
                    return
                retry = response.status_code in RETRY_ANY or (response.status_code in RETRY_GET and method == "GET")
                if retry and attempt < self.retries:
                    hinted = response.headers.get("retry-after", "")
                    wait = min(float(hinted), 60.0) if hinted.replace(".", "", 1).isdigit() else self.retry_wait_s
                    response.close()
                    self._retry(path, attempt, f"HTTP {response.status_code}", wait)
                    continue
                status = response.status_code
                self._relay(handler, response)
                return
        finally:
            self.on_end()
            self.emit("request", {"method": method, "path": path, "status": status,
                                  "seconds": round(time.monotonic() - started, 3)})

    def _retry(self, path: str, attempt: int, reason: str, wait_s: float) -> None:
        with self._lock:
            self.retried += 1
        self.emit("retry", {"path": path, "attempt": attempt + 1, "of": self.retries, "reason": reason,
                            "wait_s": wait_s})
        time.sleep(wait_s)

    def _relay(self, handler: "_Handler", response: httpx.Response) -> None:
        try:
            handler.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in DROP_RESPONSE and not name.lower().startswith("access-control-"):
                    handler.send_header(name, value)
            length = response.headers.get("content-length")
            chunked = length is None
            handler.send_header("Transfer-Encoding", "chunked") if chunked else handler.send_header(
                "Content-Length", length)
            handler.cors_headers()
            handler.end_headers()
            try:
                for chunk in response.iter_raw():
                    if chunk:
                        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if chunked:
                    handler.wfile.write(b"0\r\n\r\n")
            except httpx.HTTPError as exc:   # the endpoint broke off: the client sees a cut stream
                handler.close_connection = True
                self.emit("warning", {"message": f"the endpoint broke off an answer: {type(exc).__name__}"})
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True   # the client went away: stop reading the endpoint
        finally:
            response.close()


def _error(code: str, message: str) -> dict:
    """An OpenAI-style error body, which chat clients show as it is."""
    return {"error": {"message": message, "type": "podtui_serve", "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args) -> None:   # the base class's signature
        pass   # requests are reported as events; nothing else goes to stderr

    def send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.cors_headers()
        self.end_headers()
        self.wfile.write(data)

    def cors_headers(self) -> None:
        """With the local key required, any origin may call (it still needs the key), as the
        engines behind a tunnel allow; without it, no cross-origin reads at all."""
        origin = self.headers.get("Origin")
        if origin and self.server.proxy.local_key:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _refused(self) -> bool:
        """Sends the refusal and returns True when this request may not be forwarded."""
        proxy = self.server.proxy
        if not _is_loopback_name(urlsplit(f"//{self.headers.get('Host', '')}").hostname):
            self.send_json(403, _error("bad_host", "podtui serve answers only requests addressed to a loopback host"))
            return True
        if proxy.local_key:
            sent = self.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {proxy.local_key}".encode()):
                self.send_json(401, _error("invalid_api_key", "send the key `podtui serve` printed beside its "
                                           "base URL (Authorization: Bearer KEY); it is not your Runpod key"))
                return True
        elif self.headers.get("Origin") and not _is_loopback_name(urlsplit(self.headers["Origin"]).hostname):
            self.send_json(403, _error("foreign_origin", "podtui serve --no-api-key refuses requests from web "
                                       "pages on other sites"))
            return True
        if not self.path.startswith("/v1/"):
            self.send_json(404, _error("not_found", "podtui serve forwards /v1/… only (OpenAI-compatible routes)"))
            return True
        return False

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self.send_json(411, _error("length_required", "send the request body with a Content-Length"))
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_json(413, _error("too_large", f"request bodies are limited to {MAX_BODY} bytes"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        if self._refused():
            self.close_connection = True   # its body, if any, is left unread
            return
        body = self._body()
        if body is not None:
            self.server.proxy.forward(self, self.command, self.path, body or None)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

    def do_OPTIONS(self) -> None:   # a browser's CORS preflight
        if self.server.proxy.local_key and self.headers.get("Origin"):
            self.send_response(204)
            self.cors_headers()
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_json(403, _error("cors_closed", "cross-origin requests need the local key"))


__all__ = ["Proxy", "check_loopback", "local_api_key"]
