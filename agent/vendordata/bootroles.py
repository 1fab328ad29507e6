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
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db import models, upsert

# The instance_system_metadata key the roles live under.
KEY = "boot_roles"

_MODEL = models.InstanceSystemMetadata


def store_once(session: Session, instance_uuid: str, roles: list[str]) -> None:
    """Store ``roles`` for ``instance_uuid`` unless roles are stored already.

    :param session: the request's session; the row is written when it
        commits.
    :param instance_uuid: the instance, as a canonical UUID string.
    :param roles: role names; an empty list is stored as such.
    """
    upsert.insert_if_absent(session, _MODEL, {
        "instance_uuid": instance_uuid, "key": KEY, "value": json.dumps(list(roles))},
        key=["instance_uuid", "key"])


def load(session: Session, instance_uuid: str) -> list[str] | None:
    """Return the roles stored for ``instance_uuid``.

    :returns: the role names, or ``None`` when none were stored.
    """
    value = session.scalar(
        sa.select(_MODEL.value).where(_MODEL.instance_uuid == instance_uuid,
                                      _MODEL.key == KEY))
    if value is None:
        return None
    roles = json.loads(value)
    return [role for role in roles if isinstance(role, str)]


def purge(session: Session, instance_uuid: str) -> int:
    """Delete the boot roles of a deleted instance.

    :returns: how many rows were deleted (0 or 1).
    """
    return upsert.rowcount(session.execute(
        sa.delete(_MODEL).where(_MODEL.instance_uuid == instance_uuid, _MODEL.key == KEY)))
