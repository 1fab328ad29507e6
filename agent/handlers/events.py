"""Notification listener endpoints: events the agent acts on (SPEC §3.6).

The agent listens on topic ``notifications`` in pool ``custos-agent``, so
each event reaches one agent of the deployment.  An event is acknowledged
once its purge has committed; when the database cannot be reached the
endpoint asks for a requeue and the event comes back (to this or another
agent) later.  A payload that names no resource is logged and dropped:
requeueing it would only bring it back unchanged.

Vendordata caches are per agent (see :mod:`agent.vendordata.cache`), and
only the agent that receives ``instance.delete.end`` can purge its own.
The database state (boot roles) goes for every agent at once, and the
other agents' cached answers for the deleted instance simply expire
within their TTL (``[vendordata] cache_ttl`` or the target's
``max-age``).  Nothing asks for a deleted instance's vendordata, and a
UUID is never reused, so those entries are never served; they only hold
memory until they expire or are evicted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import oslo_messaging as messaging
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import context, exception, validation
from agent.events import payloads, purge
from db import api as db_api

LOG = logging.getLogger(__name__)

T = TypeVar("T")


class _PurgeEndpoint:
    """Runs one purge per event inside a transaction; requeues on failure."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def _commit(self, event_type: str, work: Callable[[Session], T]) -> T | None:
        try:
            return db_api.run_in_transaction(work)
        except (exception.DatabaseUnavailable, sa_exc.DBAPIError) as error:
            code = getattr(error, "code", None) or type(error).__name__
            LOG.warning("Could not handle %s (%s); requeued", event_type, code)
            return None

    @staticmethod
    def _resource_uuid(payload: Any, key: str, event_type: str,
                       publisher_id: str) -> str | None:
        """Return the payload's resource id as a canonical UUID, or None.

        Canonical (lowercase) because that is how custos stores ids; an
        event naming no valid UUID is logged and dropped, since requeueing
        it could never succeed.
        """
        try:
            return validation.uuid(key, payloads.resource_id(payload, key))
        except exception.InvalidInput:
            LOG.warning("Dropped %s from %s: it names no %s UUID",
                        event_type, publisher_id, key.split("_")[0])
            return None


class InstanceDeleteEndpoint(_PurgeEndpoint):
    """``instance.delete.end``: forget the instance's boot roles and cache."""

    filter_rule = messaging.NotificationFilter(event_type=r"^instance\.delete\.end$")

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> Any:
        """Purge the deleted instance; return REQUEUE when that failed."""
        instance_uuid = self._resource_uuid(payload, "instance_id", event_type,
                                            publisher_id)
        if instance_uuid is None:
            return messaging.NotificationResult.HANDLED
        rows = self._commit(event_type,
                            lambda s: purge.purge_instance(s, instance_uuid))
        if rows is None:
            return messaging.NotificationResult.REQUEUE
        cached = 0
        if self.runtime.vendordata is not None:
            cached = self.runtime.vendordata.forget_instance(instance_uuid)
        LOG.info("Instance %s deleted: purged %d boot roles row(s) and %d "
                 "cached vendordata answer(s)", instance_uuid, rows, cached)
        return messaging.NotificationResult.HANDLED


class VolumeDeleteEndpoint(_PurgeEndpoint):
    """``volume.delete.end``: forget glance metadata and generated secrets."""

    filter_rule = messaging.NotificationFilter(event_type=r"^volume\.delete\.end$")

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> Any:
        """Purge the deleted volume; return REQUEUE when that failed."""
        volume_id = self._resource_uuid(payload, "volume_id", event_type, publisher_id)
        if volume_id is None:
            return messaging.NotificationResult.HANDLED
        removed = self._commit(event_type,
                               lambda s: purge.purge_volume(s, volume_id))
        if removed is None:
            return messaging.NotificationResult.REQUEUE
        self.runtime.send_notifications(
            context.get_admin_context(),
            [("secret.undefine", {**secret, "reason": event_type}, "info")
             for secret in removed.secrets])
        LOG.info("Volume %s deleted: purged %d glance metadata key(s) and "
                 "%d generated secret(s)", volume_id[:64],
                 len(removed.glance_keys), len(removed.secrets))
        return messaging.NotificationResult.HANDLED


def build(runtime: Any) -> list[Any]:
    """Return the listener endpoints sharing ``runtime``."""
    return [InstanceDeleteEndpoint(runtime), VolumeDeleteEndpoint(runtime)]
