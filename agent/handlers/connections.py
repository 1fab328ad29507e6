"""RPC endpoint: Connections and driver initiator data (SPEC §3.1)."""

from __future__ import annotations

from typing import Any

from agent import exception, policy, transactions, validation
from agent.connections import initiator_data
from agent.connections.manager import RETRY_DEADLINE, ConnectionManager
from agent.connections.updates import InitiatorUpdate
from agent.dispatch import Endpoint, Request, rpc_method

MAX_OBJECT_ITEMS = 100


def _volume(value: Any) -> dict[str, Any]:
    volume = validation.mapping("volume", value, max_items=MAX_OBJECT_ITEMS)
    assert volume is not None
    clean = dict(volume)
    clean["id"] = validation.uuid("volume.id", volume.get("id"))
    if "project_id" in volume:
        validation.string("volume.project_id", volume["project_id"], nullable=True)
    return clean


def _connector(value: Any) -> dict[str, Any]:
    connector = validation.mapping("connector", value, max_items=MAX_OBJECT_ITEMS)
    assert connector is not None
    for name in ("initiator", "host"):
        validation.string(f"connector.{name}", connector.get(name), nullable=True)
    return dict(connector)


class ConnectionEndpoint(Endpoint):
    """Connections and driver initiator data (SPEC §3.1).

    Works on the agent's :class:`ConnectionManager` (``runtime.connections``).
    """

    @property
    def connections(self) -> ConnectionManager:
        return self.runtime.connections

    def _authorize_volume(self, request: Request, method: str, volume: dict[str, Any]) -> None:
        # The method rule ran on the caller's project; a volume that names
        # its own project must belong to a project the caller operates.
        project_id = volume.get("project_id")
        if project_id and project_id != request.context.project_id:
            policy.authorize(request.context, method, {"project_id": project_id})

    @rpc_method(transactions.ReadFirst(retry_deadline=RETRY_DEADLINE), quick=True)
    def initialize_connection(self, request: Request, volume: Any, connector: Any,
                              backend: Any = None) -> dict[str, Any]:
        """Return ``connection_info`` for ``volume`` on ``connector``.

        An attach of an initiator that has its credentials only reads, so
        it runs without a write transaction; one that creates or rotates
        them runs again in one as soon as it tries to write. A driver that
        lost a race to a concurrent attach has the request run again in a
        fresh transaction, for up to ``RETRY_DEADLINE`` seconds.
        """
        volume = _volume(volume)
        connector = _connector(connector)
        backend = validation.string("backend", backend, nullable=True)
        self._authorize_volume(request, "initialize_connection", volume)
        attached = self.connections.initialize_connection(
            request.session, request.context, volume, connector, backend)
        request.notify("connection.initialize", attached.payload())
        if attached.update:
            request.notify("initiator_data.update",
                           attached.update.payload(attached.initiator, attached.namespace))
        return attached.info

    @rpc_method()
    def terminate_connection(self, request: Request, volume: Any, connector: Any,
                             backend: Any = None, force: Any = False) -> None:
        """Detach ``volume`` from ``connector``."""
        volume = _volume(volume)
        connector = _connector(connector)
        backend = validation.string("backend", backend, nullable=True)
        force = validation.boolean("force", force)
        self._authorize_volume(request, "terminate_connection", volume)
        detached = self.connections.terminate_connection(
            request.session, request.context, volume, connector, backend, bool(force))
        request.notify("connection.terminate", detached.payload())

    @rpc_method(transactions.READ_ONLY, quick=True)
    def initiator_data_get(self, request: Request, initiator: Any,
                           namespace: Any) -> dict[str, str]:
        """Return an initiator's ``{key: value}`` in ``namespace``."""
        initiator = validation.required_string("initiator", initiator)
        namespace = validation.required_string("namespace", namespace)
        return initiator_data.read(request.session, initiator, namespace)

    @rpc_method()
    def initiator_data_update(self, request: Request, initiator: Any, namespace: Any,
                              set_values: Any = None, remove_values: Any = None) -> None:
        """Set and remove keys of an initiator's data in ``namespace``."""
        initiator = validation.required_string("initiator", initiator)
        namespace = validation.required_string("namespace", namespace)
        values = validation.string_map("set_values", set_values, nullable=True) or {}
        removals = validation.string_list("remove_values", remove_values, nullable=True) or []
        if set(values) & set(removals):
            raise exception.InvalidInput(field="remove_values",
                                          reason="names keys that set_values also sets")
        own = self.connections.own_keys(namespace)
        for field, keys in (("set_values", values), ("remove_values", removals)):
            taken = sorted(set(keys) & own)
            if taken:
                raise exception.InvalidInput(
                    field=f"{field}.{taken[0]}",
                    reason="the namespace's volume driver keeps this key for itself")
        if not values and not removals:
            return
        initiator_data.update(request.session, initiator, namespace, values, removals)
        request.notify("initiator_data.update",
                       InitiatorUpdate(values, removals).payload(initiator, namespace))
