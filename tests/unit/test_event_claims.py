"""What an event must show before it purges, and what purged rows become.

The claim checks run on the endpoint's own inputs (publisher, payload,
the exchange the dispatcher read from the broker's delivery); purges,
restores and the grace run on a migrated SQLite database, and a
restore's announcement on the rabbit driver aimed at a closed port.
"""

from __future__ import annotations

import datetime
import socket
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from agent import exception, rpc
from agent.backups import glance
from agent.cmd import manage
from agent.events import grace, purge, restore
from agent.handlers import events
from agent.vendordata import bootroles
from db import api as db_api
from db import models
from tests import services
from tests.common import OTHER_PROJECT, PROJECT

CONF = SimpleNamespace(events=SimpleNamespace(instance_exchange="nova",
                                              volume_exchange="cinder"))
VOLUME = "0b5e9a64-4d1e-4c55-9f42-7d3c2b1a0e9f"
INSTANCE = "6a1f2e3d-4c5b-4a69-8877-665544332211"


def claim(source: events.Source, publisher: Any, payload: Any,
          exchange: str | None) -> events.Deletion | None:
    return events.claimed_deletion(CONF, source, publisher, "x.delete.end", payload,
                                   {"exchange": exchange})


@pytest.mark.parametrize("publisher, payload", [
    ("volume.volume-1", services.volume_deleted_legacy(VOLUME)),
    ("volume.host-2@lvm#pool", services.volume_deleted_versioned(VOLUME)),
])
def test_cinders_own_volume_deletions_count(publisher, payload):
    assert claim(events.VOLUMES, publisher, payload, "cinder") == events.Deletion(VOLUME,
                                                                                  PROJECT)


@pytest.mark.parametrize("publisher, payload", [
    ("compute.compute-1", services.instance_deleted_legacy(INSTANCE)),
    ("nova-compute:compute-1", services.instance_deleted_versioned(INSTANCE)),
    ("nova-api:api-1", services.instance_deleted_versioned(INSTANCE)),
])
def test_novas_own_instance_deletions_count(publisher, payload):
    assert claim(events.INSTANCES, publisher, payload, "nova") == events.Deletion(INSTANCE,
                                                                                  PROJECT)


def _without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


@pytest.mark.parametrize("source, publisher, payload, exchange", [
    # Another service's exchange, or one the transport does not name.
    (events.VOLUMES, "volume.volume-1", services.volume_deleted_legacy(VOLUME), "nova"),
    (events.VOLUMES, "volume.volume-1", services.volume_deleted_legacy(VOLUME), None),
    (events.INSTANCES, "compute.c-1", services.instance_deleted_legacy(INSTANCE), "cinder"),
    # Publisher ids the service never uses.
    (events.VOLUMES, "compute.evil-host", services.volume_deleted_legacy(VOLUME), "cinder"),
    (events.VOLUMES, "volume.", services.volume_deleted_legacy(VOLUME), "cinder"),
    (events.VOLUMES, "volume.v-1\n", services.volume_deleted_legacy(VOLUME), "cinder"),
    (events.VOLUMES, None, services.volume_deleted_legacy(VOLUME), "cinder"),
    (events.INSTANCES, "volume.v-1", services.instance_deleted_legacy(INSTANCE), "nova"),
    (events.INSTANCES, "nova-scheduler:s-1", services.instance_deleted_legacy(INSTANCE),
     "nova"),
    (events.INSTANCES, "compute.c 1\nforged", services.instance_deleted_legacy(INSTANCE),
     "nova"),
    # No project, two projects, a project that is no printable string.
    (events.VOLUMES, "volume.v-1", _without(services.volume_deleted_legacy(VOLUME),
                                            "tenant_id"), "cinder"),
    (events.VOLUMES, "volume.v-1", {**services.volume_deleted_legacy(VOLUME),
                                    "project_id": OTHER_PROJECT}, "cinder"),
    (events.VOLUMES, "volume.v-1", {**services.volume_deleted_legacy(VOLUME),
                                    "tenant_id": "p\nINFO forged"}, "cinder"),
    (events.VOLUMES, "volume.v-1", {**services.volume_deleted_legacy(VOLUME),
                                    "tenant_id": 7}, "cinder"),
])
def test_other_claims_purge_nothing_and_are_logged_on_one_line(
        captured_logs, source, publisher, payload, exchange):
    assert claim(source, publisher, payload, exchange) is None
    [record] = [r for r in captured_logs.records if r.name == "agent.handlers.events"]
    assert "\n" not in record.getMessage()


# -- purged rows ----------------------------------------------------------------

def secret_row(project_id: str = PROJECT, usage_id: str = VOLUME, **values: Any) -> str:
    secret_uuid = str(uuid.uuid4())

    def work(session: Any) -> None:
        session.add(models.Secret(uuid=secret_uuid, project_id=project_id, usage_type="volume",
                                  usage_id=usage_id, generated=True, private=False,
                                  value=b"\x00" * 44, wrapped_key=b"\x01" * 60,
                                  master_key_id="k1", **values))
    db_api.run_in_transaction(work)
    return secret_uuid


