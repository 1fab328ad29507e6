"""Master key rotation while agents keep serving.

Steps, each safe to repeat if the command is interrupted:

1. the current key is copied to ``<key file>.previous``;
2. a new key replaces ``<key file>`` atomically; agents notice the change
   before their next wrap, and unwrap with either key meanwhile;
3. every wrapped data key (secrets, signing keys, managed keys) still under an older
   key is re-wrapped under the new one, in short transactions;
4. after a grace period a last pass catches rows an agent wrapped with the
   old key just before it noticed the new file; only when no row names an
   old key is the previous file removed.

Values never leave their ciphertext: only the 60-byte wrapped keys change.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent.keystore import envelope, masterkey
from db import api as db_api
from db import models

LOG = logging.getLogger(__name__)

# (model, envelope kind, column holding the object id)
SEALED_TABLES: list[tuple[Any, str, str]] = [
    (models.Secret, "secret", "uuid"),
    (models.SigningKey, "signing-key", "key_id"),
    (models.ManagedKey, "managed-key", "uuid"),
]


def _rewrap_batch(ring: masterkey.MasterKeyRing, model: Any, kind: str,
                  id_column: str, batch_size: int) -> int:
    active_id = ring.active().key_id

    def work(session: Session) -> int:
        rows = session.scalars(
            sa.select(model)
            .where(model.master_key_id != active_id, model.wrapped_key.is_not(None))
            .limit(batch_size)).all()
        for row in rows:
            wrapped, key_id = envelope.rewrap(ring, kind, getattr(row, id_column),
                                              row.wrapped_key, row.master_key_id)
            # Conditional on the old key id, so a concurrent change to the
            # row (a new value sealed by an agent) is never overwritten.
            session.execute(sa.update(model)
                            .where(model.id == row.id,
                                   model.master_key_id == row.master_key_id)
                            .values(wrapped_key=wrapped, master_key_id=key_id))
        return len(rows)

    return db_api.run_in_transaction(work)


def rewrap_all(ring: masterkey.MasterKeyRing, batch_size: int = 500) -> int:
    """Re-wrap every data key not under the active master key.

    :returns: how many wrapped keys were re-wrapped.
    """
    total = 0
    for model, kind, id_column in SEALED_TABLES:
        while True:
            done = _rewrap_batch(ring, model, kind, id_column, batch_size)
            total += done
            if done < batch_size:
                break
    return total


def remaining(ring: masterkey.MasterKeyRing) -> int:
    """Return how many wrapped keys still name a master key other than the active one."""
    active_id = ring.active().key_id

    def work(session: Session) -> int:
        count = 0
        for model, _kind, _column in SEALED_TABLES:
            count += session.scalar(
                sa.select(sa.func.count()).select_from(model)
                .where(model.master_key_id != active_id,
                       model.wrapped_key.is_not(None))) or 0
        return count

    return db_api.run_in_transaction(work)


def _finish(ring: masterkey.MasterKeyRing, grace: float, batch_size: int) -> int:
    rewrapped = rewrap_all(ring, batch_size)
    time.sleep(grace)
    rewrapped += rewrap_all(ring, batch_size)
    if remaining(ring) == 0:
        previous = ring.path + masterkey.PREVIOUS_SUFFIX
        if os.path.exists(previous):
            os.unlink(previous)
    return rewrapped


def rotate_master(path: str, grace: float = 2.0, batch_size: int = 500) -> dict[str, Any]:
    """Replace the master key at ``path`` and re-wrap every data key under it.

    An interrupted earlier rotation (a ``.previous`` file left behind) is
    finished first.

    :param path: the active master key file.
    :param grace: seconds to wait before the last re-wrap pass, longer
        than an agent request takes.
    :returns: ``{"master_key_id", "retired_key_id", "rewrapped"}``.
    :raises MasterKeyUnavailable: when the current key cannot be read.
    """
    ring = masterkey.MasterKeyRing(path)
    old = ring.load()
    previous = path + masterkey.PREVIOUS_SUFFIX
    rewrapped = 0
    if os.path.exists(previous):
        LOG.info("Finishing an interrupted master key rotation")
        rewrapped += _finish(ring, grace, batch_size)
    masterkey.write_key_file(previous, old.material, overwrite=True)
    masterkey.write_key_file(path, secrets.token_bytes(masterkey.KEY_BYTES), overwrite=True)
    new = ring.load()
    LOG.info("Master key %s replaces %s; re-wrapping data keys", new.key_id, old.key_id)
    rewrapped += _finish(ring, grace, batch_size)
    return {"master_key_id": new.key_id, "retired_key_id": old.key_id,
            "rewrapped": rewrapped}
