"""RPC endpoint: Boot roles and dynamic vendordata (SPEC §3.5)."""

from __future__ import annotations

import logging
from typing import Any

from agent import exception, transactions, validation
from agent.dispatch import Endpoint, Request, rpc_method
from agent.vendordata import bootroles, lookup

LOG = logging.getLogger(__name__)

FETCH_ERROR = "vendordata.fetch.error"


class VendordataEndpoint(Endpoint):
    """Boot roles and dynamic vendordata (SPEC §3.5).

    Works on the agent's :class:`~agent.vendordata.lookup.VendordataLookup`
    (``runtime.vendordata``), whose cache the notification listener purges
    when an instance is deleted.
    """

    @property
    def vendordata(self) -> lookup.VendordataLookup:
        return self.runtime.vendordata

    @rpc_method(transactions.Grouped())
    def instance_boot_roles_set(self, request: Request, instance_uuid: Any,
                                roles: Any = None) -> None:
        """Record the roles an instance booted with, once.

        :param instance_uuid: the instance.
        :param roles: list of role names; None stores the user roles of the
            request context.
        :returns: None; a later call for the same instance changes nothing.
        :raises agent.exception.InvalidInput: naming ``instance_uuid`` or
            ``roles``.
        """
        instance_uuid = validation.uuid("instance_uuid", instance_uuid)
        checked = validation.string_list("roles", roles, nullable=True, max_items=100)
        if checked is None:
            checked = list(request.context.roles or [])
        bootroles.store_once(request.session, instance_uuid, checked,
                             request.context.project_id)
        LOG.debug("Boot roles of instance %s recorded unless already kept",
                  instance_uuid)

    @rpc_method(transactions.NO_TRANSACTION)
    def vendordata_get(self, request: Request, instance: Any) -> dict[str, Any]:
        """Return the dynamic vendordata of an instance.

        Runs without a request transaction: a fully cached answer needs no
        database, and no connection is held while targets are asked; the
        boot roles are read in a short transaction of their own. A failed
        target is announced (``vendordata.fetch.error``) whether or not the
        call then fails.

        :param instance: dict with ``uuid``, ``project_id``, ``image_id``,
            ``hostname``, ``user_data``, ``metadata``.
        :returns: ``{target_name: answer}`` for every target that answered
            well; an answer is any JSON value, as the target sent it.
        :raises agent.exception.InvalidInput: naming the bad field.
        :raises agent.exception.VendordataFetchFailed: when a target failed
            and ``[vendordata] failure_fatal`` is set.
        :raises agent.exception.DatabaseUnavailable: when the boot roles
            cannot be read.
        """
        checked = lookup.validate_instance(instance)
        instance_uuid = checked["uuid"]

        def load_roles() -> list[str] | None:
            return request.run_in_transaction(
                lambda session: bootroles.load(session, instance_uuid))

        outcome = self.vendordata.lookup(checked, load_roles)
        for failure in outcome.failures:
            request.notify(FETCH_ERROR, {
                "instance_uuid": instance_uuid,
                "project_id": checked["project_id"],
                "target": failure.target,
                "reason": failure.reason,
                "status": failure.status,
                "fatal": self.vendordata.failure_fatal,
            }, priority="error", even_on_failure=True)
        if outcome.failures and self.vendordata.failure_fatal:
            first = outcome.failures[0]
            reason = first.reason or "failed"
            if len(outcome.failures) > 1:
                others = ", ".join(f.target for f in outcome.failures[1:])
                reason = f"{reason} (also failed: {others})"
            raise exception.VendordataFetchFailed(target=first.target, reason=reason)
        return outcome.data
