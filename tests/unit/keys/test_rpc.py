"""The managed-key RPC methods (API 1.1) as a caller sees them, on an in-process agent."""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from agent import exception, rpc
from agent.keystore import masterkey, rotation
from db import api as db_api
from db import models
from rpcapi import CustosAPI
from tests.common import OTHER_PROJECT, PROJECT, admin, make_context, member

OBJECT_TYPES = ["symmetric", "public", "private", "certificate", "passphrase", "opaque"]


def _value() -> bytes:
    """Bytes recognisable wherever they might leak."""
    return b"KeyBytes-" + secrets.token_hex(12).encode()


def _rows() -> list[models.ManagedKey]:
    with db_api.transaction() as session:
        return list(session.scalars(sa.select(models.ManagedKey)))


def _assert_nowhere(value: bytes, harness, logs) -> None:
    sent = json.dumps([n["payload"] for n in harness.notifications()])
    for text in (value.hex(), base64.b64encode(value).decode()):
        assert text not in logs.text
        assert text not in sent
    if value.isascii():
        assert value.decode() not in logs.text and value.decode() not in sent


@pytest.mark.parametrize("object_type", OBJECT_TYPES)
def test_every_object_type_comes_back_byte_for_byte(harness, object_type):
    value = os.urandom(16) if object_type == "symmetric" else _value() + b"\x00\xff"
    bits = 128 if object_type == "symmetric" else None
    uuid = harness.api.key_store(member(), object_type, value, algorithm="AES" if bits else None,
                                 bit_length=bits, name="my key",
                                 expiration="2030-01-01T00:00:00+00:00")

    found = harness.api.key_get(member(), uuid)
    metadata = harness.api.key_get(member(), uuid, metadata_only=True)

    assert found["value"] == value
    assert found["object_type"] == object_type and found["uuid"] == uuid
    assert (found["algorithm"], found["bit_length"]) == (("AES", 128) if bits else (None, None))
    assert found["name"] == "my key" and found["expiration"] == "2030-01-01T00:00:00+00:00"
    assert isinstance(found["created"], int) and found["consumers"] == []
    assert metadata == {**found, "value": None}


def test_created_keys_have_the_size_asked_and_pairs_match(harness):
    aes = harness.api.key_get(member(), harness.api.key_create(member(), "aes", 256))
    xts = harness.api.key_get(member(), harness.api.key_create(member(), "AES", 512))
    private_uuid, public_uuid = harness.api.key_create_pair(member(), "RSA", 2048, name="pair")
    private = harness.api.key_get(member(), private_uuid)
    public = harness.api.key_get(member(), public_uuid)

    assert len(aes["value"]) == 32 and aes["algorithm"] == "aes" and aes["bit_length"] == 256
    assert len(xts["value"]) == 64
    assert (private["object_type"], public["object_type"]) == ("private", "public")
    loaded = serialization.load_der_private_key(private["value"], password=None)
    assert loaded.key_size == 2048
    assert loaded.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo) == public["value"]
    assert [n["payload"]["uuid"] for n in harness.notifications("key.create")] == [
        aes["uuid"], xts["uuid"], private_uuid, public_uuid]


def test_list_filters_by_type_and_can_leave_values_out(harness):
    sym = harness.api.key_store(member(), "symmetric", os.urandom(32), "AES", 256)
    cert = harness.api.key_store(member(), "certificate", _value())

    assert [k["uuid"] for k in harness.api.key_list(member(), "symmetric")] == [sym]
    listed = harness.api.key_list(member(), metadata_only=True)
    assert {k["uuid"] for k in listed} == {sym, cert}
    assert all(k["value"] is None for k in listed)
    assert {k["uuid"] for k in harness.api.key_list(member())} == {sym, cert}


def test_another_project_sees_nothing_and_changes_nothing(harness):
    uuid = harness.api.key_store(member(), "passphrase", _value())
    other = member(OTHER_PROJECT)

    for call in (lambda: harness.api.key_get(other, uuid),
                 lambda: harness.api.key_get(other, uuid, metadata_only=True),
                 lambda: harness.api.key_delete(other, uuid, force=True),
                 lambda: harness.api.key_consumer_add(other, uuid, "cinder", "volume", "v1"),
                 lambda: harness.api.key_consumer_remove(other, uuid, "cinder", "volume", "v1")):
        with pytest.raises(exception.ManagedKeyNotFound) as caught:
            call()
        # Exactly the answer for a UUID that never existed.
        assert caught.value.code == "managed_key_not_found"
    assert harness.api.key_list(other) == []
    assert harness.api.key_get(member(), uuid)["consumers"] == []
    assert harness.notifications("key.delete") == []


