"""A real HTTP server on 127.0.0.1 that plays vendordata targets.

The ``server`` fixture (tests/conftest.py) starts one per test, for unit
and functional tests alike.  Each test
registers behaviours by path (``server.route("/a", json_reply({}))``) and
reads back what the server saw in ``server.requests``.  The server runs in
a thread on a free port and stops at the end of the test; handlers that
wait or stream give up on their own after a few seconds at most, so a
broken test cannot hang the run.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

# Upper bound on how long any handler may keep a connection.
HANDLER_LIMIT = 5.0

Behaviour = Callable[["_Handler"], None]


@dataclasses.dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    at: float = dataclasses.field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass
class StreamLog:
    """What a streaming behaviour managed to send."""

    sent: int = 0
    finished: bool = False


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_LIMIT
    server: StubServer

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record(Seen(method=self.command, path=self.path,
                                headers=dict(self.headers.items()), body=body,
                                client_port=self.client_address[1]))
        behaviour = self.server.routes.get(self.path, json_reply({}, status=404))
        try:
            behaviour(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StubServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Behaviour] = {}
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def route(self, path: str, behaviour: Behaviour) -> str:
        """Serve ``behaviour`` at ``path``; return the full URL."""
        self.routes[path] = behaviour
        return self.url(path)

    def url(self, path: str = "/") -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}"

    def seen(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if s.path == path]


# -- behaviours --------------------------------------------------------------

def json_reply(obj: Any, status: int = 200,
               headers: dict[str, str] | None = None) -> Behaviour:
    """Answer with ``obj`` as JSON."""
    def behave(h: _Handler) -> None:
        h.reply(status, json.dumps(obj).encode(),
                {"Content-Type": "application/json", **(headers or {})})
    return behave


def raw_reply(status: int, body: bytes,
              headers: dict[str, str] | None = None) -> Behaviour:
    """Answer with exactly ``body``."""
    def behave(h: _Handler) -> None:
        h.reply(status, body, headers)
    return behave


def after(seconds: float, behaviour: Behaviour) -> Behaviour:
    """Wait ``seconds`` (or until the server stops), then behave."""
    def behave(h: _Handler) -> None:
        if not h.server.stopping.wait(min(seconds, HANDLER_LIMIT)):
            behaviour(h)
    return behave


def hang(limit: float = HANDLER_LIMIT) -> Behaviour:
    """Never answer; give up when the server stops or after ``limit`` seconds."""
    def behave(h: _Handler) -> None:
        h.server.stopping.wait(limit)
        h.close_connection = True
    return behave


def close_connection() -> Behaviour:
    """Close the connection without answering, the whole request read."""
    def behave(h: _Handler) -> None:
        h.close_connection = True
    return behave


def truncated(declared: int, body: bytes) -> Behaviour:
    """Promise ``declared`` bytes, send ``body`` (shorter), then close."""
    def behave(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        h.close_connection = True
    return behave


def stream(total: int, log: StreamLog, chunk: int = 64 * 1024,
           pause: float = 0.0, declare_length: bool = False) -> Behaviour:
    """Send ``total`` bytes of JSON-ish filler in chunks, logging progress.

    Without ``declare_length`` the body is delimited by closing the
    connection, so the client cannot refuse it from the headers alone.
    """
    def behave(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if declare_length:
            h.send_header("Content-Length", str(total))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        limit = time.monotonic() + HANDLER_LIMIT
        while log.sent < total and time.monotonic() < limit:
            if h.server.stopping.is_set():
                return
            piece = b" " * min(chunk, total - log.sent)
            h.wfile.write(piece)
            h.wfile.flush()
            log.sent += len(piece)
            if pause:
                time.sleep(pause)
        log.finished = log.sent >= total
    return behave


def trickle(interval: float) -> Behaviour:
    """Send one byte every ``interval`` seconds until the limit."""
    def behave(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        h.close_connection = True
        limit = time.monotonic() + HANDLER_LIMIT
        while time.monotonic() < limit and not h.server.stopping.wait(interval):
            h.wfile.write(b" ")
            h.wfile.flush()
    return behave


def trickle_headers(interval: float) -> Behaviour:
    """Send the status line and headers one byte every ``interval`` seconds."""
    def behave(h: _Handler) -> None:
        h.close_connection = True
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"x" * 1000 + b"\r\n\r\n{}"
        limit = time.monotonic() + HANDLER_LIMIT
        for byte in head:
            if time.monotonic() >= limit or h.server.stopping.wait(interval):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
    return behave


def keystone_tokens(token: str, expires_at: str = "2099-01-01T00:00:00.000000Z") -> Behaviour:
    """Play Keystone's ``POST /v3/auth/tokens``: issue ``token`` to anyone.

    The answer has what keystoneauth1 needs to accept the token: the
    ``X-Subject-Token`` header and a token body with an expiry.
    """
    def behave(h: _Handler) -> None:
        body = {"token": {
            "methods": ["password"], "expires_at": expires_at,
            "issued_at": "2024-01-01T00:00:00.000000Z",
            "user": {"id": "custos-user", "name": "custos",
                     "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "service-project", "name": "service",
                        "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r1", "name": "service"}],
            "catalog": []}}
        h.reply(201, json.dumps(body).encode(),
                {"Content-Type": "application/json", "X-Subject-Token": token})
    return behave


def trickle_framed(interval: float, framing: str, limit: float = HANDLER_LIMIT) -> Behaviour:
    """A 200 whose body comes one byte every ``interval`` seconds, framed as asked.

    :param framing: ``http10`` (an ``HTTP/1.0 200`` with ``Content-Length:
        100000``), ``close`` (HTTP/1.1 with ``Connection: close`` and no
        length), ``chunked`` (HTTP/1.1, one-byte chunks) or ``length``
        (HTTP/1.1 keep-alive with ``Content-Length: 100000``).
    :param limit: seconds after which the handler gives up on its own.
    """
    heads = {
        "http10": b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n",
        "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "length": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
    }
    head = heads[framing]
    piece = b"1\r\n \r\n" if framing == "chunked" else b" "

    def behave(h: _Handler) -> None:
        h.close_connection = True
        h.wfile.write(head)
        h.wfile.flush()
        until = time.monotonic() + limit
        while time.monotonic() < until and not h.server.stopping.wait(interval):
            h.wfile.write(piece)
            h.wfile.flush()
    return behave


def gzip_reply(obj: Any = None, raw: bytes | None = None, status: int = 200) -> Behaviour:
    """Answer with ``obj`` as JSON (or ``raw``), gzip-compressed, unasked or not."""
    body = gzip.compress(raw if raw is not None else json.dumps(obj).encode())

    def behave(h: _Handler) -> None:
        h.reply(status, body, {"Content-Type": "application/json",
                               "Content-Encoding": "gzip"})
    return behave


def accept_only(token: str, obj: Any) -> Behaviour:
    """Answer ``obj`` to a request carrying ``X-Auth-Token: token``, 401 to any other."""
    def behave(h: _Handler) -> None:
        if h.headers.get("X-Auth-Token") == token:
            h.reply(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})
        else:
            h.reply(401, b'{"error": "token refused"}', {"Content-Type": "application/json"})
    return behave


def keystone_issuing(prefix: str) -> Behaviour:
    """Play Keystone issuing a new token at each request: ``prefix-1``, ``prefix-2``, ..."""
    issued = itertools.count(1)

    def behave(h: _Handler) -> None:
        keystone_tokens(f"{prefix}-{next(issued)}")(h)
    return behave
