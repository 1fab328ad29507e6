"""Master key rotation: staged before promoted, one at a time, retired when unused."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from agent import exception
from agent.keystore import envelope, keyset, lock, masterkey, rotation
from db import api as db_api
from db import models


def _store(ring: masterkey.MasterKeyRing, uuid: str, value: bytes) -> None:
    def work(session):
        sealed = envelope.seal(ring, "secret", uuid, value, session)
        session.add(models.Secret(uuid=uuid, private=False, generated=False,
                                  value=sealed.ciphertext, wrapped_key=sealed.wrapped_key,
                                  master_key_id=sealed.master_key_id))
    db_api.run_in_transaction(work)


def _read(ring: masterkey.MasterKeyRing, uuid: str) -> bytes:
    row = db_api.run_in_transaction(lambda s: s.scalars(
        sa.select(models.Secret).where(models.Secret.uuid == uuid)).one())
    return envelope.open_sealed(ring, "secret", uuid, envelope.Sealed(
        row.value, row.wrapped_key, row.master_key_id))


def test_rotation_without_a_staged_key_is_refused_and_changes_nothing(migrated, master_key):
    ring = masterkey.get_ring()
    _store(ring, "s-1", b"payload")

    with pytest.raises(exception.NoStagedKey) as caught:
        rotation.rotate_master(ring.path, "node-1")

    assert caught.value.code == "no_staged_key"
    assert ring.load().key_id == master_key
    assert _read(masterkey.MasterKeyRing(ring.path), "s-1") == b"payload"


def test_staging_twice_keeps_one_staged_key_that_agents_unwrap_with(migrated, master_key):
    ring = masterkey.get_ring()
    first = rotation.stage(ring.path, "node-1")
    again = rotation.stage(ring.path, "node-1")

    assert first["created"] and not again["created"]
    assert first["staged_key_id"] == again["staged_key_id"] != master_key
    staged = masterkey.MasterKeyRing(ring.path).file_key(masterkey.STAGED_SUFFIX)
    assert staged is not None and staged.key_id == first["staged_key_id"]
    assert oct(os.stat(ring.path + masterkey.STAGED_SUFFIX).st_mode & 0o777) == "0o600"
    # Before promotion new values are still wrapped under the primary key.
    _store(ring, "s-1", b"payload")
    row = db_api.run_in_transaction(lambda s: s.scalars(sa.select(models.Secret)).one())
    assert row.master_key_id == master_key


def test_a_node_that_lacks_the_staged_key_blocks_the_rotation(migrated, master_key):
    ring = masterkey.get_ring()
    db_api.run_in_transaction(lambda s: keyset.record_holder(s, "node-2", [master_key]))
    rotation.stage(ring.path, "node-1")

    with pytest.raises(exception.StagedKeyNotEverywhere) as caught:
        rotation.rotate_master(ring.path, "node-1")
    assert caught.value.kwargs["hosts"] == "node-2"

    db_api.run_in_transaction(lambda s: keyset.forget_host(s, "node-2"))
    assert rotation.rotate_master(ring.path, "node-1")["retired_key_id"] == master_key


def test_a_second_rotation_while_one_runs_is_refused(migrated, master_key):
    ring = masterkey.get_ring()
    rotation.stage(ring.path, "node-1")

    with lock.rotation_lock(db_api.get_engine()):
        with pytest.raises(exception.KeyRotationInProgress) as caught:
            rotation.rotate_master(ring.path, "node-1")

    assert caught.value.code == "key_rotation_in_progress"
    assert rotation.rotate_master(ring.path, "node-1")["retired_key_id"] == master_key


def test_after_rotation_values_wrap_under_the_new_key_and_all_still_open(migrated, master_key):
    ring = masterkey.get_ring()
    _store(ring, "before", b"one")
    rotation.stage(ring.path, "node-1")
    result = rotation.rotate_master(ring.path, "node-1")

    _store(ring, "after", b"two")

    fresh = masterkey.MasterKeyRing(ring.path)
    assert _read(fresh, "before") == b"one" and _read(fresh, "after") == b"two"
    ids = db_api.run_in_transaction(lambda s: set(s.scalars(
        sa.select(models.Secret.master_key_id))))
    assert ids == {result["master_key_id"]}
    assert not os.path.exists(ring.path + masterkey.PREVIOUS_SUFFIX)
    assert not os.path.exists(ring.path + masterkey.STAGED_SUFFIX)
    assert fresh.load().key_id == result["master_key_id"]


def test_a_node_that_never_staged_refuses_to_wrap_rather_than_use_the_old_key(
        migrated, master_key, tmp_path):
    ring = masterkey.get_ring()
    other_path = str(tmp_path / "other-node.key")
    with open(ring.path, "rb") as handle:
        masterkey.write_key_file(other_path, handle.read())
    rotation.stage(ring.path, "node-1")
    rotation.rotate_master(ring.path, "node-1")

    with pytest.raises(exception.MasterKeyUnavailable) as caught:
        _store(masterkey.MasterKeyRing(other_path), "s-2", b"value")

    assert "keys stage" in caught.value.msg
    assert db_api.run_in_transaction(lambda s: s.scalars(sa.select(models.Secret)).all()) == []
