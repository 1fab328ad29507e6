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

* Targets are asked concurrently, each on a :class:`~agent.vendordata.lanes.Lane`
  of its own (``max_per_target`` threads), so a slow target fills only its
  own lane and never delays another target's answer.  Idle keep-alive
  connections are kept per target between lookups.
* The whole exchange with a target (connect, request, headers, body, and
  the retries) has one deadline, ``connect_timeout + read_timeout`` from
  the start of the lookup, enforced on the socket
  (:mod:`agent.vendordata.exchange`): a target that trickles a byte a
  second is cut off at it.  Each read also has the read timeout, so a
  silent target ends sooner.  Only a request that was not sent in full
  (connection refused, connect timeout, reset while sending) is retried,
  a bounded number of times with a short jittered back-off.  Once the
  target has had the whole request it is never sent again: not after a
  connection closed without an answer, a read timeout, an answer broken
  off half-way or an error status, since the target may have acted on
  it (a target that creates something per request would create it
  twice).
* A 401 is the one exception, as in Nova: the target refused the
  service token, so the fetcher asks for a new one (``renew``) and asks
  that target once more with it; a second 401 is that target's failure.
* Everything also lives inside one overall ``deadline`` (normally longer
  than an exchange).  :meth:`Fetcher.fetch_all` returns as soon as its
  slowest target is done or cut off; a target still waiting for a thread
  of its lane then is reported as ``deadline exceeded``.
* Answers are refused as soon as they pass ``max_response_bytes``, after
  gzip decoding; a 2xx answer with an empty body is ``{}``; any other
  answer may be any JSON value (object, list, string, number, null) and
  is returned as it came, as Nova does.