def test_a_context_without_a_project_is_refused_everywhere(harness):
    uuid = harness.api.key_store(member(), "opaque", _value())
    projectless = make_context(project_id=None)

    calls = [lambda: harness.api.key_create(projectless, "AES", 256),
             lambda: harness.api.key_create_pair(projectless, "RSA", 2048),
             lambda: harness.api.key_store(projectless, "opaque", b"x"),
             lambda: harness.api.key_get(projectless, uuid),
             lambda: harness.api.key_list(projectless),
             lambda: harness.api.key_delete(projectless, uuid),
             lambda: harness.api.key_consumer_add(projectless, uuid, "s", "t", "i"),
             lambda: harness.api.key_consumer_remove(projectless, uuid, "s", "t", "i")]
    for call in calls:
        with pytest.raises(exception.Forbidden):
            call()
    assert len(_rows()) == 1


def test_the_administrator_acts_on_every_project(harness):
    theirs = harness.api.key_store(member(OTHER_PROJECT), "passphrase", _value())
    mine = harness.api.key_store(admin(), "passphrase", _value())

    assert {k["uuid"] for k in harness.api.key_list(admin(), metadata_only=True)} == {
        theirs, mine}
    assert harness.api.key_get(admin(), theirs, metadata_only=True)["uuid"] == theirs
    # Another project's bytes are a rule of their own (a system-scoped admin).
    with pytest.raises(exception.Forbidden):
        harness.api.key_get(admin(), theirs)
    assert [k["value"] for k in harness.api.key_list(admin()) if k["uuid"] == theirs] == [None]
    system_admin = make_context(project_id=None, roles=["admin"], system_scope="all")
    assert harness.api.key_get(system_admin, theirs)["value"] is not None
    assert [n["payload"]["uuid"] for n in harness.notifications("key.value_read")] == [theirs]
    harness.api.key_delete(admin(), theirs)
    with pytest.raises(exception.ManagedKeyNotFound):
        harness.api.key_get(member(OTHER_PROJECT), theirs)
    # What the administrator stores belongs to its own project.
    assert [k["uuid"] for k in harness.api.key_list(member(PROJECT))] == [mine]
    with pytest.raises(exception.Forbidden):
        harness.api.key_create(make_context(project_id=None, roles=["admin"]), "AES", 256)


def test_a_key_in_use_is_deleted_only_with_force(harness):
    uuid = harness.api.key_create(member(), "AES", 256)
    harness.api.key_consumer_add(member(), uuid, "cinder", "volume", "vol-1")
    harness.api.key_consumer_add(member(), uuid, "cinder", "volume", "vol-1")
    harness.api.key_consumer_add(member(), uuid, "glance", "image", "img-1")

    assert harness.api.key_get(member(), uuid)["consumers"] == [
        {"service": "cinder", "resource_type": "volume", "resource_id": "vol-1"},
        {"service": "glance", "resource_type": "image", "resource_id": "img-1"}]
    with pytest.raises(exception.KeyHasConsumers):
        harness.api.key_delete(member(), uuid)
    with pytest.raises(exception.KeyConsumerNotFound):
        harness.api.key_consumer_remove(member(), uuid, "nova", "instance", "i-1")
    harness.api.key_consumer_remove(member(), uuid, "glance", "image", "img-1")
    with pytest.raises(exception.KeyHasConsumers):
        harness.api.key_delete(member(), uuid, force=False)
    harness.api.key_delete(member(), uuid, force=True)

    with pytest.raises(exception.ManagedKeyNotFound):
        harness.api.key_get(member(), uuid)
    with db_api.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.KeyConsumer)) == 0
    assert [n["payload"]["uuid"] for n in harness.notifications("key.delete")] == [uuid]


