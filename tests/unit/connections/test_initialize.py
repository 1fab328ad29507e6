"""initialize_connection, terminate_connection and initiator data over the fake transport."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from agent import exception
from db import api as db_api
from tests.common import (OTHER_PROJECT, admin, auditor, make_context, member,
                          member_with_service, nobody, service_only)
from tests.unit.connections import drivers
from tests.unit.connections.conftest import configure_backend

INITIATOR = "iqn.1994-05.com.redhat:host-a"
VOLUME = {"id": str(uuid.uuid4())}
CONNECTOR = {"initiator": INITIATOR, "host": "host-a"}
INFO = {"driver_volume_type": "iscsi", "data": {"target_lun": 1}}


@pytest.fixture
def scripted(migrated, test_drivers):
    """Backend ``b1`` (scripted driver, namespace ``ns1``) and ``b2`` (dataless)."""
    configure_backend(migrated, "b1", "scripted", driver_data_namespace="ns1",
                      volume_backend_name="ignored")
    configure_backend(migrated, "b2", "dataless")
    migrated.set_override("enabled_backends", ["b1", "b2"])
    return drivers.ScriptedDriver


def reply_with(**extra):
    drivers.ScriptedDriver.reply = {**INFO, **extra}


def rows(harness, namespace="ns1"):
    return harness.api.initiator_data_get(admin(), INITIATOR, namespace)


def test_driver_gets_the_initiators_rows_of_its_namespace_only(scripted, harness):
    harness.api.initiator_data_update(member_with_service(), INITIATOR, "ns1",
                                      set_values={"a": "1"})
    harness.api.initiator_data_update(member_with_service(), INITIATOR, "other",
                                      set_values={"b": "2"})
    reply_with()

    info = harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    assert info == INFO
    assert scripted.calls[-1]["initiator_data"] == {"a": "1"}
    assert scripted.calls[-1]["namespace"] == "ns1"


def test_update_is_applied_and_stripped_from_the_reply(scripted, harness):
    harness.api.initiator_data_update(member_with_service(), INITIATOR, "ns1",
                                      set_values={"old": "x", "keep": "k", "change": "1"})
    reply_with(initiator_updates={"set_values": {"change": "2", "new": "n"},
                                  "remove_values": ["old", "absent"]})

    info = harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    assert info == INFO
    assert rows(harness) == {"keep": "k", "change": "2", "new": "n"}


def test_cinders_singular_spelling_is_accepted(scripted, harness):
    reply_with(initiator_update={"set_values": {"k": "v"}})

    info = harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    assert "initiator_update" not in info
    assert rows(harness) == {"k": "v"}


@pytest.mark.parametrize("update", [
    {"set_values": {"k": 1}},
    {"set_values": {"k": None}},
    {"set_values": ["k"]},
    {"remove_values": "k"},
    {"remove_values": [7]},
    {"set_values": {"k": "v"}, "remove_values": ["k"]},
    {"set_values": {"k": "v" * 256}},
    {"set_values": {"": "v"}},
    {"set_values": {"k": "v"}, "delete": ["x"]},
    "set k=v",
])
def test_malformed_update_is_refused_and_changes_nothing(scripted, harness, update):
    harness.api.initiator_data_update(member_with_service(), INITIATOR, "ns1",
                                      set_values={"before": "b"})
    reply_with(initiator_updates=update)

    with pytest.raises(exception.InvalidDriverUpdate) as caught:
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    assert caught.value.code == "invalid_driver_update"
    assert caught.value.kwargs["backend"] == "b1"
    assert rows(harness) == {"before": "b"}
    assert harness.notifications("connection.initialize") == []


def test_both_spellings_at_once_are_refused(scripted, harness):
    reply_with(initiator_updates={"set_values": {"a": "1"}},
               initiator_update={"set_values": {"b": "2"}})

    with pytest.raises(exception.InvalidDriverUpdate):
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    assert rows(harness) == {}


def test_update_without_an_initiator_is_refused(scripted, harness):
    reply_with(initiator_updates={"set_values": {"a": "1"}})

    with pytest.raises(exception.InvalidDriverUpdate):
        harness.api.initialize_connection(service_only(), VOLUME, {"host": "h"}, backend="b1")


def test_driver_exception_is_a_named_error_and_the_agent_keeps_serving(scripted, harness):
    scripted.reply = KeyError("boom")

    with pytest.raises(exception.VolumeDriverError) as caught:
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    assert caught.value.kwargs == {"backend": "b1", "reason": "KeyError"}
    reply_with()
    assert harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1") == INFO


@pytest.mark.parametrize("reply", [["iscsi"], {"data": {}}, {"driver_volume_type": "iscsi"}])
def test_reply_that_is_no_connection_info_is_a_driver_error(scripted, harness, reply):
    scripted.reply = reply

    with pytest.raises(exception.VolumeDriverError):
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")


def test_driver_that_wants_no_data_costs_no_query(scripted, harness):
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    engine = db_api.get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        reply_with()
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b2")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert drivers.ScriptedDriver.calls[-1]["initiator_data"] is None
    assert not [s for s in statements if "driver_initiator_data" in s]


def test_notifications_name_keys_never_values(scripted, harness):
    reply_with(initiator_updates={"set_values": {"token": "s3cr3t-value"},
                                  "remove_values": ["gone"]})

    harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="b1")

    [attach] = harness.notifications("connection.initialize")
    assert attach["payload"] == {
        "volume_id": VOLUME["id"], "backend": "b1", "namespace": "ns1",
        "initiator": INITIATOR, "host": "host-a", "driver_volume_type": "iscsi",
        "initiator_keys_set": ["token"], "initiator_keys_removed": ["gone"]}
    [update] = harness.notifications("initiator_data.update")
    assert update["payload"] == {"initiator": INITIATOR, "namespace": "ns1",
                                 "keys_set": ["token"], "keys_removed": ["gone"]}
    assert "s3cr3t-value" not in repr(harness.notifications())


def test_backend_must_be_named_when_several_are_enabled(scripted, harness):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR)

    assert caught.value.kwargs["field"] == "backend"


def test_unknown_backend_is_backend_not_found(scripted, harness):
    with pytest.raises(exception.BackendNotFound):
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR, backend="nope")


def test_no_backend_enabled_is_backend_not_found(harness):
    with pytest.raises(exception.BackendNotFound):
        harness.api.initialize_connection(service_only(), VOLUME, CONNECTOR)


@pytest.mark.parametrize("volume, connector, field", [
    ({}, CONNECTOR, "volume.id"),
    ({"id": "not-a-uuid"}, CONNECTOR, "volume.id"),
    ("vol", CONNECTOR, "volume"),
    (VOLUME, ["iqn"], "connector"),
    (VOLUME, {"initiator": "i" * 256}, "connector.initiator"),
    (VOLUME, {"initiator": 5}, "connector.initiator"),
    (VOLUME, {"host": ["h"]}, "connector.host"),
    ({**VOLUME, "project_id": 3}, CONNECTOR, "volume.project_id"),
])
def test_bad_arguments_name_the_field(scripted, harness, volume, connector, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.initialize_connection(service_only(), volume, connector, backend="b1")

    assert caught.value.kwargs["field"] == field
    assert drivers.ScriptedDriver.calls == []


@pytest.mark.parametrize("ctx", [
    member(), member(OTHER_PROJECT), nobody(), auditor(),
    make_context(None, ["member"]), make_context(None, ["reader"])])
def test_attach_and_detach_are_refused_to_anyone_but_a_service_or_the_admin(
        scripted, harness, ctx):
    reply_with()

    with pytest.raises(exception.Forbidden):
        harness.api.initialize_connection(ctx, VOLUME, CONNECTOR, backend="b1")
    with pytest.raises(exception.Forbidden):
        harness.api.terminate_connection(ctx, VOLUME, CONNECTOR, backend="b1")

    assert drivers.ScriptedDriver.calls == []
    assert harness.notifications() == []


@pytest.mark.parametrize("ctx", [
    service_only(), service_only(OTHER_PROJECT), make_context(None, ["service"]),
    member_with_service(),
    admin(), admin(OTHER_PROJECT)])
def test_a_service_token_a_service_user_or_the_admin_attaches_any_volume(
        scripted, harness, ctx):
    reply_with()
    volume = {**VOLUME, "project_id": OTHER_PROJECT}

    assert harness.api.initialize_connection(ctx, volume, CONNECTOR, backend="b1") == INFO
    harness.api.terminate_connection(ctx, volume, CONNECTOR, backend="b1")


def test_terminate_calls_the_driver_and_notifies(scripted, harness):
    harness.api.terminate_connection(service_only(), VOLUME, CONNECTOR, backend="b1", force=True)

    [note] = harness.notifications("connection.terminate")
    assert note["payload"] == {"volume_id": VOLUME["id"], "backend": "b1", "namespace": "ns1",
                               "initiator": INITIATOR, "host": "host-a", "force": True}


def test_terminate_refuses_a_non_boolean_force(scripted, harness):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.terminate_connection(service_only(), VOLUME, CONNECTOR, backend="b1", force="yes")

    assert caught.value.kwargs["field"] == "force"


@pytest.mark.parametrize("ctx", [member(), service_only(), auditor(), nobody(),
                                 member_with_service()])
def test_initiator_data_get_is_for_the_admin_only(harness, ctx):
    with pytest.raises(exception.Forbidden):
        harness.api.initiator_data_get(ctx, INITIATOR, "ns1")


@pytest.mark.parametrize("ctx", [member(), service_only(), admin(), auditor(), nobody()])
def test_initiator_data_update_needs_both_tokens(harness, ctx):
    with pytest.raises(exception.Forbidden):
        harness.api.initiator_data_update(ctx, INITIATOR, "ns1", set_values={"a": "1"})

    assert rows(harness) == {}


def test_initiator_data_update_sets_replaces_and_removes(harness):
    ctx = member_with_service()
    harness.api.initiator_data_update(ctx, INITIATOR, "ns1", set_values={"a": "1", "b": "2"})
    harness.api.initiator_data_update(ctx, INITIATOR, "ns1", set_values={"a": "3"},
                                      remove_values=["b", "never-set"])

    assert rows(harness) == {"a": "3"}
    assert rows(harness, "ns2") == {}
    with db_api.transaction() as session:
        count = session.scalar(sa.text("SELECT count(*) FROM driver_initiator_data"))
    assert count == 1
    payloads = [n["payload"] for n in harness.notifications("initiator_data.update")]
    assert payloads == [
        {"initiator": INITIATOR, "namespace": "ns1", "keys_set": ["a", "b"], "keys_removed": []},
        {"initiator": INITIATOR, "namespace": "ns1", "keys_set": ["a"],
         "keys_removed": ["b", "never-set"]}]


@pytest.mark.parametrize("kwargs, field", [
    ({"initiator": "", "namespace": "ns"}, "initiator"),
    ({"initiator": "i" * 256, "namespace": "ns"}, "initiator"),
    ({"initiator": INITIATOR, "namespace": None}, "namespace"),
    ({"initiator": INITIATOR, "namespace": "ns", "set_values": {"k": "v" * 256}}, "set_values[k]"),
    ({"initiator": INITIATOR, "namespace": "ns", "set_values": {"k": 1}}, "set_values[k]"),
    ({"initiator": INITIATOR, "namespace": "ns", "set_values": ["k"]}, "set_values"),
    ({"initiator": INITIATOR, "namespace": "ns", "remove_values": "k"}, "remove_values"),
    ({"initiator": INITIATOR, "namespace": "ns", "set_values": {"k": "v"},
      "remove_values": ["k"]}, "remove_values"),
])
def test_initiator_data_update_refuses_bad_input(harness, kwargs, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.initiator_data_update(member_with_service(), **kwargs)

    assert caught.value.kwargs["field"] == field
    assert harness.notifications("initiator_data.update") == []


@pytest.mark.parametrize("kwargs, field", [
    ({"set_values": {"chap_secret_uuid": str(uuid.uuid4())}}, "set_values.chap_secret_uuid"),
    ({"set_values": {"chap_username": "mine", "other": "x"}}, "set_values.chap_username"),
    ({"remove_values": ["chap_username"]}, "remove_values.chap_username"),
])
def test_initiator_data_update_refuses_the_keys_the_driver_keeps(chap_backend, harness,
                                                                 kwargs, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.initiator_data_update(member_with_service(), INITIATOR, "lvm", **kwargs)

    assert caught.value.kwargs["field"] == field
    assert rows(harness, "lvm") == {}
    assert harness.notifications("initiator_data.update") == []


def test_the_driver_keys_are_free_in_a_namespace_no_chap_backend_uses(chap_backend, harness):
    harness.api.initiator_data_update(member_with_service(), INITIATOR, "ns-other",
                                      set_values={"chap_username": "u"})

    assert rows(harness, "ns-other") == {"chap_username": "u"}
