"""The running agent: its shared runtime, RPC server and listener.

:class:`AgentService` starts in this order: database engine and schema
check, master key, endpoints (which load the volume drivers), RPC server
on topic ``custos-agent``, notification listener. :meth:`stop` stops taking
new messages; :meth:`wait` returns once in-flight requests have finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from sqlalchemy import exc as sa_exc

from agent import exception, rpc
from agent.dispatch import UnknownMethodEndpoint
from agent.handlers import build_endpoints, build_listener_endpoints
from agent.keystore import masterkey, signing
from agent.notifier import NotificationSender
from db import api as db_api
from db import migration

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


class Runtime:
    """What every endpoint of one agent shares.

    :ivar host: the agent's name (its RPC server name).
    :ivar ring: the master key ring.
    :ivar notifier: the notifier (:class:`agent.notifier.BrokerNotifier`),
        or None in tests that do not send notifications.
    :ivar notifications: the sender that publishes them off the reply path.
    :ivar vendordata: the agent's vendordata lookup (targets, fetcher,
        cache), set by its endpoint; the listener purges its cache.
    """

    def __init__(self, conf: cfg.ConfigOpts, notifier: Any,
                 ring: masterkey.MasterKeyRing | None = None) -> None:
        self.conf = conf
        self.host: str = conf.host
        self.started_at = time.monotonic()
        self.ring = ring or masterkey.get_ring()
        self.notifier = notifier
        self.notifications = NotificationSender(lambda: self.notifier)
        self.vendordata: Any = None

    def send_notifications(self, ctxt: Any,
                           notifications: Iterable[tuple[str, dict[str, Any], str]]) -> None:
        """Hand over the notifications of a request that has committed.

        They are published by :attr:`notifications` from its own thread,
        so the reply does not wait for the broker; nothing is raised here,
        since the change itself is already committed.
        """
        if self.notifier is None:
            return
        self.notifications.submit(ctxt, notifications)


def check_schema() -> None:
    """Refuse to start on a reachable database that is not migrated.

    An unreachable database is only a warning: the agent starts, answers
    ``DatabaseUnavailable`` and recovers when the database returns.

    :raises DatabaseNotMigrated: when the schema is not at the newest revision.
    """
    try:
        current = migration.db_version()
    except sa_exc.DBAPIError as error:
        LOG.warning("Database not reachable at start-up (%s); serving anyway",
                    type(error.orig).__name__)
        return
    expected = migration.head_revision()
    if current != expected:
        raise exception.DatabaseNotMigrated(current=current or "empty", expected=expected)


class AgentService:
    """custos-agent: RPC server plus notification listener."""

    def __init__(self, conf: cfg.ConfigOpts | None = None) -> None:
        self.conf = conf or CONF
        self.server: messaging.RPCServer | None = None
        self.listener: Any = None
        self.runtime: Runtime | None = None

    def start(self) -> None:
        """Start serving.

        :raises CustosException: on a configuration or schema problem that
            makes serving pointless (unmigrated database, bad backend).
        """
        db_api.configure()
        check_schema()
        rpc.init(self.conf)
        runtime = Runtime(self.conf, rpc.get_notifier(self.conf.host))
        try:
            runtime.ring.load()
        except exception.MasterKeyUnavailable as error:
            LOG.warning("%s; secrets and backup signing will fail until it is "
                        "created with 'custos-manage keys init'", error.msg)
        else:
            self._ensure_signing_key(runtime)
        endpoints = build_endpoints(runtime) + [UnknownMethodEndpoint()]
        self.runtime = runtime
        self.server = rpc.get_rpc_server(self.conf.host, endpoints)
        self.server.start()
        listener_endpoints = build_listener_endpoints(runtime)
        if listener_endpoints:
            self.listener = rpc.get_notification_listener(listener_endpoints,
                                                          pool=rpc.LISTENER_POOL)
            self.listener.start()
        LOG.info("custos-agent %s serving topic %s", self.conf.host, rpc.TOPIC)

    @staticmethod
    def _ensure_signing_key(runtime: Runtime) -> None:
        try:
            db_api.run_in_transaction(lambda s: signing.ensure_active(s, runtime.ring))
        except exception.CustosException as error:
            LOG.warning("No backup signing key yet: %s", error.msg)
        except sa_exc.DBAPIError as error:
            LOG.warning("No backup signing key yet: %s", type(error.orig).__name__)

    def stop(self) -> None:
        """Stop taking new requests and events."""
        for part in (self.server, self.listener):
            if part is not None:
                part.stop()

    def wait(self) -> None:
        """Wait for in-flight requests, then close the transports."""
        for part in (self.server, self.listener):
            if part is not None:
                part.wait()
        if self.runtime is not None:
            # Every committed change is announced before the transports close.
            self.runtime.notifications.close(self.conf.graceful_shutdown_timeout)
        if self.runtime is not None and self.runtime.vendordata is not None:
            self.runtime.vendordata.close()
        rpc.cleanup()
        db_api.dispose()
