"""Connections: calling a backend's driver and keeping its initiator data.

:class:`ConnectionManager` serves ``initialize_connection`` and
``terminate_connection`` (SPEC §3.1). For an attach it reads the
initiator's rows only when the driver asks for them, calls the driver,
applies the driver's initiator update in the request's transaction and
strips the update from the reply. A driver failure rolls the whole request
back, so the table is left as it was; a driver that lost a race raises
:class:`~agent.drivers.base.RetryRequest` and the dispatch boundary runs
the request again in a fresh transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import exception
from agent.connections import initiator_data
from agent.connections.backends import Backend
from agent.connections.updates import InitiatorUpdate, pop_update
from agent.drivers.base import DriverRequest, RetryRequest, SecretStore
from db import api as db_api

LOG = logging.getLogger(__name__)

T = TypeVar("T")

# How long one attach keeps starting afresh for a driver that lost a race
# (seconds, well below callers' RPC timeout).
RETRY_DEADLINE = 15.0


@dataclass(frozen=True)
class Attached:
    """A volume attached to a connector: the reply and what the event names.

    :ivar info: the connection info for the caller, without initiator update.
    :ivar update: the driver's initiator update, applied; None when none.
    """

    info: dict[str, Any]
    volume_id: str
    backend: str
    namespace: str
    initiator: str | None
    host: str | None
    update: InitiatorUpdate | None

    def payload(self) -> dict[str, Any]:
        """Return the ``connection.initialize`` payload (key names, no values)."""
        update = self.update or InitiatorUpdate()
        return {"volume_id": self.volume_id, "backend": self.backend,
                "namespace": self.namespace, "initiator": self.initiator,
                "host": self.host, "driver_volume_type": self.info["driver_volume_type"],
                "initiator_keys_set": update.keys_set(),
                "initiator_keys_removed": update.keys_removed()}


@dataclass(frozen=True)
class Detached:
    """A volume detached from a connector."""

    volume_id: str
    backend: str
    namespace: str
    initiator: str | None
    host: str | None
    force: bool

    def payload(self) -> dict[str, Any]:
        """Return the ``connection.terminate`` payload."""
        return {"volume_id": self.volume_id, "backend": self.backend,
                "namespace": self.namespace, "initiator": self.initiator,
                "host": self.host, "force": self.force}


class ConnectionManager:
    """The enabled backends and what the agent does around their drivers.

    :param backends: ``{name: Backend}`` from
        :func:`agent.connections.backends.load_backends`.
    :param secrets: the agent's secret store, handed to the drivers (None:
        drivers that need one fail with a named error).
    """

    def __init__(self, backends: dict[str, Backend], secrets: SecretStore | None) -> None:
        self.backends = backends
        self.secrets = secrets

    def backend(self, name: str | None) -> Backend:
        """Return the backend called ``name``, or the only one for None.

        :raises BackendNotFound: when no such backend is enabled.
        :raises InvalidInput: when ``name`` is None and several are enabled.
        """
        if name is None:
            if len(self.backends) == 1:
                return next(iter(self.backends.values()))
            if not self.backends:
                raise exception.BackendNotFound(backend="(none enabled)")
            raise exception.InvalidInput(
                field="backend", reason="required when more than one backend is enabled")
        try:
            return self.backends[name]
        except KeyError:
            raise exception.BackendNotFound(backend=name[:255]) from None

    def own_keys(self, namespace: str) -> frozenset[str]:
        """Return the initiator data keys that the drivers of ``namespace`` write themselves."""
        keys: frozenset[str] = frozenset()
        for backend in self.backends.values():
            if backend.namespace == namespace:
                keys |= backend.driver.own_initiator_keys
        return keys

    def _driver_request(self, session: Session, backend: Backend,
                        project_id: str | None) -> DriverRequest:
        return DriverRequest(
            session=session, secrets=self.secrets, backend=backend.name,
            namespace=backend.namespace, project_id=project_id,
            read_initiator_data=lambda initiator: initiator_data.read(
                session, initiator, backend.namespace))

    @staticmethod
    def _call_driver(backend: Backend, operation: str, func: Callable[..., T],
                     *args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except RetryRequest as retry:
            retry.give_up = exception.VolumeDriverError(
                backend=backend.name, reason="concurrent requests kept conflicting")
            raise
        except (exception.CustosException, sa_exc.DBAPIError, db_api.WriteNeeded):
            raise
        except Exception as error:  # noqa: BLE001 - any driver bug becomes a named error
            # Only the class: a driver handles secret material, and an
            # exception's message or traceback can quote it (the text of a
            # UnicodeDecodeError carries the bytes it failed on).
            LOG.error("Volume driver of backend %s failed in %s: %s",
                      backend.name, operation, type(error).__name__)
            raise exception.VolumeDriverError(backend=backend.name,
                                              reason=type(error).__name__) from None

    def initialize_connection(self, session: Session, ctx: Any, volume: dict[str, Any],
                              connector: dict[str, Any], backend_name: str | None) -> Attached:
        """Attach ``volume`` to ``connector`` in the request's transaction.

        :returns: the attachment; its connection info holds no initiator
            update any more.
        :raises BackendNotFound, InvalidInput: for a bad ``backend``.
        :raises InvalidDriverUpdate: for a malformed update from the driver.
        :raises VolumeDriverError: when the driver fails.
        :raises RetryRequest: when the driver lost a race; run the request
            again in a fresh transaction (its ``give_up`` is the error for
            the caller once that has gone on too long).
        """
        backend = self.backend(backend_name)
        initiator: str | None = connector.get("initiator")
        data = None
        request = self._driver_request(session, backend, ctx.project_id)
        if backend.driver.uses_initiator_data and initiator:
            usage_type = backend.driver.attach_secret_usage_type
            if usage_type is not None and self.secrets is not None:
                data, secret = initiator_data.read_with_driver_secret(
                    session, initiator, backend.namespace, usage_type)
                request.prefetched[(usage_type, initiator)] = secret
            else:
                data = initiator_data.read(session, initiator, backend.namespace)
        info = self._call_driver(backend, "initialize_connection",
                                 backend.driver.initialize_connection,
                                 volume, connector, data, request)
        if not isinstance(info, dict):
            raise exception.VolumeDriverError(backend=backend.name,
                                              reason="connection info is not an object")
        update = pop_update(info, backend.name)
        if update:
            if not initiator:
                raise exception.InvalidDriverUpdate(
                    backend=backend.name, reason="the connector names no initiator")
            initiator_data.update(session, initiator, backend.namespace,
                                  update.set_values, update.remove_values)
        if not isinstance(info.get("driver_volume_type"), str) or not isinstance(
                info.get("data"), dict):
            raise exception.VolumeDriverError(
                backend=backend.name, reason="connection info lacks driver_volume_type or data")
        return Attached(info=info, volume_id=volume["id"], backend=backend.name,
                        namespace=backend.namespace, initiator=initiator,
                        host=connector.get("host"), update=update or None)

    def terminate_connection(self, session: Session, ctx: Any, volume: dict[str, Any],
                             connector: dict[str, Any], backend_name: str | None,
                             force: bool) -> Detached:
        """Detach ``volume`` from ``connector`` in the request's transaction.

        :returns: what was detached.
        :raises BackendNotFound, InvalidInput: for a bad ``backend``.
        :raises VolumeDriverError: when the driver fails.
        """
        backend = self.backend(backend_name)
        request = self._driver_request(session, backend, ctx.project_id)
        self._call_driver(backend, "terminate_connection", backend.driver.terminate_connection,
                          volume, connector, request, force=force)
        return Detached(volume_id=volume["id"], backend=backend.name,
                        namespace=backend.namespace, initiator=connector.get("initiator"),
                        host=connector.get("host"), force=force)