* ``Cache-Control: no-store`` (or ``no-cache``, which a cache that cannot
  revalidate must treat the same) gives a TTL of 0, ``max-age=N`` a TTL of
  N seconds; without a hint the TTL is ``None`` (the caller's default).
* :meth:`Fetcher.close` cuts every exchange in flight at once, so an
  agent asked to stop is never held by a target.

Failure reasons are short fixed phrases plus the target's name or the
HTTP status.  They never carry a URL (it may hold credentials), a header
value (the ``X-Auth-Token``) or an exception's text.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import tenacity

from agent import exception, tracing
from agent.vendordata import exchange
from agent.vendordata.lanes import Lane
from agent.vendordata.targets import Target

LOG = logging.getLogger(__name__)

USER_AGENT = "custos-vendordata"
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
    :param data: the answer (any JSON value, ``None`` for ``null``) when
        ``ok``, else ``None``.
    :param reason: why the target failed; ``None`` when ``ok``.
    :param ttl: from the answer's ``Cache-Control``: ``None`` to use the
        default TTL, 0 not to store the answer, else seconds.
    :param status: the HTTP status, when an answer arrived.
    :param elapsed: seconds from the start of the lookup to this result.
    """

    target: str
    ok: bool
    data: Any = None
    reason: str | None = None
    ttl: float | None = None
    status: int | None = None
    elapsed: float = 0.0


class Fetcher:
    """Asks vendordata targets concurrently, each exchange within its deadline.

    Build one per agent and keep it: it keeps connections and threads per
    target for every lookup.  It is safe to call :meth:`fetch_all` from
    several threads at once.

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds any one read may wait; with
        ``connect_timeout`` it makes the deadline of a whole exchange.
    :param max_response_bytes: the largest answer accepted, in bytes.
    :param deadline: seconds one :meth:`fetch_all` may take in all,
        retries and waiting for a busy lane included; set it below the RPC
        timeout.
    :param retries: extra attempts after a connection failure.
    :param headers: called once per :meth:`fetch_all` for extra request
        headers, typically ``{"X-Auth-Token": session.get_token()}``.
    :param renew: called with the headers a target answered 401 to;
        returns headers with a new token (or raises).  Without it a 401 is
        the target's failure at once.
    :param max_per_target: exchanges with one target at once; lookups
        beyond that wait for its lane inside their own deadline.
    :param verify: TLS verification for https targets: True, False or the
        path of a CA bundle.
    :raises ValueError: when a timeout, the deadline or a size is not
        positive, or ``retries`` is negative.
    """

    def __init__(self, connect_timeout: float, read_timeout: float,
                 max_response_bytes: int, deadline: float, retries: int = 2,
                 headers: Callable[[], dict[str, str]] | None = None,
                 max_per_target: int = 8, verify: bool | str = True,
                 renew: Callable[[dict[str, str]], dict[str, str]] | None = None) -> None:
        for name, value in (("connect_timeout", connect_timeout),
                            ("read_timeout", read_timeout),
                            ("max_response_bytes", max_response_bytes),
                            ("deadline", deadline),
                            ("max_per_target", max_per_target)):
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
        self._renew = renew
        self._max_per_target = int(max_per_target)
        self._connections = exchange.Connections(verify=verify, max_idle=max_per_target)
        self._watchdog = exchange.Watchdog()
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cut every exchange in flight and close kept connections.

        Lookups still running return at once with their unfinished targets
        failed; a later :meth:`fetch_all` raises ``RuntimeError``.
        """
        self._closed.set()
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.close()
        self._watchdog.cut_all()
        self._connections.close()

    def fetch_all(self, targets: Iterable[Target],
                  body: Mapping[str, Any]) -> dict[str, FetchResult]:
        """POST ``body`` to every target at once and collect the answers.

        Returns when the slowest target is done or cut off: within
        ``connect_timeout + read_timeout`` of the call for a target that
        got a thread at once, and within the overall deadline in any case.

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
        exchange_at = min(deadline_at, started + self._connect_timeout + self._read_timeout)
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

        futures: dict[concurrent.futures.Future[FetchResult], Target] = {}
        trace = tracing.handoff()
        try:
            for target in targets:
                futures[self._lane(target).submit(
                    self._fetch_traced, trace, target, payload, headers, started,
                    exchange_at)] = target
        except RuntimeError:
            # Closed meanwhile: what was submitted is cut below.
            pass
        done, _ = concurrent.futures.wait(
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
        for target in targets:
            if target.name not in results:
                results[target.name] = FetchResult(
                    target=target.name, ok=False, reason="agent stopping",
                    elapsed=time.monotonic() - started)
        for result in results.values():
            if not result.ok:
                LOG.warning("Vendordata target %(target)s failed: %(reason)s",
                            {"target": result.target, "reason": result.reason})
        return results

    def _fetch_traced(self, trace: tuple[str, str, str] | None, target: Target,
                      *args: Any) -> FetchResult:
        # On the lane's thread: the span continues the request's trace.
        with tracing.resumed(trace, "vendordata", target=target.name):
            return self._fetch_one(target, *args)

    def _lane(self, target: Target) -> Lane:
        key = (target.name, target.url)
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = Lane(target.name, self._max_per_target)
            return lane

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json",
                   "Content-Type": "application/json",
                   "User-Agent": USER_AGENT}
        if self._headers is not None:
            headers.update(self._headers())
        return headers

    def _fetch_one(self, target: Target, payload: bytes, headers: dict[str, str],
                   started: float, deadline_at: float) -> FetchResult:
        """Ask one target, with retries, until ``deadline_at``; never raises."""
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
            retry=tenacity.retry_if_exception(
                lambda error: isinstance(error, exchange.ExchangeFailed) and error.retryable),
            stop=stop, wait=wait, reraise=True,
            before_sleep=lambda state: LOG.debug(
                "Vendordata target %s: attempt %d failed, retrying",
                target.name, state.attempt_number))
        try:
            try:
                data, ttl, status = retrying(self._attempt, target, payload, headers,
                                             deadline_at)
            except exchange.ExchangeFailed as exc:
                if exc.status != 401 or self._renew is None:
                    raise
                # The target refused the token: a revoked or stale one is
                # replaced and the target asked once more; a second 401
                # is its answer.
                renewed = self._renewed(headers)
                if renewed == headers:
                    # Renewed moments ago and refused again: no new token
                    # to offer, so no second request.
                    raise
                headers = renewed
                data, ttl, status = retrying.copy()(self._attempt, target, payload,
                                                    headers, deadline_at)
        except exchange.ExchangeFailed as exc:
            return result(ok=False, reason=exc.reason, status=exc.status)
        except Exception as exc:
            LOG.exception("Unexpected error asking vendordata target %s",
                          target.name)
            return result(ok=False, reason=f"unexpected error ({type(exc).__name__})")
        return result(ok=True, data=data, ttl=ttl, status=status)

    def _renewed(self, headers: dict[str, str]) -> dict[str, str]:
        assert self._renew is not None
        try:
            return {**headers, **self._renew(headers)}
        except Exception as exc:
            # The exception's text is left out, as for the first token.
            LOG.warning("Could not renew the vendordata service token (%s)",
                        type(exc).__name__)
            raise exchange.ExchangeFailed("could not renew the service token",
                                          status=401) from None

    def _attempt(self, target: Target, payload: bytes, headers: dict[str, str],
                 deadline_at: float) -> tuple[Any, float | None, int]:
        """Make one request; return (data, ttl, status) or raise ExchangeFailed."""
        if self._closed.is_set():
            raise exchange.ExchangeFailed("agent stopping")
        # Redirects are not followed: the X-Auth-Token would travel to
        # whatever host the answer names.
        answer = exchange.post(
            self._connections, self._watchdog, target.url, payload, headers,
            connect_timeout=self._connect_timeout, read_timeout=self._read_timeout,
            deadline_at=deadline_at, max_bytes=self._max_bytes)
        ttl = parse_cache_control(answer.cache_control)
        if not answer.body.strip():
            return {}, ttl, answer.status
        try:
            data = json.loads(answer.body)
        except ValueError:
            raise exchange.ExchangeFailed("answer is not JSON", status=answer.status) from None
        return data, ttl, answer.status


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
