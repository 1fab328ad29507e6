"""Master key rotation in two steps, staged then promoted, while agents serve.

As with Keystone's fernet keys, a key is held everywhere before anything
is wrapped under it:

``keys stage`` (run on every node)
    The first run creates the next key and records it in the database,
    wrapped under the primary key; every later run, on any node, unwraps
    that same key.  Each run writes it to the node's ``.staged`` file
    (agents unwrap with staged keys at once), brings the node's files in
    line with the database (primary, staged, previous) and records what
    the node holds.

``keys rotate-master`` (run on one node)
    Under the rotation lock (:mod:`agent.keystore.lock`): refuses without
    a staged key, or while a node that holds the primary key lacks the
    staged one; promotes the staged key in the state row, which waits for
    every transaction still wrapping under the old key
    (:mod:`agent.keystore.keyset`); re-wraps every data key still under
    another key, in short transactions; and retires the old key only when
    a pass finds no row left under it.  A rotation interrupted before
    that point is finished by the next ``rotate-master``.

Values never leave their ciphertext: only the 60-byte wrapped keys change.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent import exception
from agent.keystore import envelope, keyset, masterkey
from agent.keystore.lock import rotation_lock
from agent.keystore.masterkey import MasterKey, MasterKeyRing
from db import api as db_api
from db import models

LOG = logging.getLogger(__name__)

# (model, envelope kind, column holding the object id)
SEALED_TABLES: list[tuple[Any, str, str]] = [
    (models.Secret, "secret", "uuid"),
    (models.SigningKey, "signing-key", "key_id"),
]
# Re-wrap passes before a rotation gives up on rows it cannot move.
_MAX_PASSES = 5


def _rewrap_batch(ring: MasterKeyRing, primary: MasterKey, model: Any, kind: str,
                  id_column: str, batch_size: int) -> int:
    def work(session: Session) -> int:
        rows = session.scalars(
            sa.select(model)
            .where(model.master_key_id != primary.key_id, model.wrapped_key.is_not(None))
            .limit(batch_size)).all()
        for row in rows:
            wrapped, key_id = envelope.rewrap(ring, kind, getattr(row, id_column),
                                              row.wrapped_key, row.master_key_id, primary)
            # Conditional on the old key id, so a concurrent change to the
            # row (a new value sealed by an agent) is never overwritten.
            session.execute(sa.update(model)
                            .where(model.id == row.id,
                                   model.master_key_id == row.master_key_id)
                            .values(wrapped_key=wrapped, master_key_id=key_id))
        return len(rows)

    return db_api.run_in_transaction(work)


def rewrap_all(ring: MasterKeyRing, primary: MasterKey, batch_size: int = 500) -> int:
    """Re-wrap every data key not under ``primary``.

    :returns: how many wrapped keys were re-wrapped.
    :raises KeyNotFound: when a row is under a key this node does not hold.
    """
    total = 0
    for model, kind, id_column in SEALED_TABLES:
        while True:
            done = _rewrap_batch(ring, primary, model, kind, id_column, batch_size)
            total += done
            if done < batch_size:
                break
    return total


def remaining(primary_id: str) -> int:
    """Return how many wrapped keys name a master key other than ``primary_id``."""
    def work(session: Session) -> int:
        count = 0
        for model, _kind, _column in SEALED_TABLES:
            count += session.scalar(
                sa.select(sa.func.count()).select_from(model)
                .where(model.master_key_id != primary_id,
                       model.wrapped_key.is_not(None))) or 0
        return count

    return db_api.run_in_transaction(work)


def sync_files(ring: MasterKeyRing, state: keyset.KeyState,
               keys: dict[str, bytes]) -> None:
    """Make this node's key files say what the database says.

    Files are written previous first, then primary, then staged, so no key
    the database still names is ever only in a file about to be replaced.

    :param keys: material of every key this node holds, by id.
    """
    wanted = [(masterkey.PREVIOUS_SUFFIX, state.previous_key_id),
              ("", state.primary_key_id),
              (masterkey.STAGED_SUFFIX, state.staged_key_id)]
    for suffix, key_id in wanted:
        path = ring.path + suffix
        current = ring.file_key(suffix)
        if key_id is None or key_id not in keys:
            if current is not None and suffix:
                os.unlink(path)
            continue
        if current is None or current.key_id != key_id:
            masterkey.write_key_file(path, keys[key_id], overwrite=True)
    ring.load()


def _held_material(ring: MasterKeyRing) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for suffix in ("", masterkey.STAGED_SUFFIX, masterkey.PREVIOUS_SUFFIX):
        key = ring.file_key(suffix)
        if key is not None:
            keys[key.key_id] = key.material
    return keys


def _record(ring: MasterKeyRing, host: str) -> None:
    held = list(_held_material(ring))
    db_api.run_in_transaction(lambda s: keyset.record_holder(s, host, held))


def stage(path: str, host: str) -> dict[str, Any]:
    """Make sure this node holds the next master key (see the module docstring).

    :param path: this node's primary key file.
    :param host: this node's name, as its agent registers it.
    :returns: ``{"staged_key_id", "master_key_id", "created"}``.
    :raises MasterKeyUnavailable: when the key files cannot be read, or
        this node holds neither the primary key nor the staged one.
    """
    ring = MasterKeyRing(path)
    ring.load()

    def work(session: Session) -> tuple[bytes, bool, keyset.KeyState]:
        row = keyset.state_row(session, ring, lock=True)
        created = row.staged_key_id is None
        if created:
            primary = _require(ring, row.primary_key_id, "primary")
            material = secrets.token_bytes(masterkey.KEY_BYTES)
            row.staged_key_id = masterkey.key_id_of(material)
            row.staged_wrapped = envelope.wrap_master_key(primary, material,
                                                          row.staged_key_id)
            row.staged_wrapped_by = primary.key_id
        else:
            assert row.staged_key_id is not None
            held = _held_material(ring).get(row.staged_key_id)
            if held is not None:
                material = held
            else:
                assert row.staged_wrapped is not None and row.staged_wrapped_by is not None
                wrapping = _require(ring, row.staged_wrapped_by, "primary")
                material = envelope.unwrap_master_key(wrapping, row.staged_wrapped,
                                                      row.staged_key_id)
        return material, created, keyset.KeyState(
            row.primary_key_id, row.staged_key_id, row.previous_key_id)

    material, created, state = db_api.run_in_transaction(work)
    assert state.staged_key_id is not None
    keys = _held_material(ring)
    keys[state.staged_key_id] = material
    _require(ring, state.primary_key_id, "primary", keys)
    sync_files(ring, state, keys)
    _record(ring, host)
    LOG.info("Master key %s is staged on %s", state.staged_key_id, host)
    return {"staged_key_id": state.staged_key_id, "master_key_id": state.primary_key_id,
            "created": created}


def rotate_master(path: str, host: str, batch_size: int = 500) -> dict[str, Any]:
    """Promote the staged master key and retire the primary one.

    :param path: this node's primary key file.
    :param host: this node's name.
    :returns: ``{"master_key_id", "retired_key_id", "rewrapped"}``.
    :raises KeyRotationInProgress: another rotation is running.
    :raises NoStagedKey: nothing is staged, or this node does not hold it.
    :raises StagedKeyNotEverywhere: a node holding the primary key lacks
        the staged one.
    :raises KeyRotationIncomplete: rows stayed under the old key (the key
        is kept; running the command again finishes the rotation).
    :raises MasterKeyUnavailable: when the key files cannot be read.
    """
    ring = MasterKeyRing(path)
    ring.load()
    with rotation_lock(db_api.get_engine()):
        rewrapped = 0
        state = db_api.run_in_transaction(
            lambda s: _state_copy(keyset.state_row(s, ring)))
        if state.previous_key_id is not None:
            LOG.info("Finishing an interrupted master key rotation")
            rewrapped += _retire(ring, host, state.primary_key_id)
        state = db_api.run_in_transaction(lambda s: _state_copy(keyset.state_row(s, ring)))
        staged_id = state.staged_key_id
        if staged_id is None:
            raise exception.NoStagedKey(
                reason="run 'custos-manage keys stage' on every node first")
        if staged_id not in _held_material(ring):
            raise exception.NoStagedKey(
                reason="this node does not hold it; run 'custos-manage keys stage' here")
        lacking = db_api.run_in_transaction(
            lambda s: keyset.hosts_lacking(s, state.primary_key_id, staged_id))
        if lacking:
            raise exception.StagedKeyNotEverywhere(hosts=", ".join(lacking))

        def promote(session: Session) -> keyset.KeyState:
            # The exclusive lock waits for every transaction still wrapping
            # under the old key (they hold the row shared).
            row = keyset.state_row(session, ring, lock=True)
            if row.staged_key_id != staged_id:
                raise exception.NoStagedKey(reason="the staged key changed meanwhile")
            row.previous_key_id = row.primary_key_id
            row.primary_key_id = staged_id
            row.staged_key_id = row.staged_wrapped = row.staged_wrapped_by = None
            return _state_copy(row)

        promoted = db_api.run_in_transaction(promote)
        assert promoted.previous_key_id is not None
        sync_files(ring, promoted, _held_material(ring))
        LOG.info("Master key %s replaces %s; re-wrapping data keys",
                 promoted.primary_key_id, promoted.previous_key_id)
        rewrapped += _retire(ring, host, promoted.primary_key_id)
        return {"master_key_id": promoted.primary_key_id,
                "retired_key_id": promoted.previous_key_id, "rewrapped": rewrapped}


def _retire(ring: MasterKeyRing, host: str, primary_id: str) -> int:
    """Re-wrap until a pass finds nothing under another key, then retire it."""
    primary = ring.get(primary_id)
    rewrapped = 0
    for _ in range(_MAX_PASSES):
        rewrapped += rewrap_all(ring, primary)
        left = remaining(primary_id)
        if left == 0:
            break
    else:
        raise exception.KeyRotationIncomplete(count=left)

    def retire(session: Session) -> keyset.KeyState:
        row = keyset.state_row(session, ring, lock=True)
        row.previous_key_id = None
        return _state_copy(row)

    state = db_api.run_in_transaction(retire)
    sync_files(ring, state, _held_material(ring))
    _record(ring, host)
    return rewrapped


def _state_copy(row: models.MasterKeyState) -> keyset.KeyState:
    return keyset.KeyState(row.primary_key_id, row.staged_key_id, row.previous_key_id)


def _require(ring: MasterKeyRing, key_id: str, role: str,
             keys: dict[str, bytes] | None = None) -> MasterKey:
    held = keys if keys is not None else _held_material(ring)
    if key_id not in held:
        raise exception.MasterKeyUnavailable(
            reason=f"this node does not hold the {role} master key {key_id}")
    return MasterKey(key_id, held[key_id])
