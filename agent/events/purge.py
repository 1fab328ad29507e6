"""Forgetting what the agent kept for a deleted instance or volume.

Each function works inside the caller's transaction and returns what it
removed, so the caller can announce it once the transaction commits.
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


def purge_instance(session: Session, instance_uuid: str) -> int:
    """Delete the system metadata custos kept for a deleted instance.

    :returns: how many rows were deleted.
    """
    return bootroles.purge(session, instance_uuid)


@dataclasses.dataclass
class VolumePurge:
    """What :func:`purge_volume` removed.

    :param glance_keys: the glance metadata keys deleted.
    :param secrets: one dict per undefined secret: ``uuid``,
        ``usage_type``, ``usage_id``, ``project_id`` (no value).
    """

    glance_keys: list[str]
    secrets: list[dict[str, Any]]


def purge_volume(session: Session, volume_id: str) -> VolumePurge:
    """Delete a deleted volume's glance metadata and generated secrets.

    Only secrets that custos generated (``secret_generate``) with usage
    ``volume`` and this volume id go: a secret someone defined with their
    own value is theirs to undefine.  Deleting the row deletes its wrapped
    data key with it, so the value cannot be recovered.  Ephemeral secrets
    are not touched here: they live in one agent's memory, and every agent
    forgets its own through its own listener pool
    (:meth:`agent.secrets.store.SecretStore.forget_generated_ephemeral`).

    :returns: what was removed.
    """
    glance = models.VolumeGlanceMetadata
    keys = list(session.scalars(
        sa.select(glance.key).where(glance.volume_id == volume_id)))
    if keys:
        session.execute(sa.delete(glance).where(glance.volume_id == volume_id))

    secret = models.Secret
    rows = session.execute(
        sa.select(secret.id, secret.uuid, secret.usage_type, secret.usage_id,
                  secret.project_id)
        .where(secret.usage_type == VOLUME_USAGE, secret.usage_id == volume_id,
               secret.generated.is_(True))).all()
    if rows:
        session.execute(sa.delete(secret).where(secret.id.in_([r.id for r in rows])))
    return VolumePurge(
        glance_keys=sorted(keys),
        secrets=[{"uuid": r.uuid, "usage_type": r.usage_type,
                  "usage_id": r.usage_id, "project_id": r.project_id}
                 for r in rows])
