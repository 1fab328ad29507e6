"""The agent's Prometheus metrics, and the endpoint an operator scrapes.

Every metric lives in :data:`REGISTRY` (not prometheus-client's global
one, so that a library imported by the agent adds nothing to what an
operator sees) and is counted whether or not the endpoint is served:
``custos health`` reads some of them. :func:`serve` starts the endpoint
when ``[metrics] bind`` is set.

Label values are drawn from bounded sets only: RPC method names, error
codes, vendordata target names (from the configuration), and the fixed
words below. Never an id, a project, a token or a secret.

The dispatch boundary takes one :class:`MethodMetrics` per RPC method when
the method is declared, so a request only increments children made then.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any

import prometheus_client as prom

from agent import exception

LOG = logging.getLogger(__name__)

REGISTRY = prom.CollectorRegistry(auto_describe=True)

#: Latency buckets in seconds: from a cached secret read to a stuck database.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)

#: The outcome of a request that raised something other than a custos error.
INTERNAL = "internal"
#: Most distinct error codes kept per method; beyond, ``other`` (never hit
#: with custos' own codes, which are a fixed set, but it bounds the series).
MAX_CODES_PER_METHOD = 64

RPC_REQUESTS = prom.Counter(
    "custos_rpc_requests", "RPC requests served, by method and outcome "
    "(ok, or the error code the caller received).",
    ["method", "outcome"], registry=REGISTRY)
RPC_SECONDS = prom.Histogram(
    "custos_rpc_request_seconds", "Time from a request reaching the dispatch "
    "boundary to its answer, by method.", ["method"], buckets=LATENCY_BUCKETS,
    registry=REGISTRY)
RPC_IN_FLIGHT = prom.Gauge(
    "custos_rpc_in_flight", "RPC requests being served now, by method.", ["method"],
    registry=REGISTRY)

NOTIFICATIONS_SENT = prom.Counter(
    "custos_notifications_sent", "Notifications the broker took.", registry=REGISTRY)
NOTIFICATIONS_RETRIED = prom.Counter(
    "custos_notifications_retried", "Notification sends that failed and were tried again.",
    registry=REGISTRY)
NOTIFICATIONS_DROPPED = prom.Counter(
    "custos_notifications_dropped", "Notifications never sent, by reason: queue_full, "
    "gave_up (broker away past the retry deadline), shutdown.", ["reason"],
    registry=REGISTRY)
NOTIFICATION_QUEUE = prom.Gauge(
    "custos_notification_queue_depth", "Notifications waiting for the broker.",
    registry=REGISTRY)

TOKENS = prom.Counter(
    "custos_token_validations", "Tokens met at the authentication step, by result: "
    "cache_hit, cache_miss (asked Keystone), refused (by Keystone or from the "
    "refused cache), unavailable (Keystone could not be asked).", ["result"],
    registry=REGISTRY)
KEYSTONE_SECONDS = prom.Histogram(
    "custos_keystone_request_seconds", "Time Keystone took to answer a token validation.",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)

VENDORDATA_ANSWERS = prom.Counter(
    "custos_vendordata_answers", "Vendordata documents a target returned.", ["target"],
    registry=REGISTRY)
VENDORDATA_FAILURES = prom.Counter(
    "custos_vendordata_failures", "Vendordata fetches that failed, by target and "
    "reason (the error code).", ["target", "reason"], registry=REGISTRY)
VENDORDATA_CACHE_HITS = prom.Counter(
    "custos_vendordata_cache_hits", "Vendordata answered from the cache, by target.",
    ["target"], registry=REGISTRY)
VENDORDATA_LANE_BUSY = prom.Gauge(
    "custos_vendordata_lane_busy", "Fetches in progress in a target's lane.", ["target"],
    registry=REGISTRY)

EVENT_PURGES = prom.Counter(
    "custos_event_purges", "State purged on another service's deletion event, by kind "
    "of what was purged.", ["kind"], registry=REGISTRY)

DB_RETRIES = prom.Counter(
    "custos_db_retries", "Database transactions retried, by cause: deadlock "
    "(deadlock, serialization or certification failure), unreachable, "
    "stale_connection.", ["cause"], registry=REGISTRY)

# Children made now, so that the hot paths never build a label value.
NOTIFICATIONS_QUEUE_FULL = NOTIFICATIONS_DROPPED.labels("queue_full")
NOTIFICATIONS_GAVE_UP = NOTIFICATIONS_DROPPED.labels("gave_up")
NOTIFICATIONS_SHUTDOWN = NOTIFICATIONS_DROPPED.labels("shutdown")
TOKEN_CACHE_HIT = TOKENS.labels("cache_hit")
TOKEN_CACHE_MISS = TOKENS.labels("cache_miss")
TOKEN_REFUSED = TOKENS.labels("refused")
TOKEN_UNAVAILABLE = TOKENS.labels("unavailable")
PURGED = {kind: EVENT_PURGES.labels(kind)
          for kind in ("boot_roles", "glance_metadata", "generated_secrets",
                       "vendordata_cache", "ephemeral_secrets")}
DB_RETRY_CAUSES = {cause: DB_RETRIES.labels(cause)
                   for cause in ("deadlock", "unreachable", "stale_connection")}


class MethodMetrics:
    """The children of one RPC method's metrics, made when the method is declared.

    :param method: the RPC method name (a code identifier, bounded).
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.ok = RPC_REQUESTS.labels(method, "ok")
        self.seconds = RPC_SECONDS.labels(method)
        self.in_flight = RPC_IN_FLIGHT.labels(method)
        self._lock = threading.Lock()
        self._codes: dict[str, Any] = {INTERNAL: RPC_REQUESTS.labels(method, INTERNAL)}

    def done(self, code: str | None, seconds: float) -> None:
        """Count a request that has been answered.

        :param code: None when it succeeded, else the error code the
            caller received (:data:`INTERNAL` for an unexpected failure).
        :param seconds: how long it took.
        """
        self.in_flight.dec()
        self.seconds.observe(seconds)
        if code is None:
            self.ok.inc()
        else:
            self.failed(code)

    def failed(self, code: str) -> None:
        """Count a request answered with error ``code`` (or :data:`INTERNAL`)."""
        child = self._codes.get(code)
        if child is None:
            with self._lock:
                if len(self._codes) >= MAX_CODES_PER_METHOD:
                    code = "other"
                child = self._codes.get(code)
                if child is None:
                    child = self._codes[code] = RPC_REQUESTS.labels(self.method, code)
        child.inc()


