"""Client methods for connections and driver initiator data (SPEC §3.1)."""

from __future__ import annotations

from typing import Any

from rpcapi.base import BaseAPI


class ConnectionsAPI(BaseAPI):
    """Methods for connections and driver initiator data."""

    def initialize_connection(self, ctxt: Any, volume: dict[str, Any],
                              connector: dict[str, Any], backend: str | None = None,
                              server: str | None = None) -> dict[str, Any]:
        """Attach a volume to a host through a backend's driver.

        :param volume: the volume, at least ``{"id": <uuid>}``; a
            ``project_id`` in it must be one the caller operates.
        :param connector: the host's connector (``initiator``, ``host``...).
        :param backend: an enabled backend section; None: the only one.
        :returns: ``{"driver_volume_type": ..., "data": {...}}``; for the
            iscsi_chap driver ``data`` carries ``target_iqn``,
            ``target_portal``, ``target_lun``, ``target_discovered``,
            ``auth_method``, ``auth_username``, ``auth_password`` and
            ``access_mode``.
        :raises InvalidInput: for a malformed argument.
        :raises BackendNotFound: for an unknown backend.
        :raises InvalidDriverUpdate: when the driver returned a malformed
            initiator update (nothing was changed).
        :raises VolumeDriverError: when the driver failed (nothing was changed).
        :raises Forbidden: when policy does not allow it.
        """
        return self._call(ctxt, "initialize_connection", server=server, volume=volume,
                          connector=connector, backend=backend)

    def terminate_connection(self, ctxt: Any, volume: dict[str, Any],
                             connector: dict[str, Any], backend: str | None = None,
                             force: bool = False, server: str | None = None) -> None:
        """Detach a volume from a host.

        :returns: None.
        :raises InvalidInput, BackendNotFound, VolumeDriverError, Forbidden:
            as for :meth:`initialize_connection`.
        """
        return self._call(ctxt, "terminate_connection", server=server, volume=volume,
                          connector=connector, backend=backend, force=force)

    def initiator_data_get(self, ctxt: Any, initiator: str, namespace: str,
                           server: str | None = None) -> dict[str, str]:
        """Read a driver's private data for one initiator (admin only).

        :returns: ``{key: value}``, empty when there is none.
        :raises InvalidInput: for a malformed argument.
        :raises Forbidden: unless the caller is the administrator.
        """
        return self._call(ctxt, "initiator_data_get", server=server,
                          initiator=initiator, namespace=namespace)

    def initiator_data_update(self, ctxt: Any, initiator: str, namespace: str,
                              set_values: dict[str, str] | None = None,
                              remove_values: list[str] | None = None,
                              server: str | None = None) -> None:
        """Set and remove keys of one initiator's data, in one transaction.

        Needs both tokens: an operator role in the user token and a
        service role in the service token.

        :param set_values: keys to insert or replace (strings of at most 255).
        :param remove_values: keys to delete; absent keys are ignored.
        :returns: None.
        :raises InvalidInput: for a malformed argument or a key both set
            and removed.
        :raises Forbidden: without both tokens.
        """
        return self._call(ctxt, "initiator_data_update", server=server,
                          initiator=initiator, namespace=namespace,
                          set_values=set_values, remove_values=remove_values)
