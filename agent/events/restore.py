"""Bringing purged rows back within the grace (``custos-manage restore``).

A restore clears ``deleted_at`` on the rows a purge marked, values
included, and gives a purged secret its usage back. It is refused, and
nothing is restored, when a live secret of the same project holds that
usage now: the purge gave the usage up so that a new secret could take
it, and that secret keeps it. Rows already destroyed are gone for good.

A purged secret was announced with ``secret.undefine``; a restored one is
announced with ``secret.define`` (:attr:`Restored.announcements`), with
the same payload and ``reason`` ``restore``, once the restore commits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent import exception
from agent.events.purge import VOLUME_USAGE
from agent.vendordata import bootroles
from db import models, upsert

#: The ``reason`` of a restored secret's ``secret.define`` (a purge's is
#: the deletion event's type).
REASON = "restore"


@dataclasses.dataclass
class Restored:
    """What one restore brought back.

    :param secrets: the UUIDs of the restored secrets.
    :param glance_metadata: ``{project_id: [keys]}`` of the restored glance metadata.
    :param boot_roles: how many boot-roles rows were restored.
    :param announcements: the ``secret.define`` payload of each restored
        secret (no value), to publish after the commit.
    """

    secrets: list[str] = dataclasses.field(default_factory=list)
    glance_metadata: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    boot_roles: int = 0
    announcements: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def empty(self) -> bool:
        return not (self.secrets or self.glance_metadata or self.boot_roles)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form: UUIDs, project ids and key names, never values."""
        return {"secrets": list(self.secrets), "glance_metadata": dict(self.glance_metadata),
                "boot_roles": self.boot_roles}


def _restore_secrets(session: Session, rows: Sequence[models.Secret],
                     restored: Restored) -> None:
    """Give each purged secret its usage back, unless a live secret holds it now."""
    secret = models.Secret
    for row in rows:
        if row.purged_usage_type is not None and row.project_id is not None:
            holder = session.scalar(sa.select(secret.uuid).where(
                secret.project_id == row.project_id,
                secret.usage_type == row.purged_usage_type,
                secret.usage_id == row.purged_usage_id))
            if holder is not None:
                raise exception.RestoreConflict(
                    uuid=row.uuid, holder=holder, usage_type=row.purged_usage_type,
                    usage_id=row.purged_usage_id)
        row.usage_type, row.usage_id = row.purged_usage_type, row.purged_usage_id
        row.purged_usage_type = row.purged_usage_id = None
        row.deleted_at = None
        # Flushed one by one: the next row's check sees this one live.
        session.flush()
        restored.secrets.append(row.uuid)
        restored.announcements.append({"uuid": row.uuid, "usage_type": row.usage_type,
                                       "usage_id": row.usage_id,
                                       "project_id": row.project_id, "reason": REASON})


def restore_secret(session: Session, uuid: str) -> Restored:
    """Restore one purged secret, by its UUID.

    :raises NothingToRestore: no purged secret has this UUID.
    :raises RestoreConflict: a live secret of its project holds its usage.
    """
    rows = session.scalars(sa.select(models.Secret).where(
        models.Secret.uuid == uuid, models.Secret.deleted_at.is_not(None))).all()
    if not rows:
        raise exception.NothingToRestore(kind="secret", id=uuid)
    restored = Restored()
    _restore_secrets(session, rows, restored)
    return restored


def restore_volume(session: Session, volume_id: str) -> Restored:
    """Restore a deleted volume's purged glance metadata and generated secrets.

    :raises NothingToRestore: nothing of this volume is purged.
    :raises RestoreConflict: a live secret holds the usage of one of its
        secrets; nothing is restored.
    """
    restored = Restored()
    secret = models.Secret
    rows = session.scalars(sa.select(secret).where(
        secret.deleted_at.is_not(None), secret.purged_usage_type == VOLUME_USAGE,
        secret.purged_usage_id == volume_id).order_by(secret.deleted_at.desc())).all()
    _restore_secrets(session, rows, restored)
    glance = models.VolumeGlanceMetadata
    purged = (glance.volume_id == volume_id, glance.deleted_at.is_not(None))
    for project_id, key in session.execute(sa.select(glance.project_id, glance.key)
                                           .where(*purged).order_by(glance.key)):
        restored.glance_metadata.setdefault(project_id or "", []).append(key)
    session.execute(sa.update(glance).where(*purged).values(deleted_at=None))
    if restored.empty():
        raise exception.NothingToRestore(kind="volume", id=volume_id)
    return restored


def restore_instance(session: Session, instance_uuid: str) -> Restored:
    """Restore the purged boot roles of an instance.

    :raises NothingToRestore: the instance has no purged boot roles.
    """
    model = models.InstanceSystemMetadata
    count = upsert.rowcount(session.execute(
        sa.update(model).where(model.instance_uuid == instance_uuid, model.key == bootroles.KEY,
                               model.deleted_at.is_not(None))
        .values(deleted_at=None)))
    if not count:
        raise exception.NothingToRestore(kind="instance", id=instance_uuid)
    return Restored(boot_roles=int(count))
