"""Backup records: what custos itself noted when it signed a backup.

A record names the backup, the volume it was taken from, the project that
owns it, the service account its document lives in and the key that
signed it.  Import trusts these, never the ids written in a document a
user could have edited.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent import exception
from db import models

_TABLE = models.BackupRecord


def get(session: Session, backup_id: str) -> models.BackupRecord | None:
    """Return the record of ``backup_id``, or None when custos has none."""
    return session.scalars(sa.select(_TABLE).where(_TABLE.backup_id == backup_id)).first()


def save(session: Session, *, backup_id: str, volume_id: str, project_id: str,
         account: str, key_id: str) -> models.BackupRecord:
    """Create the record of a backup, or refresh it on a repeated export.

    :returns: the record, flushed.
    :raises agent.exception.BackupMetadataConflict: the backup is already
        recorded for another volume or project; nothing changed.
    """
    record = get(session, backup_id)
    if record is None:
        record = _TABLE(backup_id=backup_id, volume_id=volume_id,
                        project_id=project_id, account=account, key_id=key_id)
        session.add(record)
    elif record.volume_id != volume_id or record.project_id != project_id:
        raise exception.BackupMetadataConflict(backup_id=backup_id)
    else:
        record.account = account
        record.key_id = key_id
    session.flush()
    return record


def delete(session: Session, record: models.BackupRecord) -> None:
    """Remove a backup's record."""
    session.delete(record)
    session.flush()
