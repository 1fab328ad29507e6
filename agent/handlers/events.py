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

An event is a claim, checked before anything is purged (SPEC §3.6, 1.2):
instance deletions count only from ``[events] instance_exchange`` (Nova's
``nova``) with a publisher id Nova uses (``compute.<host>`` legacy,
``nova-compute:<host>`` or ``nova-api:<host>`` versioned), volume deletions
only from ``[events] volume_exchange`` (Cinder's ``cinder``) with
``volume.<host>``; the payload must name the resource and its project
(:func:`agent.events.payloads.project_id`), and only that project's rows
are purged. The exchange is the one the broker delivered the message from
(:func:`agent.events.dispatcher.source_exchange`), which a publisher cannot
choose without the right to publish there. Anything else is ignored with
one WARNING (from the shared pool; the agent's own pool applies the same
checks quietly). The event-type screen stays an oslo.messaging
``NotificationFilter``; the publisher is checked here, where a forged one
can be logged.

A database endpoint answers ``HANDLED`` once its purge has committed, and
the listener acknowledges the event only then; it answers ``REQUEUE`` when
the database is unreachable or keeps deadlocking, and nothing else: a
payload naming no resource, or a database error that would recur, is
logged once and dropped.  :mod:`agent.events.dispatcher` drops what cannot
be read at all and bounds the redeliveries.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import oslo_messaging as messaging
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import context, exception, metrics, validation
from agent.events import payloads, purge
from agent.events.dispatcher import shown
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


@dataclasses.dataclass(frozen=True)
class Source:
    """Who may announce the deletion of one kind of resource.

    :param resource: what is deleted (``instance``, ``volume``).
    :param legacy_key: the key naming it in the flat payload.
    :param exchange_option: the ``[events]`` option naming the one exchange
        the deletion counts from.
    :param publishers: the publisher ids the service uses (the whole id
        must match).
    :param service: the service's name, for log lines.
    """

    resource: str
    legacy_key: str
    exchange_option: str
    publishers: re.Pattern[str]
    service: str


#: nova-compute and nova-api (a local delete) both publish the legacy
#: event as ``compute.<host>``; the versioned one is ``<binary>:<host>``.
INSTANCES = Source("instance", "instance_id", "instance_exchange",
                   re.compile(r"(?:compute\.|nova-compute:|nova-api:)\S+"), "Nova")
#: cinder-volume and cinder-api (a volume without a host) publish as
#: ``volume.<host>``.
VOLUMES = Source("volume", "volume_id", "volume_exchange",
                 re.compile(r"volume\.\S+"), "Cinder")


@dataclasses.dataclass(frozen=True)
class Deletion:
    """A deletion an event may claim: the resource and the project owning it."""

    resource_id: str
    project_id: str


def claimed_deletion(conf: Any, source: Source, publisher_id: Any, event_type: str,
                     payload: Any, metadata: Any, quiet: bool = False) -> Deletion | None:
    """Return the deletion an event announces, or None when it does not count.

    :param conf: the agent's configuration (``[events]``).
    :param source: who may announce this kind of deletion.
    :param metadata: the dispatcher's metadata, holding the ``exchange``.
    :param quiet: do not log; the shared pool's endpoint logs it once.
    :returns: the resource (a canonical UUID) and its project, or None when
        the event came from another exchange or publisher, or names no
        resource or no project.
    """
    exchange = metadata.get("exchange") if isinstance(metadata, Mapping) else None
    expected = getattr(conf.events, source.exchange_option)
    reason = None
    if exchange != expected:
        reason = (f"{source.resource} deletions count only from exchange "
                  f"{shown(expected)}")
    elif not isinstance(publisher_id, str) or not source.publishers.fullmatch(publisher_id):
        reason = f"not a publisher id {source.service} uses"
    if reason is not None:
        if not quiet:
            LOG.warning("Ignored %s from %s on exchange %s: %s", shown(event_type),
                        shown(publisher_id), shown(exchange), reason)
        return None
    resource_id = _resource_uuid(payload, source.legacy_key, event_type, publisher_id, quiet)
    if resource_id is None:
        return None
    project_id = payloads.project_id(payload)
    if project_id is None:
        if not quiet:
            LOG.warning("Ignored %s from %s: it names no project (or two)",
                        shown(event_type), shown(publisher_id))
        return None
    return Deletion(resource_id, project_id)


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
                        shown(event_type), shown(publisher_id), key.split("_")[0])
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
        deletion = claimed_deletion(self.runtime.conf, INSTANCES, publisher_id, event_type,
                                    payload, metadata)
        if deletion is None:
            return HANDLED
        try:
            rows = _commit(event_type, lambda s: purge.purge_instance(
                s, deletion.resource_id, deletion.project_id))
        except _Requeue:
            return REQUEUE
        except _Drop:
            return HANDLED
        metrics.PURGED["boot_roles"].inc(rows)
        LOG.info("Instance %s deleted: purged %d boot roles row(s)", deletion.resource_id,
                 rows)
        return HANDLED


class VolumeDeleteEndpoint:
    """A deleted volume: forget its glance metadata and generated secrets."""

    filter_rule = VOLUME_DELETED

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def info(self, ctxt: Any, publisher_id: str, event_type: str,
             payload: Any, metadata: Any) -> str:
        """Purge the deleted volume; return ``REQUEUE`` on a transient failure."""
        deletion = claimed_deletion(self.runtime.conf, VOLUMES, publisher_id, event_type,
                                    payload, metadata)
        if deletion is None:
            return HANDLED
        volume_id = deletion.resource_id
        try:
            removed = _commit(event_type, lambda s: purge.purge_volume(
                s, volume_id, deletion.project_id))
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
        deletion = claimed_deletion(self.runtime.conf, INSTANCES, publisher_id, event_type,
                                    payload, metadata, quiet=True)
        if deletion is None:
            return HANDLED
        instance_uuid = deletion.resource_id
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
        deletion = claimed_deletion(self.runtime.conf, VOLUMES, publisher_id, event_type,
                                    payload, metadata, quiet=True)
        if deletion is None:
            return HANDLED
        volume_id = deletion.resource_id
        # Ephemeral secrets are announced nowhere, so neither is their end;
        # they live only as long as this agent, so they are forgotten at once.
        forgotten = self.runtime.secrets.forget_generated_ephemeral(
            purge.VOLUME_USAGE, volume_id, deletion.project_id)
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
