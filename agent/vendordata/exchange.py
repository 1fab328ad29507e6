"""One HTTP exchange with a vendordata target, bounded on the socket.

A target must never hold the agent: whatever it does (accept and stay
silent, send headers one byte a second, stream a body forever) the whole
exchange (connect, request, headers, body) ends at one deadline.  A read
timeout alone cannot promise that, since a target that trickles a byte
before each timeout expires resets it forever, so a :class:`Watchdog`
thread shuts down the socket of every exchange that passes its deadline;
the blocked read returns at once and the exchange reports ``deadline
exceeded``.  The read timeout still ends a silent target sooner.

:class:`Connections` keeps a few idle keep-alive connections per target,
so consecutive lookups do not pay a new TCP (or TLS) handshake.  The
client speaks only what the targets need: a POST with a JSON body, an
identity-encoded answer, no redirects, no cookies, no proxies from the
environment.
"""

from __future__ import annotations

import base64
import dataclasses
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
import urllib.parse

__all__ = ["Answer", "Connections", "ExchangeFailed", "Watchdog", "post"]

# A read returns whatever has arrived, up to this much.
_READ_BYTES = 64 * 1024


class ExchangeFailed(Exception):
    """An exchange that ended without a usable answer.

    :param reason: a short fixed phrase; never a URL, header or exception text.
    :param retryable: the target did not receive the request (connection
        refused, reset or closed before an answer), so asking again is safe.
    :param status: the HTTP status, when one arrived.
    """

    def __init__(self, reason: str, retryable: bool = False,
                 status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status


@dataclasses.dataclass(frozen=True)
class Answer:
    """A complete 2xx answer."""

    status: int
    body: bytes
    cache_control: str | None


class _Watch:
    __slots__ = ("conn", "deadline_at", "expired", "released")

    def __init__(self, conn: http.client.HTTPConnection, deadline_at: float) -> None:
        self.conn = conn
        self.deadline_at = deadline_at
        self.expired = False
        self.released = False


class Watchdog:
    """Shuts down the sockets of exchanges that outlive their deadline.

    One daemon thread serves every exchange of a fetcher; it sleeps until
    the earliest deadline and is woken when an earlier one is added.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None

    def watch(self, conn: http.client.HTTPConnection, deadline_at: float) -> _Watch:
        """Cut ``conn`` at ``deadline_at`` (monotonic) unless released first."""
        entry = _Watch(conn, deadline_at)
        with self._cond:
            if self._closed:
                entry.expired = True
                return entry
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="custos-vendordata-watchdog")
                self._thread.start()
            heapq.heappush(self._heap, (deadline_at, next(self._order), entry))
            self._cond.notify()
        return entry

    @staticmethod
    def release(entry: _Watch) -> None:
        """The exchange ended; its socket is no longer the watchdog's business."""
        entry.released = True

    def cut_all(self) -> None:
        """Cut every exchange now and refuse new ones (the fetcher is closing)."""
        with self._cond:
            self._closed = True
            pending = [entry for _, _, entry in self._heap]
            self._heap.clear()
            self._cond.notify()
        for entry in pending:
            _cut(entry)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].released
                                      or self._heap[0][0] <= now):
                    _, _, entry = heapq.heappop(self._heap)
                    if not entry.released:
                        _cut(entry)
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)


