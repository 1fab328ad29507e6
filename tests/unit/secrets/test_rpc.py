"""The secret RPC methods as a caller sees them, on an in-process agent."""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent import exception, rpc
from agent.keystore import envelope
from agent.secrets.store import KIND
from agent.service import AgentService
from db import api as db_api
from db import models
from rpcapi import CustosAPI
from tests.common import OTHER_PROJECT, PROJECT, admin, member, nobody

CORPUS = (Path(__file__).resolve().parents[3].parent
          / "shared" / "corpus" / "libvirt-secretxml")
UUID = "f52a81b2-424e-490c-823d-6bd4235bc572"


def _xml(usage_type: str = "ceph", usage_id: str = "client.admin", uuid: str | None = None,
         ephemeral: bool = False, private: bool = False, description: str | None = None) -> str:
    child = {"volume": "volume", "iscsi": "target"}.get(usage_type, "name")
    parts = ["<secret ephemeral='%s' private='%s'>" % ("yes" if ephemeral else "no",
                                                       "yes" if private else "no")]
    if uuid:
        parts.append("<uuid>%s</uuid>" % uuid)
    if description:
        parts.append("<description>%s</description>" % description)
    parts.append("<usage type='%s'><%s>%s</%s></usage></secret>"
                 % (usage_type, child, usage_id, child))
    return "".join(parts)


def _value() -> bytes:
    """A value recognisable wherever it might leak."""
    return b"Sekret-" + secrets.token_hex(12).encode()


def _rows() -> list[models.Secret]:
    with db_api.transaction() as session:
        return list(session.scalars(sa.select(models.Secret)))


def _assert_nowhere(value: bytes, harness, logs) -> None:
    texts = [value.decode(), base64.b64encode(value).decode()]
    sent = json.dumps([n["payload"] for n in harness.notifications()])
    for text in texts:
        assert text not in logs.text
        assert text not in sent


# -- corpus ------------------------------------------------------------------

def _corpus_outcomes() -> dict[str, str]:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(
        r"^\|\s*(\S+\.xml)\s*\|\s*(accepted|rejected)\b", readme, re.MULTILINE)}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not found")
def test_every_corpus_document_is_accepted_or_rejected_as_libvirt_does(harness):
    outcomes = _corpus_outcomes()
    assert set(outcomes) == {p.name for p in CORPUS.glob("*.xml")}

    for name, outcome in sorted(outcomes.items()):
        text = (CORPUS / name).read_text(encoding="utf-8")
        if outcome == "rejected":
            with pytest.raises(exception.InvalidSecretXML):
                harness.api.secret_define_xml(admin(), text)
            continue
        uuid = harness.api.secret_define_xml(admin(), text)
        try:
            assert harness.api.secret_get_xml_desc(admin(), uuid) == text
        finally:
            # Some documents share a UUID with another usage (see README).
            harness.api.secret_undefine(admin(), uuid)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not found")
def test_corpus_documents_sharing_a_uuid_conflict_until_the_first_is_undefined(harness):
    ceph = (CORPUS / "usage-ceph.xml").read_text()
    tls = (CORPUS / "usage-tls.xml").read_text()
    uuid = harness.api.secret_define_xml(admin(), ceph)

    with pytest.raises(exception.SecretUsageConflict) as caught:
        harness.api.secret_define_xml(admin(), tls)
    harness.api.secret_undefine(admin(), uuid)

    assert caught.value.kwargs["holder"] == uuid
    assert harness.api.secret_define_xml(admin(), tls) == uuid


# -- libvirt's rules ---------------------------------------------------------

def test_redefining_with_the_same_usage_replaces_description(harness):
    api = harness.api
    uuid = api.secret_define_xml(member(), _xml(uuid=UUID, description="old"))
    api.secret_set_value(member(), uuid, b"kept")

    api.secret_define_xml(member(), _xml(uuid=UUID, description="new"))

    assert "<description>new</description>" in api.secret_get_xml_desc(member(), uuid)
    assert api.secret_get_value(member(), uuid) == b"kept"


