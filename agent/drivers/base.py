"""What a volume driver is to custos, and what it may use during a call.

A driver is a plugin (entry point group ``custos.volume_drivers``); the
agent makes one instance per backend section named in ``[DEFAULT]
enabled_backends``. For each request the agent hands it a
:class:`DriverRequest`: the request's database session and the agent's
secret store, so a driver's writes commit or roll back with the request.

A driver never writes the ``driver_initiator_data`` table itself: it
returns ``initiator_updates`` in its connection info and the agent applies
them in the request's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from oslo_config import cfg
from sqlalchemy.orm import Session

from agent import exception


class SecretStore(Protocol):
    """The part of the secret store that drivers use (SPEC §3.1, §3.2).

    A driver's secrets belong to its namespace and to no project: they are
    found by (namespace, usage type, usage id) only, and no ``secret_*``
    RPC method reaches them.
    """

    def create_driver_secret(self, session: Session, *, namespace: str, usage_type: str,
                             usage_id: str, value: bytes,
                             description: str | None = None) -> str: ...

    def driver_secret(self, session: Session, *, namespace: str, usage_type: str,
                      usage_id: str) -> tuple[str, bytes] | None: ...

    def open_driver_secret(self, row: Any) -> tuple[str, bytes] | None: ...

    def delete_driver_secret(self, session: Session, *, namespace: str, uuid: str) -> None: ...


class RetryRequest(Exception):
    """Raised by a driver that lost a race it cannot see the end of.

    The typical case is a unique secret usage taken by a concurrent request
    whose committed rows this transaction's snapshot does not show (MariaDB
    REPEATABLE READ). The agent rolls the request back and runs it again in
    a fresh transaction, which sees the winner's rows. It never reaches a
    caller.

    :ivar give_up: the named error the caller gets when the request still
        conflicts at the agent's deadline; the agent sets it where it
        calls the driver.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.give_up: Exception | None = None


@dataclass
class DriverRequest:
    """What a driver may use while it serves one RPC request.

    :ivar session: the request's session; everything done with it commits
        or rolls back with the request.
    :ivar secrets: the agent's secret store, or None when the agent has none.
    :ivar backend: the backend section name.
    :ivar namespace: the backend's initiator data namespace.
    :ivar project_id: the project of the request context.
    :ivar read_initiator_data: ``f(initiator) -> {key: value}``, a fresh
        read of the initiator's rows in this namespace.
    :ivar prefetched: driver secret rows the agent read with the
        initiator's data, by ``(usage_type, usage_id)``; each is used once
        by :meth:`driver_secret`.
    """

    session: Session
    secrets: SecretStore | None
    backend: str
    namespace: str
    project_id: str | None
    read_initiator_data: Callable[[str], dict[str, str]]
    prefetched: dict[tuple[str, str], Any] = field(default_factory=dict)

    def driver_secret(self, usage_type: str, usage_id: str) -> tuple[str, bytes] | None:
        """Return ``(uuid, value)`` of the driver's secret of this usage, or None.

        The row read with the initiator's data when the agent has it
        (:attr:`VolumeDriver.attach_secret_usage_type`), else a fresh read;
        after a change to the secret, a second call reads afresh.

        :raises VolumeDriverError: the agent has no secret store.
        :raises DecryptionFailed: the stored value failed its integrity check.
        """
        if self.secrets is None:
            raise exception.VolumeDriverError(backend=self.backend,
                                              reason="no secret store is available")
        key = (usage_type, usage_id)
        if key in self.prefetched:
            return self.secrets.open_driver_secret(self.prefetched.pop(key))
        return self.secrets.driver_secret(self.session, namespace=self.namespace,
                                          usage_type=usage_type, usage_id=usage_id)


class VolumeDriver:
    """Base class of custos volume drivers.

    :param backend: the name of the backend section this instance serves.
    :param options: that section's options (an oslo.config group), with
        :meth:`driver_opts` registered.
    :raises ConfigurationError: from a subclass whose options are wrong.
    """

    #: True when :meth:`initialize_connection` wants the initiator's rows;
    #: a driver that leaves it False costs no query.
    uses_initiator_data: ClassVar[bool] = False

    #: Initiator data keys only the driver itself writes (through the
    #: update it returns); ``initiator_data_update`` refuses them.
    own_initiator_keys: ClassVar[frozenset[str]] = frozenset()

    #: The usage type of the driver secret an attach reads, whose usage id
    #: is the initiator: the agent reads it with the initiator's data, in
    #: one statement, for :meth:`DriverRequest.driver_secret`. None: no
    #: such secret.
    attach_secret_usage_type: ClassVar[str | None] = None

    def __init__(self, backend: str, options: Any) -> None:
        self.backend = backend
        self.options = options

    @classmethod
    def driver_opts(cls) -> list[cfg.Opt]:
        """Return the options this driver reads from its backend section."""
        return []

    def initialize_connection(self, volume: dict[str, Any], connector: dict[str, Any],
                              initiator_data: dict[str, str] | None,
                              request: DriverRequest) -> dict[str, Any]:
        """Make ``volume`` reachable from ``connector``.

        :param volume: the volume, at least ``{"id": ...}``.
        :param connector: the host's connector (``initiator``, ``host``...).
        :param initiator_data: the initiator's rows in this backend's
            namespace when :attr:`uses_initiator_data` is True and the
            connector names an initiator, else None.
        :param request: the session and store of this request.
        :returns: connection info, ``{"driver_volume_type", "data"}``, and
            optionally ``initiator_updates`` = ``{"set_values": {...},
            "remove_values": [...]}`` for the agent to apply.
        :raises CustosException: for a failure the caller should see as is.
        :raises RetryRequest: to have the request run again afresh.
        """
        raise NotImplementedError

    def terminate_connection(self, volume: dict[str, Any], connector: dict[str, Any],
                             request: DriverRequest, force: bool = False) -> None:
        """Undo :meth:`initialize_connection`; the default has nothing to undo.

        :raises CustosException: for a failure the caller should see as is.
        """
        return None