def _cut(entry: _Watch) -> None:
    entry.expired = True
    sock = entry.conn.sock
    if sock is None:
        # Still connecting: the connect timeout bounds it and the expired
        # flag is checked as soon as connect returns.
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Connections:
    """Idle keep-alive connections, a few per target.

    :param verify: TLS verification for https targets: True, False or the
        path of a CA bundle.
    :param max_idle: idle connections kept per target.
    """

    def __init__(self, verify: bool | str = True, max_idle: int = 4) -> None:
        self._verify = verify
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def take(self, scheme: str, host: str, port: int,
             connect_timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """Return ``(connection, reused)``; a new one is not connected yet."""
        with self._lock:
            idle = self._idle.get((scheme, host, port))
            if idle:
                return idle.pop(), True
        return self.open(scheme, host, port, connect_timeout), False

    def open(self, scheme: str, host: str, port: int,
             connect_timeout: float) -> http.client.HTTPConnection:
        """Return a new, not yet connected connection."""
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=connect_timeout,
                                               context=self._tls_context())
        return http.client.HTTPConnection(host, port, timeout=connect_timeout)

    def give_back(self, scheme: str, host: str, port: int,
                  conn: http.client.HTTPConnection) -> None:
        """Keep a connection whose answer was read in full, or close it."""
        with self._lock:
            idle = self._idle.setdefault((scheme, host, port), [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close every idle connection; later ones are closed on return."""
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif isinstance(self._verify, str):
                context = ssl.create_default_context(cafile=self._verify)
            else:
                context = ssl.create_default_context()
            self._tls = context
        return self._tls


def post(connections: Connections, watchdog: Watchdog, url: str, payload: bytes,
         headers: dict[str, str], *, connect_timeout: float, read_timeout: float,
         deadline_at: float, max_bytes: int) -> Answer:
    """POST ``payload`` to ``url`` and read the whole answer before ``deadline_at``.

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds any one read may wait for data.
    :param deadline_at: monotonic time by which the exchange has ended,
        whatever the target does.
    :param max_bytes: the largest body accepted.
    :returns: the answer, when its status is 2xx.
    :raises ExchangeFailed: on any other outcome.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ExchangeFailed("unsupported URL")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ExchangeFailed("unsupported URL") from None
    host = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = dict(headers)
    headers.setdefault("Accept-Encoding", "identity")
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:" \
                      f"{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()

    conn, reused = connections.take(scheme, host, port, connect_timeout)
    try:
        return _exchange(connections, watchdog, conn, reused, (scheme, host, port),
                         target, payload, headers, connect_timeout, read_timeout,
                         deadline_at, max_bytes)
    except _StaleConnection:
        # A kept connection the target closed meanwhile: the request never
        # reached it, so one fresh connection is tried at once.
        conn = connections.open(scheme, host, port, connect_timeout)
        return _exchange(connections, watchdog, conn, False, (scheme, host, port),
                         target, payload, headers, connect_timeout, read_timeout,
                         deadline_at, max_bytes)


class _StaleConnection(Exception):
    pass


def _exchange(connections: Connections, watchdog: Watchdog,
              conn: http.client.HTTPConnection, reused: bool,
              address: tuple[str, str, int], target: str, payload: bytes,
              headers: dict[str, str], connect_timeout: float, read_timeout: float,
              deadline_at: float, max_bytes: int) -> Answer:
    remaining = deadline_at - time.monotonic()
    if remaining <= 0:
        conn.close()
        raise ExchangeFailed("deadline exceeded")
    watch = watchdog.watch(conn, deadline_at)
    keep = False
    try:
        if conn.sock is None:
            conn.timeout = min(connect_timeout, remaining)
            try:
                conn.connect()
            except (TimeoutError, socket.timeout):
                if _cut_by_deadline(watch):
                    raise ExchangeFailed("deadline exceeded") from None
                raise ExchangeFailed("connect timeout", retryable=True) from None
            except ssl.SSLError:
                raise ExchangeFailed("TLS error") from None
            except OSError:
                if watch.expired:
                    raise ExchangeFailed("deadline exceeded") from None
                raise ExchangeFailed("connection failed", retryable=True) from None
            if watch.expired:
                # Cut while connecting: the socket now exists; close it here.
                raise ExchangeFailed("deadline exceeded")
        assert conn.sock is not None
        conn.sock.settimeout(min(read_timeout, max(0.001, deadline_at - time.monotonic())))
        try:
            conn.request("POST", target, body=payload, headers=headers)
            response = conn.getresponse()
        except (TimeoutError, socket.timeout):
            raise _expired_or(watch, "read timeout") from None
        except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
            if watch.expired:
                raise ExchangeFailed("deadline exceeded") from None
            if reused:
                raise _StaleConnection() from None
            raise ExchangeFailed("connection failed", retryable=True) from None
        except (OSError, http.client.HTTPException):
            raise _expired_or(watch, "connection failed") from None

        status = response.status
        if not 200 <= status < 300:
            raise ExchangeFailed(f"HTTP {status}", status=status)
        too_large = ExchangeFailed(f"answer larger than {max_bytes} bytes", status=status)
        declared = response.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            raise too_large
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise ExchangeFailed("answer could not be decoded", status=status)
        body = _read_body(response, watch, max_bytes, too_large, status)
        keep = not response.will_close
        # Read in full and closed, the response frees its connection for
        # the next request.
        response.close()
        return Answer(status=status, body=body,
                      cache_control=response.getheader("Cache-Control"))
    finally:
        watchdog.release(watch)
        if keep and not watch.expired:
            connections.give_back(*address, conn)
        else:
            conn.close()


def _read_body(response: http.client.HTTPResponse, watch: _Watch, max_bytes: int,
               too_large: ExchangeFailed, status: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = response.read1(_READ_BYTES)
        except (TimeoutError, socket.timeout):
            raise _expired_or(watch, "read timeout", status) from None
        except http.client.IncompleteRead:
            raise _expired_or(watch, "connection closed in the middle of the answer",
                              status) from None
        except (OSError, http.client.HTTPException):
            raise _expired_or(watch, "connection closed in the middle of the answer",
                              status) from None
        if not chunk:
            if watch.expired:
                raise ExchangeFailed("deadline exceeded", status=status)
            if response.length:
                raise ExchangeFailed("connection closed in the middle of the answer",
                                     status=status)
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)


def _cut_by_deadline(watch: _Watch) -> bool:
    # Socket timeouts are never set past the deadline, so one that fires at
    # it is the deadline's doing even when the watchdog thread has not yet
    # run to mark it (its wake-up is late on a loaded machine).
    return watch.expired or time.monotonic() >= watch.deadline_at


def _expired_or(watch: _Watch, reason: str, status: int | None = None) -> ExchangeFailed:
    if _cut_by_deadline(watch):
        return ExchangeFailed("deadline exceeded", status=status)
    return ExchangeFailed(reason, status=status)