@pytest.mark.parametrize("first, second", [(False, True), (True, False)])
def test_redefining_ephemeral_moves_the_secret_with_its_value(harness, first, second):
    api = harness.api
    api.secret_define_xml(member(), _xml(uuid=UUID, ephemeral=first))
    api.secret_set_value(member(), UUID, b"travels")

    api.secret_define_xml(member(), _xml(uuid=UUID, ephemeral=second))

    assert api.secret_get_value(member(), UUID) == b"travels"
    assert [row.uuid for row in _rows()] == ([] if second else [UUID])
    assert api.secret_list(member())[0]["ephemeral"] is second


@pytest.mark.parametrize("ephemeral", [False, True])
def test_redefining_with_another_usage_is_a_conflict_naming_the_secret(harness, ephemeral):
    harness.api.secret_define_xml(member(), _xml(uuid=UUID, ephemeral=ephemeral))

    with pytest.raises(exception.SecretUsageConflict) as caught:
        harness.api.secret_define_xml(member(), _xml("tls", "web", uuid=UUID))

    assert caught.value.kwargs["holder"] == UUID
    assert harness.api.secret_lookup_by_usage(member(), "ceph", "client.admin") == UUID


@pytest.mark.parametrize("first_ephemeral, second_ephemeral",
                         [(False, False), (False, True), (True, False), (True, True)])
def test_one_secret_per_usage_across_both_stores(harness, first_ephemeral, second_ephemeral):
    holder = harness.api.secret_define_xml(member(), _xml(ephemeral=first_ephemeral))

    with pytest.raises(exception.SecretUsageConflict) as caught:
        harness.api.secret_define_xml(member(), _xml(ephemeral=second_ephemeral))
    with pytest.raises(exception.SecretUsageConflict):
        harness.api.secret_generate(member(), "ceph", "client.admin",
                                    ephemeral=second_ephemeral)

    assert caught.value.kwargs["holder"] == holder
    assert [s["uuid"] for s in harness.api.secret_list(member())] == [holder]


@pytest.mark.parametrize("ephemeral", [False, True])
def test_private_never_becomes_public(harness, ephemeral):
    harness.api.secret_define_xml(member(), _xml(uuid=UUID, private=True, ephemeral=ephemeral))

    with pytest.raises(exception.SecretPrivateChange):
        harness.api.secret_define_xml(member(), _xml(uuid=UUID, ephemeral=ephemeral))

    assert "private='yes'" in harness.api.secret_get_xml_desc(member(), UUID)


def test_a_public_secret_may_become_private(harness):
    harness.api.secret_define_xml(member(), _xml(uuid=UUID))
    harness.api.secret_set_value(member(), UUID, b"v")

    harness.api.secret_define_xml(member(), _xml(uuid=UUID, private=True))

    with pytest.raises(exception.SecretPrivate):
        harness.api.secret_get_value(member(), UUID)


def test_unknown_uuid_and_usage_are_not_found(harness):
    api = harness.api
    for call in (lambda: api.secret_get_xml_desc(member(), UUID),
                 lambda: api.secret_get_value(member(), UUID),
                 lambda: api.secret_set_value(member(), UUID, b"x"),
                 lambda: api.secret_undefine(member(), UUID),
                 lambda: api.secret_lookup_by_usage(member(), "ceph", "nobody")):
        with pytest.raises(exception.SecretNotFound):
            call()


@pytest.mark.parametrize("ephemeral", [False, True])
def test_a_secret_without_a_value_answers_no_value(harness, ephemeral):
    uuid = harness.api.secret_define_xml(member(), _xml(ephemeral=ephemeral))

    with pytest.raises(exception.SecretNoValue):
        harness.api.secret_get_value(member(), uuid)


def test_undefine_deletes_the_row_with_its_wrapped_key(harness):
    uuid = harness.api.secret_define_xml(member(), _xml())
    harness.api.secret_set_value(member(), uuid, b"gone")
    assert [row.wrapped_key is not None for row in _rows()] == [True]

    harness.api.secret_undefine(member(), uuid)

    assert _rows() == []
    with pytest.raises(exception.SecretNotFound):
        harness.api.secret_get_value(member(), uuid)


