"""The roles an instance booted with, kept once in its system metadata.

nova-api casts the booting user's roles when it creates an instance; the
vendordata request body carries them as ``boot-roles``.  They are written
once and never changed: a user who later loses a role must not change
how an existing instance is set up, and a retried or repeated cast must
not overwrite the first answer.

"Written once" is an insert that does nothing when the row exists, done
by the database itself (:func:`db.upsert.insert_if_absent`), so two
agents handling casts for one instance at the same moment can neither
fail on the unique key nor overwrite each other.

A deleted instance's row is purged (marked, :mod:`agent.events.purge`),
not removed: it reads as absent, and since it still holds the key, a
later cast for that instance inserts nothing. The roles stay frozen.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db import models, upsert

# The instance_system_metadata key the roles live under.
KEY = "boot_roles"

_MODEL = models.InstanceSystemMetadata


def store_once(session: Session, instance_uuid: str, roles: list[str],
               project_id: str | None = None) -> None:
    """Store ``roles`` for ``instance_uuid`` unless roles are stored already.

    Roles stored before, purged ones included, stay as they are.

    :param session: the request's session; the row is written when it
        commits.
    :param instance_uuid: the instance, as a canonical UUID string.
    :param roles: role names; an empty list is stored as such.
    :param project_id: the project of the request storing them (the
        instance's); None when a service stores them for no project.
    """
    upsert.insert_if_absent(session, _MODEL, {
        "instance_uuid": instance_uuid, "key": KEY, "value": json.dumps(list(roles)),
        "project_id": project_id}, key=["instance_uuid", "key"])


def load(session: Session, instance_uuid: str) -> list[str] | None:
    """Return the roles stored for ``instance_uuid``.

    :returns: the role names, or ``None`` when none were stored.
    """
    value = session.scalar(
        sa.select(_MODEL.value).where(_MODEL.instance_uuid == instance_uuid,
                                      _MODEL.key == KEY, _MODEL.deleted_at.is_(None)))
    if value is None:
        return None
    roles = json.loads(value)
    return [role for role in roles if isinstance(role, str)]


def purge(session: Session, instance_uuid: str, project_id: str) -> int:
    """Mark the boot roles of a deleted instance as purged.

    :param project_id: the project the deletion names: only roles stored
        by a request of that project, or of none, are marked.
    :returns: how many rows were marked (0 or 1).
    """
    return upsert.rowcount(session.execute(
        sa.update(_MODEL)
        .where(_MODEL.instance_uuid == instance_uuid, _MODEL.key == KEY,
               _MODEL.deleted_at.is_(None),
               sa.or_(_MODEL.project_id == project_id, _MODEL.project_id.is_(None)))
        .values(deleted_at=models.utcnow())))