def parse_bind(value: str) -> tuple[str, int]:
    """Split ``[metrics] bind`` into host and port.

    :param value: ``host:port``; an IPv6 host in brackets (``[::1]:9464``).
    :returns: ``(host, port)``.
    :raises ConfigurationError: not ``host:port`` with a port from 1 to 65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise exception.ConfigurationError(
            reason=f"[metrics] bind must be host:port, got {value[:64]!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True when ``host`` names only the local machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Endpoint:
    """The running HTTP endpoint; :meth:`close` stops it."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when bind asked for 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()


def serve(bind: str) -> Endpoint | None:
    """Serve :data:`REGISTRY` on ``http://<bind>/metrics`` from a thread of its own.

    :param bind: ``[metrics] bind``; empty serves nothing.
    :returns: the endpoint, or None when ``bind`` is empty.
    :raises ConfigurationError: a malformed ``bind``, or one the agent
        cannot listen on (port taken, address not local).
    """
    if not bind:
        return None
    host, port = parse_bind(bind)
    try:
        server, thread = prom.start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as error:
        raise exception.ConfigurationError(
            reason=f"cannot serve metrics on {bind[:64]}: {error.strerror}") from None
    LOG.info("Serving metrics on http://%s:%d/metrics", host, server.server_address[1])
    return Endpoint(server, thread)


#: Failure reasons of the fetcher that are already fixed words.
_VENDORDATA_REASONS = {"deadline exceeded": "deadline_exceeded",
                       "agent stopping": "agent_stopping",
                       "could not obtain request headers": "no_request_headers"}


def vendordata_reason(result: Any) -> str:
    """Return a bounded label for a failed vendordata fetch.

    :param result: the fetcher's :class:`~agent.vendordata.fetcher.FetchResult`.
    :returns: ``http_<status>`` when the target answered, a fixed word for
        the fetcher's own reasons, else ``exchange_failed``; never the
        free text of the reason, which may quote what the target sent.
    """
    status = getattr(result, "status", None)
    if isinstance(status, int) and 100 <= status < 600:
        return f"http_{status}"
    return _VENDORDATA_REASONS.get(getattr(result, "reason", None) or "", "exchange_failed")