# -- values, privacy, generation -----------------------------------------------

@pytest.mark.parametrize("ephemeral", [False, True])
def test_private_values_are_refused_over_rpc_but_read_in_process(harness, ephemeral):
    uuid = harness.api.secret_define_xml(member(), _xml(private=True, ephemeral=ephemeral))
    harness.api.secret_set_value(member(), uuid, b"chap-password")

    with pytest.raises(exception.SecretPrivate):
        harness.api.secret_get_value(member(), uuid)
    assert _stored_value(harness, uuid) == b"chap-password"


def _stored_value(harness, uuid):
    """The value as the agent keeps it, opened in process."""
    store = harness.runtime.secrets
    if uuid in store.ephemeral:
        return store.ephemeral.get_value(uuid)
    with db_api.transaction() as session:
        row = session.scalars(sa.select(models.Secret).where(models.Secret.uuid == uuid)).one()
        return envelope.open_sealed(store.ring, KIND, uuid, envelope.Sealed(
            row.value, row.wrapped_key, row.master_key_id))


def test_a_value_of_64_kib_is_kept_and_one_byte_more_refused(harness):
    uuid = harness.api.secret_define_xml(member(), _xml())
    value = secrets.token_bytes(64 * 1024)

    harness.api.secret_set_value(member(), uuid, value)
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.secret_set_value(member(), uuid, value + b"x")

    assert caught.value.kwargs["field"] == "value"
    assert harness.api.secret_get_value(member(), uuid) == value


def test_generate_stores_a_passphrase_fetched_later_by_usage(harness):
    volume_id = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"

    uuid = harness.api.secret_generate(member(), "volume", volume_id, length=48)

    assert harness.api.secret_lookup_by_usage(member(), "volume", volume_id.lower()) == uuid
    value = harness.api.secret_get_value(member(), uuid)
    assert len(value) == 48 and value.isalnum()
    assert harness.api.secret_get_value(member(), uuid) == value
    assert [row.generated for row in _rows()] == [True]
    assert "<volume>%s</volume>" % volume_id.lower() in harness.api.secret_get_xml_desc(
        member(), uuid)


def test_generated_passphrases_differ(harness):
    first = harness.api.secret_generate(member(), "iscsi", "iqn.2010-10.org.example:a")
    second = harness.api.secret_generate(member(), "iscsi", "iqn.2010-10.org.example:b")

    assert (harness.api.secret_get_value(member(), first)
            != harness.api.secret_get_value(member(), second))


def test_generate_private_ephemeral_keeps_it_in_memory_and_unreadable(harness):
    uuid = harness.api.secret_generate(member(), "vtpm", "vm-1", private=True, ephemeral=True)

    with pytest.raises(exception.SecretPrivate):
        harness.api.secret_get_value(member(), uuid)
    assert _rows() == []
    assert harness.api.secret_list(member(), ephemeral=True)[0]["private"] is True


# -- ownership ---------------------------------------------------------------

def test_another_project_sees_nothing_and_admin_sees_all(harness):
    api = harness.api
    mine = api.secret_define_xml(member(), _xml())
    eph = api.secret_define_xml(member(), _xml("tls", "t", ephemeral=True))
    theirs = api.secret_define_xml(member(OTHER_PROJECT), _xml("vtpm", "v"))

    for uuid in (mine, eph):
        for call in (api.secret_get_xml_desc, api.secret_get_value, api.secret_undefine):
            with pytest.raises(exception.SecretNotFound):
                call(member(OTHER_PROJECT), uuid)
        with pytest.raises(exception.SecretNotFound):
            api.secret_define_xml(member(OTHER_PROJECT), _xml(uuid=uuid))
    with pytest.raises(exception.SecretNotFound):
        api.secret_lookup_by_usage(member(OTHER_PROJECT), "ceph", "client.admin")

    assert {s["uuid"] for s in api.secret_list(member())} == {mine, eph}
    assert [s["uuid"] for s in api.secret_list(member(OTHER_PROJECT))] == [theirs]
    assert {s["uuid"] for s in api.secret_list(admin(OTHER_PROJECT))} == {mine, eph, theirs}
    with pytest.raises(exception.SecretNotFound):
        api.secret_lookup_by_usage(admin(OTHER_PROJECT), "ceph", "client.admin")
    assert api.secret_lookup_by_usage(admin(OTHER_PROJECT), "ceph", "client.admin",
                                      project_id=PROJECT) == mine