def secrets_of(**where: Any) -> list[models.Secret]:
    return db_api.run_in_transaction(lambda s: list(
        s.scalars(sa.select(models.Secret).filter_by(**where))))


def test_a_purge_touches_only_the_named_project_and_frees_the_usage(migrated):
    mine, theirs = secret_row(), secret_row(OTHER_PROJECT)

    removed = db_api.run_in_transaction(lambda s: purge.purge_volume(s, VOLUME, PROJECT))

    assert [s["uuid"] for s in removed.secrets] == [mine]
    [row] = secrets_of(uuid=mine)
    assert (row.usage_id, row.purged_usage_id, row.value) == (None, VOLUME, b"\x00" * 44)
    assert secrets_of(uuid=theirs)[0].deleted_at is None
    # The usage is free for a new secret of the project.
    newer = secret_row()
    with pytest.raises(exception.RestoreConflict) as refused:
        db_api.run_in_transaction(lambda s: restore.restore_volume(s, VOLUME))
    assert refused.value.kwargs["holder"] == newer
    assert secrets_of(uuid=mine)[0].deleted_at is not None


def test_a_purged_volumes_glance_metadata_refuses_writes_until_restored(migrated):
    db_api.run_in_transaction(lambda s: glance.update(s, VOLUME, {"licence": "L"},
                                                      project_id=PROJECT))
    db_api.run_in_transaction(lambda s: purge.purge_volume(s, VOLUME, PROJECT))

    for write in (glance.update, glance.replace):
        with pytest.raises(exception.VolumePurged):
            db_api.run_in_transaction(lambda s: write(s, VOLUME, {"licence": "forged"},
                                                      project_id=PROJECT))
    assert db_api.run_in_transaction(lambda s: glance.get(s, VOLUME, PROJECT)) == {}

    db_api.run_in_transaction(lambda s: restore.restore_volume(s, VOLUME))
    assert db_api.run_in_transaction(lambda s: glance.get(s, VOLUME, PROJECT)) == {
        "licence": "L"}


def test_purged_boot_roles_stay_frozen_and_come_back_on_restore(migrated):
    db_api.run_in_transaction(lambda s: bootroles.store_once(s, INSTANCE, ["member"], PROJECT))

    assert db_api.run_in_transaction(lambda s: purge.purge_instance(s, INSTANCE,
                                                                    OTHER_PROJECT)) == 0
    assert db_api.run_in_transaction(lambda s: purge.purge_instance(s, INSTANCE, PROJECT)) == 1
    db_api.run_in_transaction(lambda s: bootroles.store_once(s, INSTANCE, ["admin"], None))

    assert db_api.run_in_transaction(lambda s: bootroles.load(s, INSTANCE)) is None
    db_api.run_in_transaction(lambda s: restore.restore_instance(s, INSTANCE))
    assert db_api.run_in_transaction(lambda s: bootroles.load(s, INSTANCE)) == ["member"]
    with pytest.raises(exception.NothingToRestore):
        db_api.run_in_transaction(lambda s: restore.restore_instance(s, INSTANCE))


def test_a_restore_announces_each_secret_it_brings_back_without_its_value(migrated):
    mine = secret_row()
    db_api.run_in_transaction(lambda s: purge.purge_volume(s, VOLUME, PROJECT))

    restored = db_api.run_in_transaction(lambda s: restore.restore_volume(s, VOLUME))

    assert restored.announcements == [{"uuid": mine, "usage_type": "volume",
                                       "usage_id": VOLUME, "project_id": PROJECT,
                                       "reason": "restore"}]
    # What the command prints is unchanged.
    assert restored.as_dict() == {"secrets": [mine], "glance_metadata": {}, "boot_roles": 0}


def test_a_broker_that_takes_no_announcement_makes_the_command_fail(migrated):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    migrated.set_override("transport_url", f"rabbit://guest:guest@127.0.0.1:{closed}/")

    with pytest.raises(exception.RestoreNotAnnounced) as error:
        manage._announce("secret.define", [{"uuid": VOLUME, "reason": "restore"}],
                         retry_deadline=0.5)

    assert error.value.code == "notification_failed"
    assert str(error.value).startswith("Restored, but not every secret.define")
    assert not rpc.initialized()


def test_each_pass_destroys_at_most_a_batch_of_rows_past_the_grace(migrated):
    old = models.utcnow() - datetime.timedelta(hours=2)
    expired = [secret_row(usage_id=str(uuid.uuid4()), deleted_at=old) for _ in range(5)]
    recent = secret_row(usage_id=str(uuid.uuid4()), deleted_at=models.utcnow())
    live = secret_row(usage_id=str(uuid.uuid4()))

    counts = [grace.destroy_pass(3600, 2)["secrets"] for _ in range(4)]

    assert counts == [2, 2, 1, 0]
    assert not any(secrets_of(uuid=u) for u in expired)
    assert secrets_of(uuid=recent) and secrets_of(uuid=live)
    assert grace.destroy_all(0, 2)["secrets"] == 1
    assert secrets_of(uuid=live)
