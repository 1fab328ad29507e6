"""Glance metadata of volumes: the image properties a volume carries.

Cinder copies an image's properties onto every volume made from it
(``volume_glance_metadata``); billing and licensing read them, so only a
service acting for an operator may write them (SPEC §3.4).  custos keeps
them in its own table, keyed by volume id.

Rows are kept per (project, volume id): an operator reads and writes only
their own project's rows, so a volume id alone never reveals another
project's licence keys, and a write by one project never claims, hides or
changes another's rows for the same id. Rows without a project (written
before glance metadata had an owner) are read by the cloud administrator
alone, who writes, like everyone, in its own project.

Writes are upserts (one statement per call, ``ON CONFLICT`` / ``ON
DUPLICATE KEY``), so two agents writing the same volume at once never
collide on the unique (project, volume, key) index; a repeated write (a cast
delivered again, a retried transaction) leaves the same rows.

Sizes: a key is at most 255 characters (its column); a value is a string
of at most :data:`MAX_VALUE_LENGTH` characters, which fits MySQL's TEXT
(65,535 bytes) even at four bytes a character; a volume holds at most
:data:`MAX_KEYS` keys and :data:`MAX_TOTAL_LENGTH` characters of keys and
values, so its signed backup document stays well below the document limit.
Values may be licence keys: nothing here logs them.

A deleted volume's rows are purged (marked, :mod:`agent.events.purge`),
not removed, until the grace passes: they read as absent, and a write to
that project's metadata of the volume is refused
(:class:`~agent.exception.VolumePurged`) until they are restored or
destroyed, so a purged value is never half revived or overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent import exception, validation
from db import models, upsert

MAX_KEY_LENGTH = 255
MAX_VALUE_LENGTH = 16383
MAX_KEYS = 128
MAX_TOTAL_LENGTH = 65536

_TABLE = models.VolumeGlanceMetadata


def check_metadata(field: str, value: Any) -> dict[str, str]:
    """Return ``value`` if it is glance metadata custos can keep.

    :param field: the argument's name, for the error.
    :param value: the candidate: a dict of strings to strings.
    :returns: the same dict.
    :raises agent.exception.InvalidInput: (naming ``field``) not a dict of
        strings, an empty or over-long key, an over-long value, a NUL
        character, too many keys or too many characters in all.
    """
    result = validation.string_map(field, value, max_key=MAX_KEY_LENGTH,
                                   max_value=MAX_VALUE_LENGTH, max_items=MAX_KEYS)
    assert result is not None
    total = sum(len(key) + len(item) for key, item in result.items())
    if total > MAX_TOTAL_LENGTH:
        raise exception.InvalidInput(
            field=field, reason=f"holds more than {MAX_TOTAL_LENGTH} characters in all")
    return result


def get(session: Session, volume_id: str, project_id: str, *,
        ownerless: bool = False) -> dict[str, str]:
    """Return a project's glance metadata of a volume; ``{}`` when it has none.

    :param project_id: the project whose rows are read.
    :param ownerless: also read the rows that have no project (the
        administrator); the project's own keys win over them.
    """
    owners = _TABLE.project_id == project_id
    if ownerless:
        owners = sa.or_(owners, _TABLE.project_id.is_(None))
    rows = session.execute(sa.select(_TABLE.key, _TABLE.value, _TABLE.project_id)
                           .where(_TABLE.volume_id == volume_id, owners,
                                  _TABLE.deleted_at.is_(None)))
    found: dict[str, str] = {}
    for key, value, owner in sorted(rows, key=lambda row: row[2] is not None):
        found[key] = value
    return found


def _refuse_purged(session: Session, volume_id: str, project_id: str) -> None:
    """Raise :class:`~agent.exception.VolumePurged` while the project's rows are purged."""
    purged = session.scalar(sa.select(_TABLE.id).where(
        _TABLE.volume_id == volume_id, _TABLE.project_id == project_id,
        _TABLE.deleted_at.is_not(None)).limit(1))
    if purged is not None:
        raise exception.VolumePurged(volume_id=volume_id)


def _upsert(session: Session, volume_id: str, metadata: Mapping[str, str],
            project_id: str) -> None:
    upsert.upsert(session, _TABLE,
                  [{"volume_id": volume_id, "key": key, "value": value,
                    "project_id": project_id}
                   for key, value in metadata.items()],
                  key=["project_id", "volume_id", "key"], update=["value"])


def update(session: Session, volume_id: str, metadata: Mapping[str, str], *,
           project_id: str) -> None:
    """Create or overwrite the given keys of a project's volume; other keys stay.

    :param project_id: the writer's project; only its rows change.
    :raises agent.exception.InvalidInput: the volume would end up with more
        than :data:`MAX_KEYS` keys or :data:`MAX_TOTAL_LENGTH` characters.
    :raises agent.exception.VolumePurged: the project's metadata of the
        volume was purged.
    """
    if not metadata:
        return
    _refuse_purged(session, volume_id, project_id)
    merged = get(session, volume_id, project_id)
    merged.update(metadata)
    if len(merged) > MAX_KEYS:
        raise exception.InvalidInput(
            field="metadata", reason=f"the volume would hold more than {MAX_KEYS} keys")
    check_metadata("metadata", merged)
    _upsert(session, volume_id, metadata, project_id)


def replace(session: Session, volume_id: str, metadata: Mapping[str, str], *,
            project_id: str) -> None:
    """Make a project's glance metadata of a volume exactly ``metadata`` (``{}``: none).

    :param project_id: the writer's project; only its rows change.
    :raises agent.exception.VolumePurged: the project's metadata of the
        volume was purged.
    """
    _refuse_purged(session, volume_id, project_id)
    delete = sa.delete(_TABLE).where(_TABLE.volume_id == volume_id,
                                     _TABLE.project_id == project_id)
    if metadata:
        delete = delete.where(_TABLE.key.not_in(list(metadata)))
    session.execute(delete)
    if metadata:
        _upsert(session, volume_id, metadata, project_id)


def copy(session: Session, src_volume_id: str, dst_volume_id: str, *,
         project_id: str, ownerless: bool = False) -> dict[str, str]:
    """Replace the destination's glance metadata with the source's, in one project.

    Used on the snapshot and clone paths; the destination ends up with the
    source's keys and no others (none when the source has none).

    :param project_id: the caller's project: the source is read and the
        destination written within it.
    :param ownerless: the source's rows without a project are read too
        (the administrator).
    :returns: the metadata now on the destination.
    """
    metadata = get(session, src_volume_id, project_id, ownerless=ownerless)
    if src_volume_id != dst_volume_id:
        replace(session, dst_volume_id, metadata, project_id=project_id)
    return metadata


def delete(session: Session, volume_id: str) -> int:
    """Remove every glance metadata key of a volume, in every project.

    :returns: how many keys were removed.
    """
    return upsert.rowcount(session.execute(
        sa.delete(_TABLE).where(_TABLE.volume_id == volume_id)))


def set_payload(volume_id: str, project_id: str | None, keys: Iterable[str], *,
                source_volume_id: str | None = None) -> dict[str, Any]:
    """Return the ``glance_metadata.set`` payload: key names, never values.

    :param volume_id: the volume written.
    :param project_id: the caller's project.
    :param keys: the keys written.
    :param source_volume_id: the volume copied from, for a copy; None for
        a set.
    """
    payload: dict[str, Any] = {"volume_id": volume_id, "project_id": project_id,
                               "keys": sorted(keys), "operation": "set"}
    if source_volume_id is not None:
        payload.update(source_volume_id=source_volume_id, operation="copy")
    return payload
