"""Backup records: what custos itself noted when it signed a backup.

A record names the backup, the volume it was taken from, the project that
owns it, the service account its document lives in and the key that
signed it.  Import trusts these, never the ids written in a document a
user could have edited.

Records are kept per project: a backup id is unique within its project,
not across the cloud, so whatever another project recorded under the
same id neither blocks an export nor shows through an error.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import exception
from agent.drivers.base import RetryRequest
from db import models

_TABLE = models.BackupRecord


def get(session: Session, project_id: str, backup_id: str) -> models.BackupRecord | None:
    """Return a project's record of ``backup_id``.

    :param project_id: the project whose record is wanted.
    :param backup_id: the backup.
    :returns: the record, or None when that project has none (whatever
        other projects hold under the same id).
    """
    return session.scalars(sa.select(_TABLE).where(
        _TABLE.backup_id == backup_id, _TABLE.project_id == project_id)).first()


def every_project(session: Session, backup_id: str,
                  limit: int) -> list[models.BackupRecord]:
    """Return projects' records of ``backup_id``, by project id.

    Only for callers who may read every project's backups (auditors).

    :param limit: at most this many records are returned; every project
        may record any id, so their number has no other bound.
    """
    return list(session.scalars(sa.select(_TABLE).where(_TABLE.backup_id == backup_id)
                                .order_by(_TABLE.project_id).limit(limit)))


def first_of_volume(session: Session, record: models.BackupRecord) -> bool:
    """True when no other project recorded the same backup of the same volume earlier.

    A signature binds the backup id and the source volume id, not the
    project.  While ids were unique across the cloud that sufficed; now a
    project that learned another project's backup id, volume id and
    document could record the same pair and have the document verify for
    itself.  The pair therefore belongs to the project that recorded it
    first: an export is made as soon as Cinder creates the backup, so no
    other project can know the id before its owner records it.  Row ids
    only grow, so the oldest record has the lowest id.
    """
    oldest = session.scalars(sa.select(_TABLE.id).where(
        _TABLE.backup_id == record.backup_id, _TABLE.volume_id == record.volume_id)
        .order_by(_TABLE.id).limit(1)).first()
    return oldest == record.id


def save(session: Session, *, backup_id: str, volume_id: str, project_id: str,
         account: str, key_id: str) -> models.BackupRecord:
    """Create a project's record of a backup, or refresh it on a repeated export.

    :returns: the record, flushed.
    :raises agent.exception.BackupMetadataConflict: the project already
        recorded the backup for another volume; nothing changed.
    :raises agent.drivers.base.RetryRequest: another request recorded the
        same backup for the same project after this transaction looked;
        the request must run again in a fresh transaction, which sees that
        record (its ``give_up`` is a conflict).
    """
    record = get(session, project_id, backup_id)
    if record is None:
        record = _TABLE(backup_id=backup_id, volume_id=volume_id,
                        project_id=project_id, account=account, key_id=key_id)
        session.add(record)
        try:
            session.flush()
        except sa_exc.IntegrityError:
            # The only unique key a new record can hit is (backup, project):
            # a concurrent first export committed it after get() looked.
            retry = RetryRequest("backup record written concurrently")
            retry.give_up = exception.BackupMetadataConflict(backup_id=backup_id)
            raise retry from None
        return record
    if record.volume_id != volume_id:
        raise exception.BackupMetadataConflict(backup_id=backup_id)
    record.account = account
    record.key_id = key_id
    session.flush()
    return record


def delete(session: Session, record: models.BackupRecord) -> None:
    """Remove a backup's record."""
    session.delete(record)
    session.flush()