def test_callers_without_an_operator_role_or_project_are_forbidden(harness):
    with pytest.raises(exception.Forbidden):
        harness.api.secret_list(nobody())
    with pytest.raises(exception.Forbidden):
        harness.api.secret_define_xml(member(project_id=None), _xml())


def test_list_filters(harness):
    api = harness.api
    a = api.secret_define_xml(member(), _xml("ceph", "a", private=True))
    b = api.secret_define_xml(member(), _xml("tls", "b", ephemeral=True))
    c = api.secret_define_xml(member(), _xml("tls", "c"))

    def uuids(**filters):
        return {s["uuid"] for s in api.secret_list(member(), **filters)}

    assert uuids() == {a, b, c}
    assert uuids(ephemeral=True) == {b}
    assert uuids(ephemeral=False) == {a, c}
    assert uuids(private=True) == {a}
    assert uuids(usage_type="tls", ephemeral=False) == {c}
    assert api.secret_list(member(), private=True) == [{
        "uuid": a, "usage_type": "ceph", "usage_id": "a", "ephemeral": False,
        "private": True, "description": None}]


# -- bad input ---------------------------------------------------------------

@pytest.mark.parametrize("method, kwargs, field", [
    ("secret_define_xml", {"xml": 5}, "xml"),
    ("secret_define_xml", {"xml": "<secret"}, "xml"),
    ("secret_define_xml", {"xml": "<secret/>" + " " * (64 * 1024)}, "xml"),
    ("secret_get_xml_desc", {"uuid": "not-a-uuid"}, "uuid"),
    ("secret_set_value", {"uuid": UUID, "value": "***"}, "value"),
    ("secret_set_value", {"uuid": UUID, "value": "a==="}, "value"),
    ("secret_set_value", {"uuid": UUID}, "value"),
    ("secret_get_value", {"uuid": 7}, "uuid"),
    ("secret_undefine", {"uuid": None}, "uuid"),
    ("secret_list", {"ephemeral": "yes"}, "ephemeral"),
    ("secret_list", {"usage_type": "passphrase"}, "usage_type"),
    ("secret_lookup_by_usage", {"usage_type": "ceph", "usage_id": "x" * 256}, "usage_id"),
    ("secret_lookup_by_usage", {"usage_type": "none", "usage_id": "x"}, "usage_type"),
    ("secret_generate", {"usage_type": "ceph", "usage_id": "x", "length": 15}, "length"),
    ("secret_generate", {"usage_type": "ceph", "usage_id": "x", "length": 1025}, "length"),
    ("secret_generate", {"usage_type": "ceph", "usage_id": "x", "private": 1}, "private"),
    ("secret_generate", {"usage_type": "volume", "usage_id": "relative/path"}, "usage_id"),
    ("secret_generate", {"usage_type": "ceph", "usage_id": ""}, "usage_id"),
    ("secret_generate", {"usage_type": "ceph", "usage_id": "x", "colour": "red"}, "colour"),
])
def test_bad_input_is_a_named_error_that_changes_nothing(harness, method, kwargs, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api._call(member(), method, **kwargs)

    assert caught.value.kwargs["field"] == field
    assert _rows() == [] and harness.api.secret_list(member()) == []
    assert harness.notifications() == []


# -- what leaves the agent -----------------------------------------------------

def test_notifications_name_persistent_changes_without_values(harness, captured_logs):
    value = _value()
    uuid = harness.api.secret_define_xml(member(), _xml())
    harness.api.secret_set_value(member(), uuid, value)
    harness.api.secret_get_value(member(), uuid)
    harness.api.secret_undefine(member(), uuid)

    sent = [(n["event_type"], n["payload"]) for n in harness.notifications()]
    expected = {"uuid": uuid, "usage_type": "ceph", "usage_id": "client.admin",
                "project_id": PROJECT, "ephemeral": False, "private": False,
                "generated": False}
    assert sent == [("secret.define", expected), ("secret.value_change", expected),
                    ("secret.undefine", expected)]
    _assert_nowhere(value, harness, captured_logs)


def test_ephemeral_secrets_leave_no_trace_and_vanish_on_restart(harness, captured_logs,
                                                                  migrated, tmp_path):
    value = _value()
    uuid = harness.api.secret_define_xml(member(), _xml("tls", "tls-1", ephemeral=True))
    harness.api.secret_set_value(member(), uuid, value)
    assert harness.api.secret_get_value(member(), uuid) == value
    harness.api.secret_define_xml(member(), _xml("tls", "tls-1", uuid=uuid, ephemeral=True,
                                                 description="redefined"))
    other = harness.api.secret_generate(member(), "ceph", "c", ephemeral=True)

    assert _rows() == []
    assert harness.notifications() == []
    for text in (uuid, other, "tls-1", value.decode()):
        assert text not in captured_logs.text
    database = b"".join(p.read_bytes() for p in tmp_path.glob("custos.sqlite*"))
    assert value not in database and uuid.encode() not in database

    harness.service.stop()
    harness.service.wait()
    restarted = AgentService(migrated)
    restarted.start()
    try:
        api = CustosAPI(transport=rpc.TRANSPORT, timeout=10)
        with pytest.raises(exception.SecretNotFound):
            api.secret_get_value(member(), uuid)
        assert api.secret_list(member()) == []
    finally:
        restarted.stop()
        restarted.wait()


def test_values_are_never_stored_or_logged_in_plain_text(harness, captured_logs, tmp_path):
    value = _value()
    uuid = harness.api.secret_define_xml(member(), _xml())
    harness.api.secret_set_value(member(), uuid, value)
    generated = harness.api.secret_generate(member(), "vtpm", "vm")
    passphrase = harness.api.secret_get_value(member(), generated)
    db_api.dispose()

    database = b"".join(p.read_bytes() for p in tmp_path.glob("custos.sqlite*"))
    assert uuid.encode() in database  # the file really is the agent's database
    assert value not in database and passphrase not in database
    assert base64.b64encode(value) not in database
    _assert_nowhere(value, harness, captured_logs)
    _assert_nowhere(passphrase, harness, captured_logs)


def test_refusals_about_an_ephemeral_secret_keep_it_out_of_the_log(harness, captured_logs):
    uuid = harness.api.secret_define_xml(member(), _xml("tls", "tls-9", ephemeral=True,
                                                       private=True))

    unset = harness.api.secret_define_xml(member(), _xml("tls", "tls-10", ephemeral=True))
    with pytest.raises(exception.SecretNoValue) as no_value:
        harness.api.secret_get_value(member(), unset)
    harness.api.secret_set_value(member(), uuid, b"v")
    with pytest.raises(exception.SecretPrivate):
        harness.api.secret_get_value(member(), uuid)
    with pytest.raises(exception.SecretPrivateChange):
        harness.api.secret_define_xml(member(), _xml("tls", "tls-9", uuid=uuid, ephemeral=True))
    with pytest.raises(exception.SecretUsageConflict) as conflict:
        harness.api.secret_define_xml(member(), _xml("tls", "tls-9"))
    with pytest.raises(exception.SecretUsageConflict) as moved:
        harness.api.secret_define_xml(member(), _xml("ceph", "c", uuid=uuid))

    assert conflict.value.kwargs["holder"] == moved.value.kwargs["holder"] == uuid
    assert unset not in no_value.value.msg
    assert uuid not in captured_logs.text and "tls-9" not in captured_logs.text
    assert unset not in captured_logs.text and "tls-10" not in captured_logs.text
