"""The agent's notification listener: instance.delete.end and volume.delete.end.

Events are published on the fake transport, as Nova and Cinder publish
them, and reach the running agent's listener.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa

from agent import context, exception, rpc
from agent.events import payloads
from agent.handlers import events
from agent.vendordata import bootroles
from db import api as db_api
from db import models
from tests.common import PROJECT, service_only
from tests.stub_server import json_reply


def publish(event_type: str, payload: dict[str, Any], publisher: str = "compute.host-1") -> None:
    notifier = messaging.Notifier(rpc.NOTIFICATION_TRANSPORT, publisher_id=publisher,
                                  driver="messagingv2", topics=[rpc.NOTIFICATION_TOPIC],
                                  serializer=rpc.NotificationSerializer())
    notifier.info(context.get_admin_context(), event_type, payload)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def roles_of(instance_uuid: str) -> list[str] | None:
    return db_api.run_in_transaction(lambda s: bootroles.load(s, instance_uuid))


def count(model: Any, **where: Any) -> int:
    def work(session: Any) -> int:
        query = sa.select(sa.func.count()).select_from(model).filter_by(**where)
        return int(session.scalar(query))
    return db_api.run_in_transaction(work)


@pytest.fixture
def target(migrated, server):
    server.route("/t", json_reply({"ok": True}))
    migrated.set_override("targets", [f"t@{server.url('/t')}"], group="vendordata")
    return server


# -- instance.delete.end ------------------------------------------------------

def legacy_instance(instance_uuid: str) -> dict[str, Any]:
    return {"instance_id": instance_uuid, "tenant_id": PROJECT, "state": "deleted"}


def versioned_instance(instance_uuid: str) -> dict[str, Any]:
    return {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8",
            "nova_object.data": {"uuid": instance_uuid, "tenant_id": PROJECT,
                                 "state": "deleted"}}


@pytest.mark.parametrize("style", [legacy_instance, versioned_instance])
def test_instance_delete_purges_roles_and_cache(target, harness, style):
    vm = {"uuid": str(uuid.uuid4()), "project_id": PROJECT}
    kept = {"uuid": str(uuid.uuid4()), "project_id": PROJECT}
    for instance in (vm, kept):
        harness.api.instance_boot_roles_set(service_only(), instance["uuid"], ["member"],
                                            wait=True)
        harness.api.vendordata_get(service_only(), instance)

    publish("instance.delete.end", style(vm["uuid"]))

    assert eventually(lambda: roles_of(vm["uuid"]) is None)
    assert eventually(lambda: harness.runtime.vendordata.cache.get("t", vm["uuid"]) is None)
    assert roles_of(kept["uuid"]) == ["member"]
    harness.api.vendordata_get(service_only(), kept)
    harness.api.vendordata_get(service_only(), vm)
    bodies = [seen.json() for seen in target.seen("/t")]
    # kept: still cached (1 request); vm: asked again, without roles.
    assert [b["instance-id"] for b in bodies].count(kept["uuid"]) == 1
    assert bodies[-1] == {**bodies[-1], "instance-id": vm["uuid"], "boot-roles": ""}


def test_other_events_are_ignored(harness):
    vm = str(uuid.uuid4())
    harness.api.instance_boot_roles_set(service_only(), vm, ["member"], wait=True)

    publish("instance.delete.start", legacy_instance(vm))
    publish("instance.delete.end", legacy_instance(str(uuid.uuid4())))
    marker = str(uuid.uuid4())
    harness.api.instance_boot_roles_set(service_only(), marker, ["x"], wait=True)
    publish("instance.delete.end", legacy_instance(marker))

    # Events on one queue are taken in order: once the last is handled,
    # the earlier ones have been seen.
    assert eventually(lambda: roles_of(marker) is None)
    assert roles_of(vm) == ["member"]


# -- volume.delete.end --------------------------------------------------------

def add_volume_rows(volume_id: str, generated: bool = True) -> str:
    secret_uuid = str(uuid.uuid4())

    def work(session: Any) -> None:
        session.add_all([
            models.VolumeGlanceMetadata(volume_id=volume_id, key="image_id", value="img"),
            models.VolumeGlanceMetadata(volume_id=volume_id, key="os_distro", value="x"),
            models.Secret(uuid=secret_uuid, project_id=PROJECT, usage_type="volume",
                          usage_id=volume_id, generated=generated, private=False,
                          value=b"\x00" * 44, wrapped_key=b"\x01" * 60,
                          master_key_id="k1"),
        ])
    db_api.run_in_transaction(work)
    return secret_uuid


def legacy_volume(volume_id: str) -> dict[str, Any]:
    return {"volume_id": volume_id, "tenant_id": PROJECT, "status": "deleted"}


def versioned_volume(volume_id: str) -> dict[str, Any]:
    return {"cinder_object.name": "VolumePayload", "cinder_object.namespace": "cinder",
            "cinder_object.version": "1.0",
            "cinder_object.data": {"id": volume_id, "project_id": PROJECT}}


@pytest.mark.parametrize("style", [legacy_volume, versioned_volume])
def test_volume_delete_purges_glance_metadata_and_generated_secrets(harness, style):
    volume, other = str(uuid.uuid4()), str(uuid.uuid4())
    secret = add_volume_rows(volume)
    other_secret = add_volume_rows(other)

    publish("volume.delete.end", style(volume), publisher="volume.host-1")

    assert eventually(lambda: count(models.Secret, usage_id=volume) == 0)
    assert count(models.VolumeGlanceMetadata, volume_id=volume) == 0
    assert count(models.VolumeGlanceMetadata, volume_id=other) == 2
    assert count(models.Secret, uuid=other_secret) == 1
    assert eventually(lambda: bool(harness.notifications("secret.undefine")))
    [note] = harness.notifications("secret.undefine")
    assert note["payload"] == {"uuid": secret, "usage_type": "volume", "usage_id": volume,
                               "project_id": PROJECT, "reason": "volume.delete.end"}


def test_volume_delete_keeps_secrets_defined_by_hand(harness):
    volume = str(uuid.uuid4())
    add_volume_rows(volume, generated=False)

    publish("volume.delete.end", legacy_volume(volume))

    assert eventually(lambda: count(models.VolumeGlanceMetadata, volume_id=volume) == 0)
    assert count(models.Secret, usage_id=volume) == 1
    assert harness.notifications("secret.undefine") == []


def test_volume_delete_naming_the_volume_in_upper_case_still_purges(harness):
    volume = str(uuid.uuid4())
    add_volume_rows(volume)

    publish("volume.delete.end", legacy_volume(volume.upper()))

    assert eventually(lambda: count(models.Secret, usage_id=volume) == 0)
    assert count(models.VolumeGlanceMetadata, volume_id=volume) == 0


# -- acknowledgement ----------------------------------------------------------

class _Runtime:
    def __init__(self) -> None:
        self.vendordata = None
        self.sent: list[Any] = []

    def send_notifications(self, ctxt: Any, notifications: Any) -> None:
        self.sent.extend(notifications)


def _unavailable(func: Any) -> Any:
    raise exception.DatabaseUnavailable()


@pytest.mark.parametrize("endpoint_class, payload", [
    (events.InstanceDeleteEndpoint, legacy_instance(str(uuid.uuid4()))),
    (events.VolumeDeleteEndpoint, legacy_volume(str(uuid.uuid4()))),
])
def test_database_failure_requeues_and_sends_nothing(monkeypatch, endpoint_class, payload):
    monkeypatch.setattr(db_api, "run_in_transaction", _unavailable)
    runtime = _Runtime()

    result = endpoint_class(runtime).info({}, "p", "x.delete.end", payload, {})

    assert result == messaging.NotificationResult.REQUEUE
    assert runtime.sent == []


@pytest.mark.parametrize("endpoint_class, payload", [
    (events.InstanceDeleteEndpoint, {"instance_id": "not-a-uuid"}),
    (events.InstanceDeleteEndpoint, {}),
    (events.VolumeDeleteEndpoint, {"volume_id": 42}),
    (events.VolumeDeleteEndpoint, {"volume_id": "not-a-uuid"}),
    (events.VolumeDeleteEndpoint, {"cinder_object.data": "x"}),
])
def test_payload_naming_nothing_is_dropped_not_requeued(monkeypatch, endpoint_class, payload):
    monkeypatch.setattr(db_api, "run_in_transaction", _unavailable)

    result = endpoint_class(_Runtime()).info({}, "p", "x.delete.end", payload, {})

    assert result == messaging.NotificationResult.HANDLED


@pytest.mark.parametrize("payload, key, expected", [
    ({"instance_id": "i-1"}, "instance_id", "i-1"),
    ({"nova_object.data": {"uuid": "i-2"}}, "instance_id", "i-2"),
    ({"cinder_object.data": {"id": "v-1"}}, "volume_id", "v-1"),
    ({"cinder_object.data": {"uuid": "v-2"}}, "volume_id", "v-2"),
    ({"volume_id": "", "cinder_object.data": {"id": "v-3"}}, "volume_id", "v-3"),
    ({"volume_id": None}, "volume_id", None),
    (["volume_id"], "volume_id", None),
    ({"volume_id": "v" * 256}, "volume_id", None),
])
def test_resource_id_reads_both_payload_styles(payload, key, expected):
    assert payloads.resource_id(payload, key) == expected
