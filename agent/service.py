"""The running agent: its shared runtime, RPC server and listener.

:class:`AgentService` starts in this order: database engine and schema
check, the shared :class:`Runtime` (master key, secret store, volume
backends, backup store, vendordata lookup, key store: :func:`build_runtime`), the
endpoints over it, the two event listeners
(:func:`agent.rpc.get_event_listeners`), then the RPC server on topic
``custos-agent``. :meth:`stop` stops taking
new messages; :meth:`wait` returns once in-flight requests have finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from sqlalchemy import exc as sa_exc

from agent import exception, rpc
from agent.answers import AnswerBook
from agent.dispatch import UnknownMethodEndpoint
from agent.backups import store as backup_store
from agent.backups.store import BackupStore
from agent.connections.backends import load_backends
from agent.connections.manager import ConnectionManager
from agent.events.grace import PurgeReaper
from agent.handlers import (build_endpoints, build_listener_endpoints,
                            build_memory_listener_endpoints)
from agent.keystore import keyset, masterkey, signing
from agent.keys.store import KeyStore
from agent.notifier import NotificationSender
from agent.secrets.ephemeral import EphemeralSecretStore
from agent.secrets.store import SecretStore
from agent.vendordata.lookup import VendordataLookup
from db import api as db_api
from db import migration

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What every endpoint of one agent shares, built by :func:`build_runtime`.

    Endpoints and the listener read these fields and never add to them; a
    new domain becomes a new field here and a new step of
    :func:`build_runtime`.

    :ivar conf: the agent's configuration.
    :ivar ring: the master key ring.
    :ivar secrets: the secret store (persistent and ephemeral secrets),
        also what the volume drivers use.
    :ivar connections: the enabled volume backends and their drivers.
    :ivar backups: the backup metadata document store.
    :ivar vendordata: the vendordata lookup (targets, fetcher, cache); the
        listener purges its cache.
    :ivar keys: the managed-key store that castellan callers reach.
    :ivar notifier: the notifier (:class:`agent.notifier.BrokerNotifier`),
        or None in tests that do not send notifications.
    :ivar host: the agent's name (its RPC server name).
    :ivar notifications: the sender that publishes notifications from its
        own thread, off the reply path.
    :ivar answers: the answers of remembered methods, kept so that a
        request delivered twice changes state once.
    """

    conf: cfg.ConfigOpts
    ring: masterkey.MasterKeyRing
    secrets: SecretStore
    connections: ConnectionManager
    backups: BackupStore
    vendordata: VendordataLookup
    keys: KeyStore
    notifier: Any = None
    host: str = ""
    started_at: float = field(default_factory=time.monotonic)
    notifications: NotificationSender = field(init=False)
    answers: AnswerBook = field(init=False)

    def __post_init__(self) -> None:
        self.host = self.host or self.conf.host
        self.notifications = NotificationSender(lambda: self.notifier)
        self.answers = AnswerBook(self.conf.remember_answers_seconds)

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

    def close(self) -> None:
        """Release what the parts hold beyond the process (fetcher threads)."""
        self.vendordata.close()


def build_runtime(conf: cfg.ConfigOpts, notifier: Any,
                  ring: masterkey.MasterKeyRing | None = None) -> Runtime:
    """Build the agent's parts in order: each may use those before it.

    The key ring is loaded when its key file exists; without one the agent
    still starts and secrets and backup signing fail until it is created.

    :param conf: the agent's configuration.
    :param notifier: where notifications go (None: nowhere).
    :param ring: the master key ring; the process's own when omitted.
    :returns: the runtime the endpoints share.
    :raises ConfigurationError: a bad backend section, backup store or
        vendordata option, which stops start-up.
    :raises MasterKeyPermissions: the key file is open to group or others;
        the agent refuses to start on it.
    """
    ring = ring or masterkey.get_ring()
    try:
        ring.load()
    except exception.MasterKeyUnavailable as error:
        LOG.warning("%s; secrets and backup signing will fail until it is "
                    "created with 'custos-manage keys init'", error.msg)
    secrets = SecretStore(ring, EphemeralSecretStore.from_conf(conf))
    # The drivers get the secret store, so it is built before them.
    connections = ConnectionManager(load_backends(conf), secrets)
    backups = backup_store.from_conf(conf)
    vendordata = VendordataLookup(conf)
    keys = KeyStore(ring)
    return Runtime(conf=conf, ring=ring, secrets=secrets, connections=connections,
                   backups=backups, vendordata=vendordata, keys=keys, notifier=notifier)


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

    def start(self) -> None:
        """Start serving.

        :raises CustosException: on a configuration or schema problem that
            makes serving pointless (unmigrated database, bad backend).
        """
        db_api.configure()
        check_schema()
        rpc.init(self.conf)
        runtime = build_runtime(self.conf, rpc.get_notifier(self.conf.host))
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
        self.server = rpc.get_rpc_server(self.conf.host, endpoints)
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
        if self.runtime is not None:
            # Every committed change is announced before the transports close.
            self.runtime.notifications.close(self.conf.graceful_shutdown_timeout)
            self.runtime.close()
        if self.listeners:
            rpc.delete_own_event_queue(self.conf.host)
        rpc.cleanup()
        db_api.dispose()