@pytest.mark.parametrize("call, field", [
    (lambda api: api.key_create(member(), "AES", 100), "bit_length"),
    (lambda api: api.key_create(member(), "DES", 64), "algorithm"),
    (lambda api: api.key_create(member(), "AES", 256, object_type="private"), "object_type"),
    (lambda api: api.key_create(member(), "AES", 256, expiration="next tuesday"), "expiration"),
    (lambda api: api.key_create(member(), "AES", "256"), "bit_length"),
    (lambda api: api.key_create_pair(member(), "RSA", 1024), "bit_length"),
    (lambda api: api.key_create_pair(member(), "DSA", 2048), "algorithm"),
    (lambda api: api.key_store(member(), "secret", b"x"), "object_type"),
    (lambda api: api.key_store(member(), "opaque", b""), "value"),
    (lambda api: api.key_store(member(), "opaque", b"x" * (64 * 1024 + 1)), "value"),
    (lambda api: api.key_store(member(), "symmetric", b"x" * 16, "AES", 256), "bit_length"),
    (lambda api: api.key_store(member(), "opaque", b"x", name="n" * 256), "name"),
    (lambda api: api.key_get(member(), "not-a-uuid"), "uuid"),
    (lambda api: api.key_list(member(), object_type="volume"), "object_type"),
    (lambda api: api.key_delete(member(), None), "uuid"),
    (lambda api: api.key_consumer_add(member(), "f52a81b2-424e-490c-823d-6bd4235bc572",
                                      None, "volume", "v"), "service"),
])
def test_bad_arguments_are_named_and_change_nothing(harness, call, field):
    with pytest.raises(exception.InvalidInput) as caught:
        call(harness.api)

    assert caught.value.kwargs["field"] == field
    assert _rows() == [] and harness.notifications() == []


def test_a_client_capped_at_1_0_refuses_before_sending(harness):
    capped = CustosAPI(transport=rpc.TRANSPORT, timeout=10, version_cap="1.0")

    with pytest.raises(exception.RPCVersionCapped) as caught:
        capped.key_create(member(), "AES", 256)
    assert caught.value.kwargs["method"] == "key_create"
    assert _rows() == [] and capped.health(member())["database"] == "ok"


def test_values_are_sealed_and_never_logged_or_announced(harness, captured_logs, tmp_path):
    value = _value()
    uuid = harness.api.key_store(member(), "passphrase", value)
    created = harness.api.key_create(member(), "AES", 256)
    material = harness.api.key_get(member(), created)["value"]
    harness.api.key_delete(member(), created)
    db_api.dispose()

    database = b"".join(p.read_bytes() for p in tmp_path.glob("custos.sqlite*"))
    assert uuid.encode() in database  # the file really is the agent's database
    assert value not in database and base64.b64encode(value) not in database
    _assert_nowhere(value, harness, captured_logs)
    _assert_nowhere(material, harness, captured_logs)
    events = harness.notifications()
    assert [n["event_type"] for n in events] == ["key.create", "key.create", "key.delete"]
    assert events[0]["payload"] == {"uuid": uuid, "project_id": PROJECT,
                                    "object_type": "passphrase", "algorithm": None,
                                    "bit_length": None, "name": None}


def test_bytes_copied_onto_another_row_do_not_open(harness):
    first = harness.api.key_store(member(), "opaque", _value())
    second = harness.api.key_store(member(), "opaque", _value())
    with db_api.transaction() as session:
        rows = {row.uuid: row for row in session.scalars(sa.select(models.ManagedKey))}
        rows[second].value = rows[first].value
        rows[second].wrapped_key = rows[first].wrapped_key

    with pytest.raises(exception.DecryptionFailed):
        harness.api.key_get(member(), second)
    assert harness.api.key_get(member(), second, metadata_only=True)["uuid"] == second


def test_keys_survive_a_master_key_rotation(harness, master_key):
    value = _value()
    uuid = harness.api.key_store(member(), "private", value, "RSA", 2048)

    path = masterkey.get_ring().path
    staged = rotation.stage(path, harness.runtime.host)
    # Stored while the next key is staged everywhere: still under the old one.
    during = harness.api.key_store(member(), "opaque", _value())
    result = rotation.rotate_master(path, harness.runtime.host)

    assert result["master_key_id"] == staged["staged_key_id"]
    assert result["rewrapped"] >= 2
    assert {row.master_key_id for row in _rows()} == {result["master_key_id"]}
    assert result["master_key_id"] != master_key
    assert harness.api.key_get(member(), uuid)["value"] == value
    assert harness.api.key_get(member(), during)["uuid"] == during
    # Stored after the promotion: under the new key at once.
    after = harness.api.key_store(member(), "opaque", _value())
    assert {row.master_key_id for row in _rows() if row.uuid == after} == {
        result["master_key_id"]}


@pytest.mark.parametrize("caller", [
    make_context(PROJECT, ["reader"], []),
    make_context(PROJECT, [], ["service"]),
], ids=["reader", "service-token-alone"])
def test_a_caller_without_an_operator_role_is_refused(harness, caller):
    uuid = harness.api.key_store(member(), "passphrase", _value())

    for call in (lambda: harness.api.key_create(caller, "AES", 256),
                 lambda: harness.api.key_get(caller, uuid),
                 lambda: harness.api.key_list(caller),
                 lambda: harness.api.key_delete(caller, uuid, force=True)):
        with pytest.raises(exception.Forbidden):
            call()
    assert [row.uuid for row in _rows()] == [uuid]
