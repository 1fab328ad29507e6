"""Master key file, envelope encryption, signing keys and master key rotation."""

from __future__ import annotations

import os
import stat

import pytest
import sqlalchemy as sa

from agent import exception
from agent.keystore import envelope, masterkey, rotation, signing
from db import api as db_api
from db import models


def test_init_writes_32_bytes_mode_0600_and_never_overwrites(tmp_path):
    path = str(tmp_path / "keys" / "master.key")

    key_id = masterkey.init_key_file(path)

    assert os.path.getsize(path) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key_id == masterkey.key_id_of(open(path, "rb").read())
    before = open(path, "rb").read()
    with pytest.raises(exception.MasterKeyExists):
        masterkey.init_key_file(path)
    assert open(path, "rb").read() == before


def test_a_short_key_file_is_refused_without_showing_it(tmp_path):
    path = tmp_path / "master.key"
    path.write_bytes(b"too short")
    path.chmod(0o600)

    with pytest.raises(exception.MasterKeyUnavailable) as caught:
        masterkey.MasterKeyRing(str(path)).load()
    assert "too short" not in caught.value.msg


def test_sealed_value_opens_only_for_its_own_object(tmp_path):
    path = str(tmp_path / "master.key")
    masterkey.init_key_file(path)
    ring = masterkey.MasterKeyRing(path)

    sealed = envelope.seal(ring, "secret", "uuid-a", b"hunter2")

    assert b"hunter2" not in sealed.ciphertext + sealed.wrapped_key
    assert envelope.open_sealed(ring, "secret", "uuid-a", sealed) == b"hunter2"
    with pytest.raises(exception.DecryptionFailed):
        envelope.open_sealed(ring, "secret", "uuid-b", sealed)
    assert "hunter2" not in repr(sealed)


def test_a_tampered_ciphertext_fails_its_check(tmp_path):
    path = str(tmp_path / "master.key")
    masterkey.init_key_file(path)
    ring = masterkey.MasterKeyRing(path)
    sealed = envelope.seal(ring, "secret", "u", b"value")
    flipped = bytes([sealed.ciphertext[0]]) + bytes([sealed.ciphertext[1] ^ 1]) + sealed.ciphertext[2:]

    with pytest.raises(exception.DecryptionFailed):
        envelope.open_sealed(ring, "secret", "u", envelope.Sealed(
            flipped, sealed.wrapped_key, sealed.master_key_id))


def test_signing_keys_rotate_and_old_ones_still_verify(migrated, master_key):
    ring = masterkey.get_ring()
    first = db_api.run_in_transaction(lambda s: signing.ensure_active(s, ring))
    first_key = db_api.run_in_transaction(lambda s: signing.lookup(s, ring, first))

    second = db_api.run_in_transaction(lambda s: signing.create(s, ring))

    active_id, _ = db_api.run_in_transaction(lambda s: signing.active(s, ring))
    states = {k["key_id"]: k["state"] for k in db_api.run_in_transaction(signing.describe)}
    assert active_id == second != first
    assert states == {first: "deactivated", second: "active"}
    assert db_api.run_in_transaction(lambda s: signing.lookup(s, ring, first)) == first_key
    assert db_api.run_in_transaction(lambda s: signing.lookup(s, ring, "nope")) is None
    assert all("material" not in k for k in db_api.run_in_transaction(signing.describe))


def test_rotate_master_rewraps_every_data_key_and_retires_the_old(migrated, master_key):
    ring = masterkey.get_ring()
    signing_id = db_api.run_in_transaction(lambda s: signing.ensure_active(s, ring))
    signing_before = db_api.run_in_transaction(lambda s: signing.lookup(s, ring, signing_id))
    sealed = envelope.seal(ring, "secret", "s-1", b"payload")
    db_api.run_in_transaction(lambda s: s.add(models.Secret(
        uuid="s-1", private=False, generated=False, value=sealed.ciphertext,
        wrapped_key=sealed.wrapped_key, master_key_id=sealed.master_key_id)))

    staged = rotation.stage(ring.path, "node-1")
    result = rotation.rotate_master(ring.path, "node-1")

    assert result["retired_key_id"] == master_key != result["master_key_id"]
    assert result["master_key_id"] == staged["staged_key_id"]
    assert result["rewrapped"] == 2
    assert not os.path.exists(ring.path + masterkey.PREVIOUS_SUFFIX)
    fresh = masterkey.MasterKeyRing(ring.path)
    row = db_api.run_in_transaction(lambda s: s.scalars(sa.select(models.Secret)).one())
    assert row.master_key_id == result["master_key_id"]
    assert envelope.open_sealed(fresh, "secret", "s-1", envelope.Sealed(
        row.value, row.wrapped_key, row.master_key_id)) == b"payload"
    assert db_api.run_in_transaction(lambda s: signing.lookup(s, fresh, signing_id)) == signing_before
