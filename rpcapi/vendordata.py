"""Client methods for boot roles and dynamic vendordata."""

from __future__ import annotations

from typing import Any

from rpcapi.base import BaseAPI


class VendordataAPI(BaseAPI):
    """Methods for boot roles and dynamic vendordata."""

    def instance_boot_roles_set(self, ctxt: Any, instance_uuid: str,
                                roles: list[str] | None = None, wait: bool = False,
                                server: str | None = None) -> None:
        """Record the roles an instance boots with (cast).

        The first roles recorded for an instance stay; later calls change
        nothing.

        :param instance_uuid: the instance.
        :param roles: role names; None records the user roles of ``ctxt``.
        :param wait: make it a call that returns once the roles are stored.
        :returns: None.
        :raises agent.exception.InvalidInput: (with ``wait``) naming the
            bad argument.
        :raises agent.exception.Forbidden: (with ``wait``) without a
            service role or admin.
        """
        return self._cast(ctxt, "instance_boot_roles_set", wait=wait, server=server,
                          instance_uuid=instance_uuid, roles=roles)

    def vendordata_get(self, ctxt: Any, instance: dict[str, Any],
                       server: str | None = None) -> dict[str, Any]:
        """Ask the agent for an instance's dynamic vendordata.

        :param instance: ``{uuid, project_id, image_id, hostname,
            user_data, metadata}``; ``uuid`` and ``project_id`` required.
        :returns: ``{target_name: json_object}``; a failed target is left
            out (and reported in a ``vendordata.fetch.error`` notification).
        :raises agent.exception.VendordataFetchFailed: when a target failed
            and the agent runs with ``[vendordata] failure_fatal``.
        :raises agent.exception.InvalidInput: naming the bad field.
        :raises agent.exception.Forbidden: without a service role or admin.
        """
        return self._call(ctxt, "vendordata_get", server=server, instance=instance)
