"""The reference iscsi_chap driver through the agent's RPC API (fake transport)."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
import sqlalchemy as sa

from agent import exception
from db import api as db_api
from db.models import DriverInitiatorData, Secret
from tests.common import admin, member_with_service, service_only
from tests.unit.connections.conftest import PORTAL, PREFIX

INITIATOR = "iqn.1993-08.org.debian:01:compute-1"
OTHER_INITIATOR = "iqn.1993-08.org.debian:01:compute-2"


def attach(harness, initiator=INITIATOR, volume_id=None, **connector):
    volume = {"id": volume_id or str(uuid.uuid4())}
    return harness.api.initialize_connection(
        service_only(), volume, {"initiator": initiator, "host": "compute-1", **connector})


def chap_secrets(harness):
    """The driver's secrets as stored: no RPC method shows them to anyone."""
    with db_api.transaction() as session:
        return [{"uuid": row.uuid, "namespace": row.driver_namespace,
                 "project_id": row.project_id, "usage_type": row.usage_type,
                 "usage_id": row.usage_id, "private": row.private}
                for row in session.scalars(sa.select(Secret).order_by(Secret.id))]


def forget(**where):
    """Remove rows as an operator's repair in the database would."""
    with db_api.transaction() as session:
        if "key" in where:
            session.execute(sa.delete(DriverInitiatorData)
                            .where(DriverInitiatorData.key == where["key"]))
        if "secret" in where:
            session.execute(sa.delete(Secret).where(Secret.uuid == where["secret"]))


def test_first_attach_returns_iscsi_target_and_chap_credentials(chap_backend, harness, store):
    volume_id = str(uuid.uuid4())

    info = attach(harness, volume_id=volume_id)

    assert info["driver_volume_type"] == "iscsi"
    data = info["data"]
    assert data["target_iqn"] == f"{PREFIX}:volume-{volume_id}"
    assert data["target_portal"] == PORTAL
    assert data["target_lun"] == 0
    assert data["target_discovered"] is False
    assert data["access_mode"] == "rw"
    assert data["auth_method"] == "CHAP"
    assert data["auth_username"]
    assert len(data["auth_password"]) == 16
    assert "initiator_updates" not in info and "initiator_update" not in info


def test_the_password_is_the_drivers_own_secret_and_no_rpc_reaches_it(chap_backend, harness,
                                                                     store):
    password = attach(harness)["data"]["auth_password"]

    data = harness.api.initiator_data_get(admin(), INITIATOR, "lvm")

    assert set(data) == {"chap_username"}
    assert password not in data.values()
    [secret] = chap_secrets(harness)
    assert secret["namespace"] == "lvm" and secret["project_id"] is None
    assert (secret["usage_type"], secret["usage_id"]) == ("iscsi", INITIATOR)
    assert secret["private"] is True
    assert harness.api.secret_list(admin()) == []
    with pytest.raises(exception.SecretNotFound):
        harness.api.secret_get_value(admin(), secret["uuid"])
    with pytest.raises(exception.SecretNotFound):
        harness.api.secret_get_xml_desc(admin(), secret["uuid"])
    with pytest.raises(exception.SecretNotFound):
        harness.api.secret_lookup_by_usage(admin(), "iscsi", INITIATOR)
    with pytest.raises(exception.SecretNotFound):
        harness.api.secret_undefine(admin(), secret["uuid"])
    with pytest.raises(exception.SecretOwnedElsewhere):
        harness.api.secret_set_value(admin(), secret["uuid"], b"x")
    assert attach(harness)["data"]["auth_password"] == password


def test_second_attach_of_an_initiator_reuses_its_credentials(chap_backend, harness, store):
    first = attach(harness)["data"]

    second = attach(harness)["data"]

    assert (second["auth_username"], second["auth_password"]) == (
        first["auth_username"], first["auth_password"])
    assert len(chap_secrets(harness)) == 1


def test_another_initiator_gets_other_credentials(chap_backend, harness, store):
    first = attach(harness)["data"]

    other = attach(harness, initiator=OTHER_INITIATOR)["data"]

    assert other["auth_username"] != first["auth_username"]
    assert other["auth_password"] != first["auth_password"]
    assert len(chap_secrets(harness)) == 2


def test_attach_without_initiator_is_refused_and_changes_nothing(chap_backend, harness, store):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.initialize_connection(service_only(), {"id": str(uuid.uuid4())},
                                          {"host": "compute-1"})

    assert caught.value.kwargs["field"] == "connector.initiator"
    assert chap_secrets(harness) == []


def test_chap_rotate_replaces_the_credentials_on_the_next_attach(chap_backend, harness, store):
    old = attach(harness)["data"]
    [old_secret] = chap_secrets(harness)

    harness.api.initiator_data_update(member_with_service(), INITIATOR, "lvm",
                                      set_values={"chap_rotate": "true"})
    new = attach(harness)["data"]
    again = attach(harness)["data"]

    assert new["auth_password"] != old["auth_password"]
    assert new["auth_username"] != old["auth_username"]
    assert (again["auth_username"], again["auth_password"]) == (
        new["auth_username"], new["auth_password"])
    data = harness.api.initiator_data_get(admin(), INITIATOR, "lvm")
    assert data == {"chap_username": new["auth_username"]}
    [secret] = chap_secrets(harness)
    assert secret["uuid"] != old_secret["uuid"]


