"""The agent's notification listener: deleted instances and volumes.

Events are published on the fake transport by notifiers configured as
Nova and Cinder configure theirs (tests/services.py), on their own
exchanges, and reach the running agent's listeners.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa

from agent import exception, metrics
from agent.events import payloads
from agent.handlers import events
from agent.vendordata import bootroles
from db import api as db_api
from db import models
from tests import services
from tests.common import PROJECT, service_only
from tests.stub_server import json_reply


@pytest.fixture
def nova(harness) -> Iterator[services.Service]:
    service = services.nova("fake:/")
    yield service
    service.close()


@pytest.fixture
def cinder(harness) -> Iterator[services.Service]:
    service = services.cinder("fake:/")
    yield service
    service.close()


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


def live(model: Any, **where: Any) -> int:
    """Rows that are not purged."""
    return count(model, deleted_at=None, **where)


@pytest.fixture
def target(migrated, server):
    server.route("/t", json_reply({"ok": True}))
    migrated.set_override("targets", [f"t@{server.url('/t')}"], group="vendordata")
    return server


# -- instance.delete.end ------------------------------------------------------

def legacy_instance(instance_uuid: str) -> dict[str, Any]:
    return services.instance_deleted_legacy(instance_uuid)


@pytest.mark.parametrize("style", ["legacy", "versioned"])
def test_instance_delete_purges_roles_and_cache(target, harness, nova, style):
    vm = {"uuid": str(uuid.uuid4()), "project_id": PROJECT}
    kept = {"uuid": str(uuid.uuid4()), "project_id": PROJECT}
    for instance in (vm, kept):
        harness.api.instance_boot_roles_set(service_only(), instance["uuid"], ["member"],
                                            wait=True)
        harness.api.vendordata_get(service_only(), instance)

    services.delete_instance(nova, vm["uuid"], style)

    assert eventually(lambda: roles_of(vm["uuid"]) is None)
    assert eventually(lambda: harness.runtime.vendordata.cache.get_roles(vm["uuid"]) is None)
    assert roles_of(kept["uuid"]) == ["member"]
    harness.api.vendordata_get(service_only(), kept)
    harness.api.vendordata_get(service_only(), vm)
    bodies = [seen.json() for seen in target.seen("/t")]
    # kept: still cached (1 request); vm: asked again, without roles.
    assert [b["instance-id"] for b in bodies].count(kept["uuid"]) == 1
    assert bodies[-1] == {**bodies[-1], "instance-id": vm["uuid"], "boot-roles": ""}


def test_other_events_are_ignored(harness, nova):
    vm = str(uuid.uuid4())
    harness.api.instance_boot_roles_set(service_only(), vm, ["member"], wait=True)

    nova.legacy.info(services.service_context(), "compute.instance.delete.start",
                     legacy_instance(vm))
    services.delete_instance(nova, str(uuid.uuid4()), "legacy")
    marker = str(uuid.uuid4())
    harness.api.instance_boot_roles_set(service_only(), marker, ["x"], wait=True)
    services.delete_instance(nova, marker, "legacy")

    # Events on one queue are taken in order: once the last is handled,
    # the earlier ones have been seen.
    assert eventually(lambda: roles_of(marker) is None)
    assert roles_of(vm) == ["member"]


@pytest.fixture
def one_exchange_one_topic(migrated):
    migrated.set_override("exchanges", ["openstack"], group="events")
    migrated.set_override("instance_exchange", "openstack", group="events")
    migrated.set_override("topics", ["notifications"], group="events")


def test_the_listener_consumes_only_the_configured_exchanges_and_topics(
        one_exchange_one_topic, harness):
    elsewhere, versioned, consumed = (str(uuid.uuid4()) for _ in range(3))
    for vm in (elsewhere, versioned, consumed):
        harness.api.instance_boot_roles_set(service_only(), vm, ["member"], wait=True)
    default_nova = services.nova("fake:/")
    renamed_nova = services.nova("fake:/", exchange="openstack")

    services.delete_instance(default_nova, elsewhere, "legacy")
    services.delete_instance(renamed_nova, versioned, "versioned")
    services.delete_instance(renamed_nova, consumed, "legacy")

    assert eventually(lambda: roles_of(consumed) is None)
    time.sleep(0.5)
    assert roles_of(elsewhere) == ["member"]
    assert roles_of(versioned) == ["member"]


# -- volume.delete.end --------------------------------------------------------

def add_volume_rows(volume_id: str, generated: bool = True) -> str:
    secret_uuid = str(uuid.uuid4())

    def work(session: Any) -> None:
        session.add_all([
            models.VolumeGlanceMetadata(volume_id=volume_id, key="image_id", value="img",
                                        project_id=PROJECT),
            models.VolumeGlanceMetadata(volume_id=volume_id, key="os_distro", value="x",
                                        project_id=PROJECT),
            models.Secret(uuid=secret_uuid, project_id=PROJECT, usage_type="volume",
                          usage_id=volume_id, generated=generated, private=False,
                          value=b"\x00" * 44, wrapped_key=b"\x01" * 60,
                          master_key_id="k1"),
        ])
    db_api.run_in_transaction(work)
    return secret_uuid


def legacy_volume(volume_id: str) -> dict[str, Any]:
    return services.volume_deleted_legacy(volume_id)


def purged(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("custos_event_purges_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize("style", ["legacy", "versioned"])
def test_volume_delete_purges_glance_metadata_and_generated_secrets(harness, cinder, style):
    volume, other = str(uuid.uuid4()), str(uuid.uuid4())
    secret = add_volume_rows(volume)
    other_secret = add_volume_rows(other)
    glance, secrets = purged("glance_metadata"), purged("generated_secrets")

    services.delete_volume(cinder, volume, style)

    assert eventually(lambda: count(models.Secret, usage_id=volume) == 0)
    assert live(models.VolumeGlanceMetadata, volume_id=volume) == 0
    assert live(models.VolumeGlanceMetadata, volume_id=other) == 2
    assert live(models.Secret, uuid=other_secret) == 1
    # Marked, not destroyed: the purged secret keeps its usage aside.
    assert count(models.VolumeGlanceMetadata, volume_id=volume) == 2
    assert count(models.Secret, uuid=secret, purged_usage_id=volume) == 1
    assert eventually(lambda: bool(harness.notifications("secret.undefine")))
    [note] = harness.notifications("secret.undefine")
    assert note["payload"] == {"uuid": secret, "usage_type": "volume", "usage_id": volume,
                               "project_id": PROJECT, "reason": "volume.delete.end"}
    assert purged("glance_metadata") - glance == 2
    assert purged("generated_secrets") - secrets == 1


def test_volume_delete_keeps_secrets_defined_by_hand(harness, cinder):
    volume = str(uuid.uuid4())
    add_volume_rows(volume, generated=False)

    services.delete_volume(cinder, volume, "legacy")

    assert eventually(lambda: live(models.VolumeGlanceMetadata, volume_id=volume) == 0)
    assert live(models.Secret, usage_id=volume) == 1
    assert harness.notifications("secret.undefine") == []


def test_volume_delete_naming_the_volume_in_upper_case_still_purges(harness, cinder):
    volume = str(uuid.uuid4())
    add_volume_rows(volume)

    services.delete_volume(cinder, volume.upper(), "legacy")

    assert eventually(lambda: count(models.Secret, usage_id=volume) == 0)
    assert live(models.VolumeGlanceMetadata, volume_id=volume) == 0


# -- acknowledgement ----------------------------------------------------------

class _Runtime:
    def __init__(self) -> None:
        self.vendordata = None
        self.conf = SimpleNamespace(events=SimpleNamespace(instance_exchange="nova",
                                                           volume_exchange="cinder"))
        self.sent: list[Any] = []

    def send_notifications(self, ctxt: Any, notifications: Any) -> None:
        self.sent.extend(notifications)


def _unavailable(func: Any) -> Any:
    raise exception.DatabaseUnavailable()


#: (endpoint, the publisher and exchange its service uses)
GENUINE = {events.InstanceDeleteEndpoint: ("compute.compute-1", {"exchange": "nova"}),
           events.VolumeDeleteEndpoint: ("volume.volume-1", {"exchange": "cinder"})}


@pytest.mark.parametrize("endpoint_class, payload", [
    (events.InstanceDeleteEndpoint, legacy_instance(str(uuid.uuid4()))),
    (events.VolumeDeleteEndpoint, legacy_volume(str(uuid.uuid4()))),
])
def test_database_failure_requeues_and_sends_nothing(monkeypatch, endpoint_class, payload):
    monkeypatch.setattr(db_api, "run_in_transaction", _unavailable)
    runtime = _Runtime()
    publisher, metadata = GENUINE[endpoint_class]

    result = endpoint_class(runtime).info({}, publisher, "x.delete.end", payload, metadata)

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
    publisher, metadata = GENUINE[endpoint_class]

    result = endpoint_class(_Runtime()).info({}, publisher, "x.delete.end", payload, metadata)

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
