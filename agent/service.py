"""The running agent: its shared runtime, RPC server and listener.

:class:`AgentService` starts in this order: database engine and schema
check, the shared :class:`~agent.runtime.Runtime`
(:func:`~agent.runtime.build_runtime`), the
endpoints over it, the two event listeners
(:func:`agent.rpc.get_event_listeners`), then the RPC server on topic
``custos-agent``. :meth:`stop` stops taking
new messages; :meth:`wait` returns once in-flight requests have finished.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from sqlalchemy import exc as sa_exc

from agent import exception, metrics, rpc, tracing, transactions
from agent.conf import auth as auth_conf
from agent.dispatch import UnknownMethodEndpoint
from agent.events.grace import PurgeReaper
from agent.handlers import (build_endpoints, build_listener_endpoints,
                            build_memory_listener_endpoints)
from agent.keystore import keyset, signing
from agent.runtime import Runtime, build_runtime
from db import api as db_api
from db import migration

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


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
    """custos-agent: RPC server plus event listeners (a shared pool and its own)."""

    def __init__(self, conf: cfg.ConfigOpts | None = None) -> None:
        self.conf = conf or CONF
        self.server: messaging.RPCServer | None = None
        self.listeners: list[Any] = []
        self.runtime: Runtime | None = None
        self.reaper: PurgeReaper | None = None
        self.metrics: metrics.Endpoint | None = None

    def start(self) -> None:
        """Start serving.

        :raises CustosException: on a configuration or schema problem that
            makes serving pointless (unmigrated database, bad backend).
        """
        if self.conf.auth.strategy == auth_conf.TRUSTED:
            LOG.warning("[auth] strategy = trusted: this agent believes the project, user "
                        "and roles any message claims, so whoever can publish on the bus "
                        "can act as any project or as the administrator. Use "
                        "strategy = keystone wherever the bus is shared.")
        db_api.configure()
        check_schema()
        self.metrics = metrics.serve(self.conf.metrics.bind)
        tracing.setup(self.conf, self.conf.host)
        rpc.init(self.conf)
        runtime = build_runtime(self.conf, rpc.get_notifier(self.conf.host))
        metrics.NOTIFICATION_QUEUE.set_function(runtime.notifications.pending)
        if runtime.ring.loaded:
            self._ensure_signing_key(runtime)
        endpoints = build_endpoints(runtime) + [UnknownMethodEndpoint()]
        self.runtime = runtime
        # The listeners first: the agent's own event queue, deleted when an
        # agent of this name last stopped, must exist before a request can
        # put anything in memory, or the event that should purge it is
        # routed nowhere.
        self.listeners = rpc.get_event_listeners(self.conf.host,
                                                 build_listener_endpoints(runtime),
                                                 build_memory_listener_endpoints(runtime),
                                                 self.conf)
        for listener in self.listeners:
            listener.start()
        self.server = rpc.get_rpc_server(self.conf.host, endpoints, identity=runtime.identity)
        self.server.start()
        self.reaper = PurgeReaper(self.conf)
        self.reaper.start()
        LOG.info("custos-agent %s serving topic %s", self.conf.host, rpc.TOPIC)

    @staticmethod
    def _ensure_signing_key(runtime: Runtime) -> None:
        def work(session: Any) -> None:
            # Which master keys this node holds, so that a rotation never
            # promotes one it lacks; and the state row every wrap locks.
            keyset.state_row(session, runtime.ring)
            keyset.record_holder(session, runtime.host, runtime.ring.held())
            signing.ensure_active(session, runtime.ring)

        try:
            db_api.run_in_transaction(work)
        except exception.CustosException as error:
            LOG.warning("No backup signing key yet: %s", error.msg)
        except sa_exc.DBAPIError as error:
            LOG.warning("No backup signing key yet: %s", type(error.orig).__name__)

    def stop(self) -> None:
        """Stop taking new requests and events; the server and listeners stop together.

        The broker stops delivering requests before the server stops, so
        that no request is acknowledged and then dropped (see
        :func:`agent.rpc.cancel_deliveries`).
        """
        if self.reaper is not None:
            self.reaper.stop()
        if self.server is not None:
            rpc.cancel_deliveries(self.server)
        parts = [part for part in (self.server, *self.listeners) if part is not None]
        if not parts:
            return
        # Each stop returns once its listener's poll loop has ended, which
        # may first finish a broker read of up to a second: stopped one
        # after the other, the server and both listeners took 2.5 s.
        with futures.ThreadPoolExecutor(len(parts), thread_name_prefix="stop") as pool:
            for stopping in [pool.submit(part.stop) for part in parts]:
                stopping.result()

    def wait(self) -> None:
        """Wait for in-flight requests, then delete the agent's own event queue
        (:func:`agent.rpc.delete_own_event_queue`) and close the transports."""
        for part in (self.server, *self.listeners):
            if part is not None:
                part.wait()
        # Casts queued for a committer were acknowledged by the broker.
        if not transactions.drain_deferred(self.conf.graceful_shutdown_timeout):
            LOG.error("Casts still waiting for their commit after %ss; they are lost",
                      self.conf.graceful_shutdown_timeout)
        if self.runtime is not None:
            # Every committed change is announced before the transports close.
            self.runtime.notifications.close(self.conf.graceful_shutdown_timeout)
            self.runtime.close()
        if self.listeners:
            rpc.delete_own_event_queue(self.conf.host)
        rpc.cleanup()
        db_api.dispose()
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
