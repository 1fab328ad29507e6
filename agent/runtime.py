"""What every endpoint of one agent shares: :class:`Runtime`, built by :func:`build_runtime`.

The parts are built in order, each may use those before it: the master
key ring, the secret store, the volume backends (whose drivers use the
secret store), the backup store, the vendordata lookup, the key store,
and the authenticator that turns a request's tokens into an identity.
The dispatch boundary and the handlers read a runtime; only
:mod:`agent.service` builds one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oslo_config import cfg

from agent import exception
from agent.answers import AnswerBook
from agent.backups import store as backup_store
from agent.backups.store import BackupStore
from agent.connections.backends import load_backends
from agent.connections.manager import ConnectionManager
from agent.identity import tokenless
from agent.identity.authenticator import Authenticator
from agent.keystore import masterkey
from agent.keys.store import KeyStore
from agent.notifier import NotificationSender
from agent.secrets.ephemeral import EphemeralSecretStore
from agent.secrets.store import SecretStore
from agent.vendordata.lookup import VendordataLookup

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
    :ivar identity: turns each request's tokens into the identity the
        policy sees (:mod:`agent.identity`); built from ``conf`` when not
        given.
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
    identity: Authenticator | None = None
    started_at: float = field(default_factory=time.monotonic)
    notifications: NotificationSender = field(init=False)
    answers: AnswerBook = field(init=False)

    def __post_init__(self) -> None:
        self.host = self.host or self.conf.host
        self.notifications = NotificationSender(lambda: self.notifier)
        self.answers = AnswerBook(self.conf.remember_answers_seconds)
        if self.identity is None:
            counter = tokenless.TokenlessCounter(tokenless.path(self.conf.state_path))
            self.identity = Authenticator(self.conf, tokenless_counter=counter)

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
        if self.identity is not None:
            self.identity.tokenless.flush()


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
