"""Marking what the agent kept for a deleted instance or volume as purged.

A purge destroys nothing: it sets ``deleted_at`` on the rows of the one
project the event names, which makes them unreadable and takes them out
of every list; :mod:`agent.events.grace` destroys them once ``[events]
purge_grace`` has passed, and :mod:`agent.events.restore` brings them back
until then. Each function works inside the caller's transaction and
returns what it marked, so the caller can announce it once the
transaction commits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent.vendordata import bootroles
from db import models

# The usage type of secrets generated for a volume (libvirt's ``volume``).
VOLUME_USAGE = "volume"


def purge_instance(session: Session, instance_uuid: str, project_id: str) -> int:
    """Mark the boot roles of a deleted instance of ``project_id`` as purged.

    :param instance_uuid: the instance, a canonical UUID.
    :param project_id: the project the event names; rows another project
        recorded stay.
    :returns: how many rows were marked (0 or 1).
    """
    return bootroles.purge(session, instance_uuid, project_id)


@dataclasses.dataclass
class VolumePurge:
    """What :func:`purge_volume` marked.

    :param glance_keys: the glance metadata keys marked.
    :param secrets: one dict per purged secret: ``uuid``, ``usage_type``,
        ``usage_id``, ``project_id`` (no value).
    """

    glance_keys: list[str]
    secrets: list[dict[str, Any]]


def purge_volume(session: Session, volume_id: str, project_id: str) -> VolumePurge:
    """Mark a deleted volume's glance metadata and generated secrets as purged.

    Only rows of ``project_id`` are touched: the glance metadata that
    project wrote for the volume, and the secrets custos generated
    (``secret_generate``) for it with usage ``volume`` and this volume id.
    A secret someone defined with their own value is theirs to undefine.
    A purged secret gives its usage up (see :class:`db.models.Secret`), so
    a new secret for the same usage can be defined at once; its sealed
    value and data key stay in the row until it is destroyed. Ephemeral
    secrets are not touched here: they live in one agent's memory, and
    every agent forgets its own through its own listener pool
    (:meth:`agent.secrets.store.SecretStore.forget_generated_ephemeral`).

    :param volume_id: the volume, a canonical UUID.
    :param project_id: the project the event names.
    :returns: what was marked.
    """
    now = models.utcnow()
    glance = models.VolumeGlanceMetadata
    live_glance = (glance.volume_id == volume_id, glance.project_id == project_id,
                   glance.deleted_at.is_(None))
    keys = list(session.scalars(sa.select(glance.key).where(*live_glance)))
    if keys:
        session.execute(sa.update(glance).where(*live_glance).values(deleted_at=now))

    secret = models.Secret
    rows = session.execute(
        sa.select(secret.id, secret.uuid)
        .where(secret.project_id == project_id, secret.usage_type == VOLUME_USAGE,
               secret.usage_id == volume_id, secret.generated.is_(True),
               secret.deleted_at.is_(None))).all()
    if rows:
        session.execute(
            sa.update(secret).where(secret.id.in_([row.id for row in rows]))
            .values(deleted_at=now, purged_usage_type=VOLUME_USAGE, purged_usage_id=volume_id,
                    usage_type=None, usage_id=None))
    return VolumePurge(
        glance_keys=sorted(keys),
        secrets=[{"uuid": row.uuid, "usage_type": VOLUME_USAGE, "usage_id": volume_id,
                  "project_id": project_id} for row in rows])
