"""The roles an instance booted with, kept once in its system metadata.

nova-api casts the booting user's roles when it creates an instance; the
vendordata request body carries them as ``boot-roles``.  They are written
once and never changed: a user who later loses a role must not change
how an existing instance is set up, and a retried or repeated cast must
not overwrite the first answer.

"Written once" is an insert that does nothing when the row exists, done
by the database itself (``ON CONFLICT DO NOTHING`` on SQLite and
PostgreSQL, ``ON DUPLICATE KEY UPDATE`` with no change on MariaDB/MySQL),
so two agents handling casts for one instance at the same moment can
neither fail on the unique key nor overwrite each other.
"""

from __future__ import annotations

import json
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from db import models

# The instance_system_metadata key the roles live under.
KEY = "boot_roles"

_MODEL = models.InstanceSystemMetadata


def _insert_if_absent(session: Session, values: dict[str, Any]) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_MODEL).values(**values).on_conflict_do_nothing(
            index_elements=["instance_uuid", "key"])
    if dialect in ("mysql", "mariadb"):
        statement = mysql.insert(_MODEL).values(**values)
        # A no-op update instead of INSERT IGNORE: IGNORE would also turn
        # genuine errors (truncation, bad values) into warnings.
        return statement.on_duplicate_key_update(
            instance_uuid=_MODEL.instance_uuid)
    return sqlite.insert(_MODEL).values(**values).on_conflict_do_nothing(
        index_elements=["instance_uuid", "key"])


def store_once(session: Session, instance_uuid: str, roles: list[str]) -> None:
    """Store ``roles`` for ``instance_uuid`` unless roles are stored already.

    :param session: the request's session; the row is written when it
        commits.
    :param instance_uuid: the instance, as a canonical UUID string.
    :param roles: role names; an empty list is stored as such.
    """
    session.execute(_insert_if_absent(session, {
        "instance_uuid": instance_uuid,
        "key": KEY,
        "value": json.dumps(list(roles)),
        "created_at": models.utcnow(),
    }))


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
    result = cast(sa.CursorResult[Any], session.execute(
        sa.delete(_MODEL).where(_MODEL.instance_uuid == instance_uuid,
                                _MODEL.key == KEY)))
    return int(result.rowcount or 0)