def test_a_lost_username_row_is_written_back_with_the_same_credentials(chap_backend, harness,
                                                                       store):
    old = attach(harness)["data"]
    forget(key="chap_username")

    new = attach(harness)["data"]

    assert (new["auth_username"], new["auth_password"]) == (
        old["auth_username"], old["auth_password"])
    assert harness.api.initiator_data_get(admin(), INITIATOR, "lvm") == {
        "chap_username": old["auth_username"]}
    assert len(chap_secrets(harness)) == 1


def test_a_secret_from_before_the_username_was_kept_with_it_still_serves(chap_backend,
                                                                         harness, store):
    with db_api.transaction() as session:
        store.create_driver_secret(session, namespace="lvm", usage_type="iscsi",
                                   usage_id=INITIATOR, value=b"LegacyPassw0rd")
        session.add(DriverInitiatorData(initiator=INITIATOR, namespace="lvm",
                                        key="chap_username", value="chap-legacy"))

    data = attach(harness)["data"]

    assert (data["auth_username"], data["auth_password"]) == ("chap-legacy", "LegacyPassw0rd")


def test_a_lost_chap_secret_gets_new_credentials(chap_backend, harness, store):
    old = attach(harness)["data"]
    [secret] = chap_secrets(harness)
    forget(secret=secret["uuid"])

    new = attach(harness)["data"]

    assert new["auth_password"] != old["auth_password"]
    assert len(chap_secrets(harness)) == 1


def test_a_secret_uuid_in_initiator_data_is_never_followed(chap_backend, harness, store):
    # Initiator data from before usage lookups, pointing at a project's secret.
    victim = harness.api.secret_define_xml(
        admin(), "<secret ephemeral='no' private='no'><usage type='ceph'>"
                 "<name>client.victim</name></usage></secret>")
    harness.api.secret_set_value(admin(), victim, b"victim")
    with db_api.transaction() as session:
        session.add_all([
            DriverInitiatorData(initiator=INITIATOR, namespace="lvm", key="chap_username",
                                value="chap-planted"),
            DriverInitiatorData(initiator=INITIATOR, namespace="lvm", key="chap_secret_uuid",
                                value=victim)])

    data = attach(harness)["data"]

    assert data["auth_password"] != "victim"
    assert harness.api.secret_get_value(admin(), victim) == b"victim"
    assert harness.api.initiator_data_get(admin(), INITIATOR, "lvm") == {
        "chap_username": data["auth_username"]}


def test_concurrent_first_attaches_share_one_secret(chap_backend, harness, store):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: attach(harness)["data"], range(8)))

    assert len({(r["auth_username"], r["auth_password"]) for r in replies}) == 1
    assert len(chap_secrets(harness)) == 1
    with db_api.transaction() as session:
        keys = session.scalars(sa.select(DriverInitiatorData.key)).all()
    assert sorted(keys) == ["chap_username"]


def test_driver_failure_after_creating_credentials_leaves_nothing(chap_backend, test_drivers,
                                                                  migrated, harness, store):
    # Another agent start, now with a driver that fails after its writes.
    harness.service.stop()
    harness.service.wait()
    migrated.set_override("volume_driver", "failing_chap", group="lvm-1")
    harness.service.start()
    harness.runtime.secrets = store

    with pytest.raises(exception.VolumeDriverError) as caught:
        attach(harness)

    assert caught.value.kwargs == {"backend": "lvm-1", "reason": "RuntimeError"}
    assert chap_secrets(harness) == []
    assert harness.api.initiator_data_get(admin(), INITIATOR, "lvm") == {}


def test_no_store_is_a_named_driver_error(chap_backend, harness):
    harness.runtime.connections.secrets = None

    with pytest.raises(exception.VolumeDriverError) as caught:
        attach(harness)

    assert "secret store" in caught.value.msg


def test_password_never_reaches_logs_or_notifications(chap_backend, captured_logs, harness,
                                                      store):
    password = attach(harness)["data"]["auth_password"]
    attach(harness)

    assert password not in captured_logs.text
    for record in captured_logs.records:
        assert password not in record.getMessage()
    notifications = harness.notifications()
    assert notifications
    assert password not in repr(notifications)


def test_a_longest_initiator_gets_and_keeps_credentials(chap_backend, harness, store):
    initiator = "iqn.2004-10.com.example:" + "i" * 231

    first = attach(harness, initiator=initiator)["data"]
    second = attach(harness, initiator=initiator)["data"]

    assert len(initiator) == 255
    assert second["auth_password"] == first["auth_password"]
    [secret] = chap_secrets(harness)
    assert secret["usage_id"] == initiator


def test_repeat_attaches_send_no_begin_and_a_first_attach_commits_in_one(chap_backend, harness,
                                                                         statements):
    first = attach(harness)
    assert statements.count("BEGIN") == 1 and statements.count("INSERT") >= 2
    statements.clear()
    again = attach(harness)

    assert again["data"]["auth_password"] == first["data"]["auth_password"]
    # The initiator's data and its CHAP secret come in one statement.
    assert statements == ["SELECT"]
    assert [n["event_type"] for n in harness.notifications()].count("connection.initialize") == 2
