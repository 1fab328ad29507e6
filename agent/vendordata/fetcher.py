"""Asking dynamic vendordata targets over HTTP.

This is the HTTP half of ``vendordata_get``; it knows nothing of RPC,
configuration or the database.  The handler builds the request body with
:func:`build_body`, hands it to one long-lived :class:`Fetcher` with the
configured targets, and gets back one :class:`FetchResult` per target::

    fetcher = Fetcher(connect_timeout=3, read_timeout=5,
                      max_response_bytes=1048576, deadline=20,
                      headers=lambda: {"X-Auth-Token": session.get_token()})
    results = fetcher.fetch_all(targets, build_body(instance, roles))
    good = {name: r.data for name, r in results.items() if r.ok}

How a lookup runs:

* Targets are asked concurrently on a thread pool kept for the life of the
  fetcher, through one :class:`requests.Session` whose connection pool
  keeps connections to the targets open between lookups.  A lookup costs
  the slowest target, not the sum (Nova asks them one after another).
* Every request has a (connect, read) timeout.  Connection failures
  (refused, reset, closed before an answer, connect timeout) are retried a
  bounded number of times with a short jittered back-off.  Answers with an
  error status, read timeouts and answers broken off half-way are not
  retried: the target received the request and retrying would double its
  load for an answer that is unlikely to change.
* Everything lives inside one overall ``deadline``.  When it passes,
  :meth:`Fetcher.fetch_all` returns at once and reports the targets still
  running as ``deadline exceeded``; their workers notice the deadline
  between reads and give up on their own.
* Answers are read in streaming mode and refused as soon as they pass
  ``max_response_bytes``; a 2xx answer with an empty body is ``{}``; any
  other answer must be a JSON object.
* ``Cache-Control: no-store`` (or ``no-cache``, which a cache that cannot
  revalidate must treat the same) gives a TTL of 0, ``max-age=N`` a TTL of
  N seconds; without a hint the TTL is ``None`` (the caller's default).

Failure reasons are short fixed phrases plus the target's name or the
HTTP status.  They never carry a URL (it may hold credentials), a header
value (the ``X-Auth-Token``) or an exception's text.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.cookiejar
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests
import requests.adapters
import tenacity

from agent import exception
from agent.vendordata.targets import Target

LOG = logging.getLogger(__name__)

USER_AGENT = "custos-vendordata"
# Small reads keep the deadline check between them frequent: a read only
# returns once a whole chunk (or the end) has arrived.
_CHUNK_BYTES = 16 * 1024
_RETRY_WAIT_MAX = 1.0
_RETRY_WAIT_MULTIPLIER = 0.1


def build_body(instance: Mapping[str, Any], boot_roles: list[str]) -> dict[str, Any]:
    """Build the JSON body that Nova's vendordata v2 POSTs to a target.

    The keys and values are the ones Nova sends, so targets written for
    Nova work unchanged.  ``user-data`` is passed on as stored (base64 text
    in Nova).

    :param instance: the instance as ``vendordata_get`` receives it: ``uuid``
        and ``project_id`` are required; ``image_id``, ``hostname`` and
        ``user_data`` default to ``None`` and ``metadata`` to ``{}``.
    :param boot_roles: the roles stored for the instance at boot; may be
        empty.
    :returns: a dict with ``project-id``, ``instance-id``, ``image-id``,
        ``user-data``, ``hostname``, ``metadata`` and ``boot-roles`` (the
        roles joined by commas, ``''`` when there are none).
    :raises agent.exception.InvalidInput: when a required field is missing
        or a field has the wrong type.
    """
    for field in ("uuid", "project_id"):
        if not isinstance(instance.get(field), str) or not instance[field]:
            raise exception.InvalidInput(field=f"instance.{field}",
                                         reason="a non-empty string is required")
    metadata = instance.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise exception.InvalidInput(field="instance.metadata",
                                     reason="must be an object")
    if not all(isinstance(role, str) for role in boot_roles):
        raise exception.InvalidInput(field="boot_roles",
                                     reason="must be a list of strings")
    return {
        "project-id": instance["project_id"],
        "instance-id": instance["uuid"],
        "image-id": instance.get("image_id"),
        "user-data": instance.get("user_data"),
        "hostname": instance.get("hostname"),
        "metadata": dict(metadata),
        "boot-roles": ",".join(boot_roles),
    }


@dataclasses.dataclass(slots=True)
class FetchResult:
    """What one target answered.

    :param target: the target's name.
    :param ok: True when ``data`` holds a good answer.
    :param data: the answer (a JSON object) when ``ok``, else ``None``.
    :param reason: why the target failed; ``None`` when ``ok``.
    :param ttl: from the answer's ``Cache-Control``: ``None`` to use the
        default TTL, 0 not to store the answer, else seconds.
    :param status: the HTTP status, when an answer arrived.
    :param elapsed: seconds from the start of the lookup to this result.
    """

    target: str
    ok: bool
    data: dict[str, Any] | None = None
    reason: str | None = None
    ttl: float | None = None
    status: int | None = None
    elapsed: float = 0.0


class _Retryable(Exception):
    """A connection-level failure worth another attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Failed(Exception):
    """A failure that ends the target's attempts."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _RefuseCookies(http.cookiejar.CookiePolicy):
    """Never store or send cookies.

    The session is shared by every lookup; a cookie set while answering
    for one instance must not travel with the request for another.
    """

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


class Fetcher:
    """Asks vendordata targets concurrently, within one deadline.

    Build one per agent and keep it: its session pools connections and its
    threads are reused by every lookup.  It is safe to call
    :meth:`fetch_all` from several threads at once.

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait for each read from the target.
    :param max_response_bytes: the largest answer accepted, in bytes after
        content decoding.
    :param deadline: seconds one :meth:`fetch_all` may take in all,
        retries included; set it below the RPC timeout.
    :param retries: extra attempts after a connection failure.
    :param headers: called once per :meth:`fetch_all` for extra request
        headers, typically ``{"X-Auth-Token": session.get_token()}``.
    :param max_workers: threads asking targets; lookups beyond that wait
        their turn inside their own deadline.
    :param verify: TLS verification for https targets, as in requests:
        True, False or the path of a CA bundle.
    :raises ValueError: when a timeout, the deadline or a size is not
        positive, or ``retries`` is negative.
    """

    def __init__(self, connect_timeout: float, read_timeout: float,
                 max_response_bytes: int, deadline: float, retries: int = 2,
                 headers: Callable[[], dict[str, str]] | None = None,
                 max_workers: int = 8, verify: bool | str = True) -> None:
        for name, value in (("connect_timeout", connect_timeout),
                            ("read_timeout", read_timeout),
                            ("max_response_bytes", max_response_bytes),
                            ("deadline", deadline),
                            ("max_workers", max_workers)):
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self._connect_timeout = float(connect_timeout)
        self._read_timeout = float(read_timeout)
        self._max_bytes = int(max_response_bytes)
        self._deadline = float(deadline)
        self._retries = int(retries)
        self._headers = headers
        self._verify = verify

        session = requests.Session()
        # Behaviour comes from configuration, not from the process
        # environment: no proxies from *_proxy variables, no netrc
        # credentials added to requests.
        session.trust_env = False
        session.cookies.set_policy(_RefuseCookies())
        # tenacity owns retries; urllib3 must not retry underneath it.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=max_workers, pool_maxsize=max_workers, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="custos-vendordata")
        self._closed = threading.Event()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread pool and close pooled connections.

        Lookups still running are abandoned; a later :meth:`fetch_all`
        raises ``RuntimeError``.
        """
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def fetch_all(self, targets: Iterable[Target],
                  body: Mapping[str, Any]) -> dict[str, FetchResult]:
        """POST ``body`` to every target at once and collect the answers.

        Returns within the deadline (plus scheduling slack) whatever the
        targets do.

        :param targets: the targets to ask; names are unique (see
            :func:`agent.vendordata.targets.parse_targets`).
        :param body: the request body, usually from :func:`build_body`.
        :returns: one :class:`FetchResult` per target, keyed by name.
        :raises RuntimeError: when the fetcher is closed.
        :raises TypeError: when ``body`` cannot be encoded as JSON.
        """
        if self._closed.is_set():
            raise RuntimeError("the vendordata fetcher is closed")
        started = time.monotonic()
        deadline_at = started + self._deadline
        targets = list(targets)
        if not targets:
            return {}
        payload = json.dumps(body).encode("utf-8")

        try:
            headers = self._request_headers()
        except Exception as exc:
            # The exception's text is left out: it may quote the
            # credentials the token was requested with.
            LOG.warning("Could not obtain vendordata request headers (%s); "
                        "no target was asked", type(exc).__name__)
            reason = "could not obtain request headers"
            return {t.name: FetchResult(target=t.name, ok=False, reason=reason,
                                        elapsed=time.monotonic() - started)
                    for t in targets}

        futures = {
            self._pool.submit(self._fetch_one, target, payload, headers,
                              started, deadline_at): target
            for target in targets
        }
        done, not_done = concurrent.futures.wait(
            futures, timeout=max(0.0, deadline_at - time.monotonic()))

        results: dict[str, FetchResult] = {}
        for future, target in futures.items():
            if (future in done or future.done()) and not future.cancelled():
                results[target.name] = future.result()
            else:
                future.cancel()
                results[target.name] = FetchResult(
                    target=target.name, ok=False, reason="deadline exceeded",
                    elapsed=time.monotonic() - started)
        for result in results.values():
            if not result.ok:
                LOG.warning("Vendordata target %(target)s failed: %(reason)s",
                            {"target": result.target, "reason": result.reason})
        return results

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json",
                   "Content-Type": "application/json",
                   "User-Agent": USER_AGENT}
        if self._headers is not None:
            headers.update(self._headers())
        return headers

    def _fetch_one(self, target: Target, payload: bytes, headers: dict[str, str],
                   started: float, deadline_at: float) -> FetchResult:
        """Ask one target, with retries; never raises."""
        def result(**kwargs: Any) -> FetchResult:
            return FetchResult(target=target.name,
                               elapsed=time.monotonic() - started, **kwargs)

        def stop(state: tenacity.RetryCallState) -> bool:
            return (state.attempt_number > self._retries
                    or time.monotonic() >= deadline_at)

        backoff = tenacity.wait_random_exponential(
            multiplier=_RETRY_WAIT_MULTIPLIER, max=_RETRY_WAIT_MAX)

        def wait(state: tenacity.RetryCallState) -> float:
            return min(backoff(state), max(0.0, deadline_at - time.monotonic()))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=stop, wait=wait, reraise=True,
            before_sleep=lambda state: LOG.debug(
                "Vendordata target %s: attempt %d failed, retrying",
                target.name, state.attempt_number))
        try:
            data, ttl, status = retrying(
                self._attempt, target, payload, headers, deadline_at)
        except (_Retryable, _Failed) as exc:
            return result(ok=False, reason=exc.reason,
                          status=getattr(exc, "status", None))
        except Exception as exc:
            LOG.exception("Unexpected error asking vendordata target %s",
                          target.name)
            return result(ok=False, reason=f"unexpected error ({type(exc).__name__})")
        return result(ok=True, data=data, ttl=ttl, status=status)

    def _attempt(self, target: Target, payload: bytes, headers: dict[str, str],
                 deadline_at: float) -> tuple[dict[str, Any], float | None, int]:
        """Make one request; return (data, ttl, status) or raise."""
        remaining = deadline_at - time.monotonic()
        if remaining <= 0 or self._closed.is_set():
            raise _Failed("deadline exceeded")
        timeout = (min(self._connect_timeout, remaining),
                   min(self._read_timeout, remaining))
        try:
            # Redirects are not followed: requests would carry the
            # X-Auth-Token along to whatever host the answer names.
            response = self._session.post(
                target.url, data=payload, headers=headers, timeout=timeout,
                stream=True, allow_redirects=False, verify=self._verify)
        except requests.exceptions.ReadTimeout:
            raise _Failed("read timeout") from None
        except requests.exceptions.SSLError:
            raise _Failed("TLS error") from None
        except requests.exceptions.ConnectTimeout:
            raise _Retryable("connect timeout") from None
        except requests.exceptions.ConnectionError:
            raise _Retryable("connection failed") from None
        except requests.exceptions.RequestException as exc:
            raise _Failed(f"request failed ({type(exc).__name__})") from None

        with response:
            status = response.status_code
            if not 200 <= status < 300:
                raise _Failed(f"HTTP {status}", status=status)
            content = self._read_body(response, deadline_at)
            ttl = parse_cache_control(response.headers.get("Cache-Control"))

        if not content.strip():
            return {}, ttl, status
        try:
            data = json.loads(content)
        except ValueError:
            raise _Failed("answer is not JSON", status=status) from None
        if not isinstance(data, dict):
            raise _Failed("answer is not a JSON object", status=status)
        return data, ttl, status

    def _read_body(self, response: requests.Response, deadline_at: float) -> bytes:
        """Read the body within the size limit and the deadline."""
        too_large = _Failed(f"answer larger than {self._max_bytes} bytes",
                            status=response.status_code)
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit():
            if int(declared) > self._max_bytes:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                size += len(chunk)
                if size > self._max_bytes:
                    raise too_large
                chunks.append(chunk)
                # A target that trickles bytes never trips the read
                # timeout, so the deadline is checked between reads.
                if time.monotonic() >= deadline_at:
                    raise _Failed("deadline exceeded", status=response.status_code)
        except requests.exceptions.ConnectionError:
            # requests reports a read timeout inside the body this way.
            raise _Failed("read timeout",
                          status=response.status_code) from None
        except requests.exceptions.ChunkedEncodingError:
            raise _Failed("connection closed in the middle of the answer",
                          status=response.status_code) from None
        except requests.exceptions.ContentDecodingError:
            raise _Failed("answer could not be decoded",
                          status=response.status_code) from None
        return b"".join(chunks)


def parse_cache_control(value: str | None) -> float | None:
    """Turn a ``Cache-Control`` header into a TTL.

    :param value: the header value, or ``None`` when absent.
    :returns: 0 for ``no-store`` or ``no-cache``; N for ``max-age=N``;
        ``None`` (use the default TTL) when there is no usable hint.
    """
    if not value:
        return None
    max_age: float | None = None
    for directive in value.split(","):
        name, _, argument = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and max_age is None:
            argument = argument.strip().strip('"')
            if argument.isdigit():
                max_age = float(int(argument))
    return max_age
