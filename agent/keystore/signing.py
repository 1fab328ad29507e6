"""Backup-signing keys: HMAC keys kept sealed in the database.

Only the newest ``active`` key signs; ``deactivated`` keys still verify
what they signed. A key id is a random UUID: a name to look up, never
derived from or mistaken for key material.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent.keystore import envelope
from agent.keystore.masterkey import MasterKeyRing
from db import models

KIND = "signing-key"
ACTIVE = "active"
DEACTIVATED = "deactivated"
KEY_BYTES = 32


def _material(ring: MasterKeyRing, row: models.SigningKey) -> bytes:
    return envelope.open_sealed(ring, KIND, row.key_id, envelope.Sealed(
        row.material, row.wrapped_key, row.master_key_id))


def create(session: Session, ring: MasterKeyRing) -> str:
    """Make a new active signing key and deactivate the others.

    :returns: the new key's id.
    """
    key_id = str(uuid.uuid4())
    sealed = envelope.seal(ring, KIND, key_id, secrets.token_bytes(KEY_BYTES), session)
    session.execute(sa.update(models.SigningKey)
                    .where(models.SigningKey.state == ACTIVE)
                    .values(state=DEACTIVATED, deactivated_at=models.utcnow()))
    session.add(models.SigningKey(key_id=key_id, state=ACTIVE, material=sealed.ciphertext,
                                  wrapped_key=sealed.wrapped_key,
                                  master_key_id=sealed.master_key_id))
    session.flush()
    return key_id


def ensure_active(session: Session, ring: MasterKeyRing) -> str:
    """Return the active key's id, creating the first key when there is none."""
    row = session.scalars(sa.select(models.SigningKey)
                          .where(models.SigningKey.state == ACTIVE)
                          .order_by(models.SigningKey.id.desc()).limit(1)).first()
    return row.key_id if row is not None else create(session, ring)


def active(session: Session, ring: MasterKeyRing) -> tuple[str, bytes] | None:
    """Return ``(key_id, key)`` of the key that signs now, or None."""
    row = session.scalars(sa.select(models.SigningKey)
                          .where(models.SigningKey.state == ACTIVE)
                          .order_by(models.SigningKey.id.desc()).limit(1)).first()
    if row is None:
        return None
    return row.key_id, _material(ring, row)


def lookup(session: Session, ring: MasterKeyRing, key_id: str) -> bytes | None:
    """Return the key named ``key_id`` (active or deactivated), or None."""
    if not isinstance(key_id, str) or len(key_id) > 36:
        return None
    row = session.scalars(sa.select(models.SigningKey)
                          .where(models.SigningKey.key_id == key_id)).first()
    return None if row is None else _material(ring, row)


def describe(session: Session) -> list[dict[str, Any]]:
    """Return id, state and dates of every signing key; never material."""
    rows = session.scalars(sa.select(models.SigningKey).order_by(models.SigningKey.id))
    return [{"key_id": row.key_id, "state": row.state,
             "master_key_id": row.master_key_id,
             "created_at": row.created_at.isoformat() if row.created_at else None,
             "deactivated_at": row.deactivated_at.isoformat() if row.deactivated_at else None}
            for row in rows]
