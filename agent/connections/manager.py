"""Connections: calling a backend's driver and keeping its initiator data.

:class:`ConnectionManager` serves ``initialize_connection`` and
``terminate_connection`` (SPEC §3.1). For an attach it reads the
initiator's rows only when the driver asks for them, calls the driver,
applies the driver's initiator update in the same transaction, strips the
update from the reply and only then answers. A driver failure rolls the
whole request back, so the table is left as it was.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import exception
from agent.connections import initiator_data
from agent.connections.backends import Backend
from agent.connections.updates import InitiatorUpdate, pop_update
from agent.drivers.base import DriverRequest, RetryRequest
from db import api as db_api

LOG = logging.getLogger(__name__)

T = TypeVar("T")

# How long one attach keeps starting afresh for a driver that lost a race
# (seconds, well below callers' RPC timeout), and the pauses in between.
RETRY_DEADLINE = 15.0
FIRST_PAUSE = 0.01
MAX_PAUSE = 0.25

Notification = tuple[str, dict[str, Any], str]


class ConnectionManager:
    """The enabled backends and what the agent does around their drivers.

    :param backends: ``{name: Backend}`` from
        :func:`agent.connections.backends.load_backends`.
    :param secrets: a callable returning the agent's secret store (or
        None), looked up per request since the store may be set late.
    """

    def __init__(self, backends: dict[str, Backend],
                 secrets: Callable[[], Any]) -> None:
        self.backends = backends
        self._secrets = secrets

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
            session=session, secrets=self._secrets(), backend=backend.name,
            namespace=backend.namespace, project_id=project_id,
            read_initiator_data=lambda initiator: initiator_data.read(
                session, initiator, backend.namespace))

    @staticmethod
    def _call_driver(backend: Backend, operation: str, func: Callable[..., T],
                     *args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except (exception.CustosException, RetryRequest, sa_exc.DBAPIError):
            raise
        except Exception as error:  # noqa: BLE001 - any driver bug becomes a named error
            # Only the class: a driver handles secret material, and an
            # exception's message or traceback can quote it (the text of a
            # UnicodeDecodeError carries the bytes it failed on).
            LOG.error("Volume driver of backend %s failed in %s: %s",
                      backend.name, operation, type(error).__name__)
            raise exception.VolumeDriverError(backend=backend.name,
                                              reason=type(error).__name__) from None

    def initialize_connection(self, ctx: Any, volume: dict[str, Any], connector: dict[str, Any],
                              backend_name: str | None) -> tuple[dict[str, Any], list[Notification]]:
        """Attach ``volume`` to ``connector`` through a backend's driver.

        Runs in its own transactions: a driver that raises
        :class:`RetryRequest` gets a fresh one, for up to ``RETRY_DEADLINE``
        seconds.

        :returns: the connection info without any initiator update, and the
            notifications to send now that it has committed.
        :raises BackendNotFound, InvalidInput: for a bad ``backend``.
        :raises InvalidDriverUpdate: for a malformed update from the driver.
        :raises VolumeDriverError: when the driver fails.
        :raises DatabaseUnavailable: when the database stays out of reach.
        """
        backend = self.backend(backend_name)
        initiator: str | None = connector.get("initiator")

        def attach(session: Session) -> tuple[dict[str, Any], InitiatorUpdate | None]:
            data = None
            if backend.driver.uses_initiator_data and initiator:
                data = initiator_data.read(session, initiator, backend.namespace)
            request = self._driver_request(session, backend, ctx.project_id)
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
            return info, update

        deadline = time.monotonic() + RETRY_DEADLINE
        pause = FIRST_PAUSE
        while True:
            try:
                info, update = db_api.run_in_transaction(attach)
                break
            except RetryRequest:
                if time.monotonic() + pause > deadline:
                    raise exception.VolumeDriverError(
                        backend=backend.name,
                        reason="concurrent requests kept conflicting") from None
                LOG.debug("initialize_connection on backend %s lost a race; retrying",
                          backend.name)
                # The winner may not have committed yet (it may be another
                # request of this agent); back off with jitter until it has.
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, MAX_PAUSE)
        keys_set = sorted(update.set_values) if update else []
        keys_removed = sorted(update.remove_values) if update else []
        notifications: list[Notification] = [(
            "connection.initialize",
            {"volume_id": volume["id"], "backend": backend.name,
             "namespace": backend.namespace, "initiator": initiator,
             "host": connector.get("host"),
             "driver_volume_type": info["driver_volume_type"],
             "initiator_keys_set": keys_set, "initiator_keys_removed": keys_removed},
            "info")]
        if update:
            notifications.append(("initiator_data.update",
                                  {"initiator": initiator, "namespace": backend.namespace,
                                   "keys_set": keys_set, "keys_removed": keys_removed},
                                  "info"))
        return info, notifications

    def terminate_connection(self, session: Session, ctx: Any, volume: dict[str, Any],
                             connector: dict[str, Any], backend_name: str | None,
                             force: bool) -> Notification:
        """Detach ``volume`` from ``connector`` in the request's transaction.

        :returns: the notification to send after the commit.
        :raises BackendNotFound, InvalidInput: for a bad ``backend``.
        :raises VolumeDriverError: when the driver fails.
        """
        backend = self.backend(backend_name)
        request = self._driver_request(session, backend, ctx.project_id)
        self._call_driver(backend, "terminate_connection", backend.driver.terminate_connection,
                          volume, connector, request, force=force)
        return ("connection.terminate",
                {"volume_id": volume["id"], "backend": backend.name,
                 "namespace": backend.namespace, "initiator": connector.get("initiator"),
                 "host": connector.get("host"), "force": force},
                "info")
