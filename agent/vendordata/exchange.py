"""One HTTP exchange with a vendordata target, bounded on the socket.

A target must never hold the agent: whatever it does (accept and stay
silent, send headers one byte a second, stream a body forever, close the
connection after a byte-a-second HTTP/1.0 answer) the whole exchange
(connect, request, headers, body) ends at one deadline.  Two things
enforce it, so that neither has to be on time alone:

* every read is given a socket timeout of at most the time left before
  the deadline (and at most the read timeout), and the body loop looks
  at the clock after each read, so a target that trickles a byte before
  each timeout expires is still cut at the deadline;
* a :class:`Watchdog` thread shuts down the socket of every exchange
  that passes its deadline, which also ends a read blocked inside
  ``http.client`` (headers).  It holds the socket itself, taken right
  after connecting: ``http.client`` hands the socket over to the
  response and forgets it (``conn.sock = None``) for an HTTP/1.0 or
  ``Connection: close`` answer.

:class:`Connections` keeps a few idle keep-alive connections per target,
so consecutive lookups do not pay a new TCP (or TLS) handshake.  A kept
connection is looked at before it is used: one its target closed
meanwhile is replaced by a fresh one before anything is sent.  Once a
request has been sent in full it is never sent again by this module,
whatever happens next: the target may have acted on it.

The client speaks only what the targets need: a POST with a JSON body,
an identity or gzip encoded answer (gzip is inflated a piece at a time
and the inflated size is what ``max_bytes`` bounds, so a small
compressed bomb never grows past it in memory), no redirects, no
cookies, no proxies from the environment.
"""

from __future__ import annotations

import base64
import dataclasses
import heapq
import http.client
import itertools
import select
import socket
import ssl
import threading
import time
import urllib.parse
import zlib

__all__ = ["Answer", "Connections", "ExchangeFailed", "Watchdog", "post"]

# A read returns whatever has arrived, up to this much.
_READ_BYTES = 64 * 1024


