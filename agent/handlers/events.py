"""Notification listener endpoints: events the agent acts on (SPEC §3.6).

Nova announces a deleted instance as ``compute.instance.delete.end``
(legacy, topic ``notifications``) and ``instance.delete.end`` (versioned,
topic ``versioned_notifications``) on exchange ``nova``; Cinder announces a
deleted volume as ``volume.delete.end`` on exchange ``cinder``.  The agent
consumes every exchange and topic of ``[events]`` twice:

* in the pool every agent shares (:func:`build`), so each event reaches
  one agent, which purges the database once: boot roles, glance metadata,
  generated volume secrets;
* in a pool of its own (:func:`build_memory`), so every agent forgets what
  only its memory holds: cached vendordata answers, ephemeral secrets it
  generated for the volume.

A database endpoint answers ``HANDLED`` once its purge has committed, and
the listener acknowledges the event only then; it answers ``REQUEUE`` when
the database is unreachable or keeps deadlocking, and nothing else: a
payload naming no resource, or a database error that would recur, is
logged once and dropped.  :mod:`agent.events.dispatcher` drops what cannot
be read at all and bounds the redeliveries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import oslo_messaging as messaging
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import context, exception, metrics, validation
from agent.events import payloads, purge
from db import api as db_api

if TYPE_CHECKING:
    from agent.runtime import Runtime

LOG = logging.getLogger(__name__)

T = TypeVar("T")

HANDLED = messaging.NotificationResult.HANDLED
REQUEUE = messaging.NotificationResult.REQUEUE

INSTANCE_DELETED = messaging.NotificationFilter(
    event_type=r"^(compute\.)?instance\.delete\.end$")
VOLUME_DELETED = messaging.NotificationFilter(event_type=r"^volume\.delete\.end$")


class _Requeue(Exception):
    """The purge failed for a reason that may pass: take the event again."""


class _Drop(Exception):
    """The purge failed for a reason that will not pass: forget the event."""


def _resource_uuid(payload: Any, key: str, event_type: str, publisher_id: str,
                   quiet: bool = False) -> str | None:
    """Return the payload's resource id as a canonical UUID, or None.

    Canonical (lowercase) because that is how custos stores ids; an event
    naming no valid UUID is logged and dropped, since requeueing it could
    never succeed.

    :param quiet: do not log; the shared pool's endpoint logs it once.
    """
    try:
        return validation.uuid(key, payloads.resource_id(payload, key))
    except exception.InvalidInput:
        if not quiet:
            LOG.warning("Dropped %s from %s: it names no %s UUID",
                        event_type, str(publisher_id)[:80], key.split("_")[0])
        return None


def _commit(event_type: str, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction.

    :raises _Requeue: the database is unreachable or kept deadlocking.
    :raises _Drop: the database refused the purge for good.
    """
    try:
        return db_api.run_in_transaction(work)
    except exception.DatabaseUnavailable:
        LOG.warning("Could not handle %s: %s; requeued", event_type,
                    exception.DatabaseUnavailable.code)
        raise _Requeue() from None
    except sa_exc.DBAPIError as error:
        LOG.error("Dropped %s: the database refused its purge (%s)", event_type,
                  type(error.orig).__name__)
        raise _Drop() from None


class InstanceDeleteEndpoint:
    """A deleted instance: forget its boot roles (database, once per event)."""

    filter_rule = INSTANCE_DELETED

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> str:
        """Purge the deleted instance; return ``REQUEUE`` on a transient failure."""
        instance_uuid = _resource_uuid(payload, "instance_id", event_type, publisher_id)
        if instance_uuid is None:
            return HANDLED
        try:
            rows = _commit(event_type, lambda s: purge.purge_instance(s, instance_uuid))
        except _Requeue:
            return REQUEUE
        except _Drop:
            return HANDLED
        metrics.PURGED["boot_roles"].inc(rows)
        LOG.info("Instance %s deleted: purged %d boot roles row(s)", instance_uuid, rows)
        return HANDLED


class VolumeDeleteEndpoint:
    """A deleted volume: forget its glance metadata and generated secrets."""

    filter_rule = VOLUME_DELETED

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> str:
        """Purge the deleted volume; return ``REQUEUE`` on a transient failure."""
        volume_id = _resource_uuid(payload, "volume_id", event_type, publisher_id)
        if volume_id is None:
            return HANDLED
        try:
            removed = _commit(event_type, lambda s: purge.purge_volume(s, volume_id))
        except _Requeue:
            return REQUEUE
        except _Drop:
            return HANDLED
        self.runtime.send_notifications(
            context.get_admin_context(),
            [("secret.undefine", {**secret, "reason": event_type}, "info")
             for secret in removed.secrets])
        metrics.PURGED["glance_metadata"].inc(len(removed.glance_keys))
        metrics.PURGED["generated_secrets"].inc(len(removed.secrets))
        LOG.info("Volume %s deleted: purged %d glance metadata key(s) and "
                 "%d generated secret(s)", volume_id,
                 len(removed.glance_keys), len(removed.secrets))
        return HANDLED


class InstanceMemoryEndpoint:
    """A deleted instance: drop this agent's cached vendordata answers."""

    filter_rule = INSTANCE_DELETED

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> str:
        """Forget the instance's cached answers; always ``HANDLED``."""
        instance_uuid = _resource_uuid(payload, "instance_id", event_type, publisher_id,
                                       quiet=True)
        if instance_uuid is None:
            return HANDLED
        cached = self.runtime.vendordata.forget_instance(instance_uuid)
        metrics.PURGED["vendordata_cache"].inc(cached)
        if cached:
            LOG.info("Instance %s deleted: dropped %d cached vendordata answer(s)",
                     instance_uuid, cached)
        return HANDLED


class VolumeMemoryEndpoint:
    """A deleted volume: undefine the ephemeral secrets this agent generated for it."""

    filter_rule = VOLUME_DELETED

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> str:
        """Forget the volume's generated ephemeral secrets; always ``HANDLED``."""
        volume_id = _resource_uuid(payload, "volume_id", event_type, publisher_id,
                                   quiet=True)
        if volume_id is None:
            return HANDLED
        # Ephemeral secrets are announced nowhere, so neither is their end.
        forgotten = self.runtime.secrets.forget_generated_ephemeral(purge.VOLUME_USAGE,
                                                                    volume_id)
        metrics.PURGED["ephemeral_secrets"].inc(forgotten)
        if forgotten:
            LOG.info("Volume %s deleted: undefined %d generated ephemeral secret(s)",
                     volume_id, forgotten)
        return HANDLED


def build(runtime: Runtime) -> list[Any]:
    """Return the endpoints of the shared listener pool (database purges)."""
    return [InstanceDeleteEndpoint(runtime), VolumeDeleteEndpoint(runtime)]


def build_memory(runtime: Runtime) -> list[Any]:
    """Return the endpoints of this agent's own listener pool (memory purges)."""
    return [InstanceMemoryEndpoint(runtime), VolumeMemoryEndpoint(runtime)]