class ExchangeFailed(Exception):
    """An exchange that ended without a usable answer.

    :param reason: a short fixed phrase; never a URL, header or exception text.
    :param retryable: the request was not sent in full (connection refused,
        connect timeout, reset while sending), so asking again is safe.
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
    __slots__ = ("sock", "deadline_at", "expired", "released")

    def __init__(self, deadline_at: float) -> None:
        # The socket is attached once connected; until then the connect
        # timeout bounds the exchange.
        self.sock: socket.socket | None = None
        self.deadline_at = deadline_at
        self.expired = False
        self.released = False

    def attach(self, sock: socket.socket) -> bool:
        """Hand the connected socket to the watchdog; False if already cut."""
        self.sock = sock
        # Set before ``expired`` is read: a cut running meanwhile either
        # sees the socket or has already set the flag read here.
        return not self.expired


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

    def watch(self, deadline_at: float) -> _Watch:
        """Cut the exchange at ``deadline_at`` (monotonic) unless released first.

        :returns: the entry; :meth:`_Watch.attach` gives it the socket.
        """
        entry = _Watch(deadline_at)
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
    sock = entry.sock
    if sock is None:
        # Still connecting: the connect timeout bounds it and the expired
        # flag is checked as soon as the socket is attached.
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
    :param max_bytes: the largest body accepted, on the wire and once
        decoded.
    :returns: the answer, decoded, when its status is 2xx.
    :raises ExchangeFailed: on any other outcome; ``retryable`` only when
        the request was not sent in full.
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
    headers.setdefault("Accept-Encoding", "gzip")
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:" \
                      f"{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()

    exchange = _Exchange(connections, watchdog, (scheme, host, port), target, payload,
                         headers, connect_timeout, read_timeout, deadline_at, max_bytes)
    conn, reused = connections.take(scheme, host, port, connect_timeout)
    try:
        return exchange.run(conn, reused)
    except _StaleConnection:
        # A kept connection the target closed meanwhile, seen before
        # anything was sent on it: one fresh connection is tried at once.
        return exchange.run(connections.open(scheme, host, port, connect_timeout), False)


class _StaleConnection(Exception):
    pass


class _Exchange:
    """One request and its answer; :meth:`run` may be called again on a new connection."""

    def __init__(self, connections: Connections, watchdog: Watchdog,
                 address: tuple[str, str, int], target: str, payload: bytes,
                 headers: dict[str, str], connect_timeout: float, read_timeout: float,
                 deadline_at: float, max_bytes: int) -> None:
        self.connections = connections
        self.watchdog = watchdog
        self.address = address
        self.target = target
        self.payload = payload
        self.headers = headers
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline_at = deadline_at
        self.max_bytes = max_bytes

    def run(self, conn: http.client.HTTPConnection, reused: bool) -> Answer:
        if self.deadline_at - time.monotonic() <= 0:
            conn.close()
            raise ExchangeFailed("deadline exceeded")
        watch = self.watchdog.watch(self.deadline_at)
        response: http.client.HTTPResponse | None = None
        keep = False
        try:
            sock = self._connect(conn, watch)
            if reused and _dropped(sock):
                raise _StaleConnection()
            self._settimeout(sock)
            try:
                conn.request("POST", self.target, body=self.payload, headers=self.headers)
            except (TimeoutError, socket.timeout):
                raise _expired_or(watch, "write timeout") from None
            except (OSError, http.client.HTTPException):
                # Broken while sending: the target has not had the whole
                # request, so it cannot have acted on it.
                if _cut_by_deadline(watch):
                    raise ExchangeFailed("deadline exceeded") from None
                raise ExchangeFailed("connection failed", retryable=True) from None
            # From here on the request has been sent in full: whatever
            # happens, it is not sent again.
            self._settimeout(sock)
            try:
                response = conn.getresponse()
            except (TimeoutError, socket.timeout):
                raise _expired_or(watch, "read timeout") from None
            except (http.client.RemoteDisconnected, ConnectionError,
                    http.client.BadStatusLine):
                raise _expired_or(watch, "connection closed without an answer") from None
            except (OSError, http.client.HTTPException):
                raise _expired_or(watch, "connection failed") from None

            status = response.status
            if not 200 <= status < 300:
                raise ExchangeFailed(f"HTTP {status}", status=status)
            too_large = ExchangeFailed(f"answer larger than {self.max_bytes} bytes",
                                       status=status)
            declared = response.getheader("Content-Length")
            if declared is not None and declared.strip().isdigit() \
                    and int(declared) > self.max_bytes:
                raise too_large
            encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
            decoder = _decoder(encoding)
            if decoder is None:
                raise ExchangeFailed("answer could not be decoded", status=status)
            body = self._read_body(response, sock, watch, decoder, too_large)
            keep = not response.will_close
            # Read in full and closed, the response frees its connection
            # for the next request.
            response.close()
            return Answer(status=status, body=body,
                          cache_control=response.getheader("Cache-Control"))
        finally:
            self.watchdog.release(watch)
            if keep and not watch.expired:
                self.connections.give_back(*self.address, conn)
            else:
                if response is not None:
                    # An HTTP/1.0 or Connection: close answer owns the
                    # socket now; the connection no longer knows it.
                    response.close()
                conn.close()
                if watch.sock is not None:
                    watch.sock.close()

    def _connect(self, conn: http.client.HTTPConnection, watch: _Watch) -> socket.socket:
        """Connect ``conn`` if needed; return its socket, attached to ``watch``."""
        if conn.sock is None:
            remaining = self.deadline_at - time.monotonic()
            conn.timeout = max(0.001, min(self.connect_timeout, remaining))
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
        sock = conn.sock
        assert sock is not None
        if not watch.attach(sock):
            raise ExchangeFailed("deadline exceeded")
        return sock

    def _settimeout(self, sock: socket.socket) -> None:
        # Never past the deadline, so a socket timeout that fires at it is
        # the deadline's doing (see _cut_by_deadline).
        left = self.deadline_at - time.monotonic()
        sock.settimeout(max(0.001, min(self.read_timeout, left)))

    def _read_body(self, response: http.client.HTTPResponse, sock: socket.socket,
                   watch: _Watch, decoder: _Decoder, too_large: ExchangeFailed) -> bytes:
        status = too_large.status
        chunks: list[bytes] = []
        wire = size = 0
        while True:
            if time.monotonic() >= self.deadline_at:
                raise ExchangeFailed("deadline exceeded", status=status)
            self._settimeout(sock)
            try:
                chunk = response.read1(_READ_BYTES)
            except (TimeoutError, socket.timeout):
                raise _expired_or(watch, "read timeout", status) from None
            except (OSError, http.client.HTTPException):
                raise _expired_or(watch, "connection closed in the middle of the answer",
                                  status) from None
            if not chunk:
                if _cut_by_deadline(watch):
                    raise ExchangeFailed("deadline exceeded", status=status)
                if response.length:
                    raise ExchangeFailed("connection closed in the middle of the answer",
                                         status=status)
                if not decoder.complete():
                    raise ExchangeFailed("answer could not be decoded", status=status)
                return b"".join(chunks)
            wire += len(chunk)
            if wire > self.max_bytes:
                raise too_large
            try:
                data = decoder.feed(chunk, self.max_bytes - size + 1)
            except zlib.error:
                raise ExchangeFailed("answer could not be decoded", status=status) from None
            size += len(data)
            if size > self.max_bytes:
                raise too_large
            chunks.append(data)


class _Decoder:
    """Identity: the body as it came."""

    def feed(self, chunk: bytes, limit: int) -> bytes:
        """Decode ``chunk``; return at most ``limit`` bytes (more means too large)."""
        return chunk

    def complete(self) -> bool:
        """True when what was fed is a whole encoded body."""
        return True


class _Gunzip(_Decoder):
    """gzip, one or more members, inflated no further than asked."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False

    def feed(self, chunk: bytes, limit: int) -> bytes:
        out: list[bytes] = []
        produced = 0
        pending = chunk
        while pending and produced < limit:
            self._started = True
            piece = self._inflate.decompress(pending, limit - produced)
            out.append(piece)
            produced += len(piece)
            if self._inflate.eof:
                pending = self._inflate.unused_data
                if pending:
                    # The next gzip member, as a concatenated file has.
                    self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                pending = self._inflate.unconsumed_tail
        return b"".join(out)

    def complete(self) -> bool:
        return not self._started or self._inflate.eof


def _decoder(encoding: str) -> _Decoder | None:
    if encoding == "identity":
        return _Decoder()
    if encoding in ("gzip", "x-gzip"):
        return _Gunzip()
    return None


def _dropped(sock: socket.socket) -> bool:
    """True when an idle kept connection was closed (or written to) by its target."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def _cut_by_deadline(watch: _Watch) -> bool:
    # Socket timeouts are never set past the deadline, so one that fires at
    # it is the deadline's doing even when the watchdog thread has not yet
    # run to mark it (its wake-up is late on a loaded machine).
    return watch.expired or time.monotonic() >= watch.deadline_at


def _expired_or(watch: _Watch, reason: str, status: int | None = None) -> ExchangeFailed:
    if _cut_by_deadline(watch):
        return ExchangeFailed("deadline exceeded", status=status)
    return ExchangeFailed(reason, status=status)
