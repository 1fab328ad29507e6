"""Deletion events are claims: forged ones purge nothing, genuine ones only mark.

A real custos-agent on RabbitMQ (over PostgreSQL, SQLite and MariaDB, one
test each). The genuine events come from notifiers
configured as Cinder and Nova configure theirs (tests/services.py); the
forged ones from the same oslo.messaging notifiers pointed where an
attacker can publish: Nova's exchange (every compute host may publish
there), another publisher id, another project, or no project at all.
What the agent kept is read back through the RPC API and, for what the
API can no longer see, from its database; ``custos-manage restore`` and
``db purge`` run as the operator runs them.
"""

from __future__ import annotations

import copy
import functools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa

from agent import exception
from tests import common, services
from tests.common import (OTHER_PROJECT, PROJECT, log_lines, member, member_with_service,
                          service_only)
from tests.functional.agentproc import AgentProcess, run_script, write_config
from tests.functional.test_caller_events import asked_for, instance, targets

eventually = functools.partial(common.eventually, timeout=60.0)

TRUSTED = {"strategy": "trusted"}


@pytest.fixture
def forger(rabbit_url: str) -> Iterator[services.Service]:
    """A notifier on Nova's exchange, as any compute host can publish there."""
    service = services.nova(rabbit_url, host="evil-host")
    yield service
    service.close()


def notifier(service: services.Service, publisher_id: str,
             topic: str = "notifications") -> messaging.Notifier:
    """A notifier on ``service``'s transport (its exchange) with another publisher id."""
    return messaging.Notifier(service.transport, topics=[topic]).prepare(
        publisher_id=publisher_id)


def rows(database_url: str, model: str, **where: Any) -> list[dict[str, Any]]:
    """The agent's rows of table ``model`` matching ``where``, purged or not."""
    engine = sa.create_engine(database_url)
    try:
        table = sa.Table(model, sa.MetaData(), autoload_with=engine)
        with engine.connect() as connection:
            query = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def manage(proc: AgentProcess, *args: str, **events: Any) -> tuple[int, Any, str]:
    """Run custos-manage on the agent's configuration; return (status, JSON, stderr)."""
    config = proc.config
    if events:
        sections = copy.deepcopy(proc.sections)
        sections.setdefault("events", {}).update(events)
        config = write_config(proc.workdir / "manage.conf", sections)
    result = run_script("custos-manage", config, *args, check=False)
    output = json.loads(result.stdout) if result.returncode == 0 else None
    return result.returncode, output, result.stderr


def volume_payload(volume_id: str, **changes: Any) -> dict[str, Any]:
    payload = services.volume_deleted_legacy(volume_id)
    payload.update(changes)
    return {key: value for key, value in payload.items() if value is not None}


def test_forged_volume_deletions_change_nothing_and_a_genuine_one_only_marks(
        start_agent, api, cinder, forger, notifications, postgresql_url):
    proc = start_agent(database_url=postgresql_url, auth=TRUSTED)
    volume = str(uuid.uuid4())
    api.volume_glance_metadata_set(member_with_service(), volume, {"licence": "L-1"}, wait=True)
    passphrase_uuid = api.secret_generate(member(), "volume", volume)
    passphrase = api.secret_get_value(member(), passphrase_uuid)
    # Another project's key for the same volume id: no event of PROJECT reaches it.
    other_uuid = api.secret_generate(member(OTHER_PROJECT), "volume", volume)
    context = services.service_context()

    # On Nova's exchange, with Nova's and with Cinder's publisher ids.
    forger.legacy.info(context, "volume.delete.end", volume_payload(volume))
    notifier(forger, "volume.evil-host").info(context, "volume.delete.end",
                                               volume_payload(volume))
    # On Cinder's exchange, with a publisher id Cinder never uses.
    notifier(cinder, "compute.evil-host").info(context, "volume.delete.end",
                                                volume_payload(volume))
    # Cinder's own, naming no project, or two.
    cinder.legacy.info(context, "volume.delete.end", volume_payload(volume, tenant_id=None))
    cinder.legacy.info(context, "volume.delete.end",
                       volume_payload(volume, project_id=OTHER_PROJECT))

    assert eventually(lambda: len(log_lines(proc, "Ignored volume.delete.end")) == 5)
    ignored = log_lines(proc, "Ignored volume.delete.end")
    assert sum("count only from exchange cinder" in line for line in ignored) == 2
    assert sum("not a publisher id Cinder uses" in line for line in ignored) == 1
    assert sum("names no project" in line for line in ignored) == 2
    # Cinder's own, for another project: a claim on that project's rows only.
    cinder.legacy.info(context, "volume.delete.end",
                       volume_payload(volume, tenant_id="a-third-project"))
    assert eventually(lambda: log_lines(proc, f"Volume {volume} deleted: purged 0 glance "
                                              "metadata key(s) and 0 generated"))
    assert api.secret_get_value(member(), passphrase_uuid) == passphrase
    assert api.volume_glance_metadata_get(member(), volume) == {"licence": "L-1"}
    assert notifications.of("secret.undefine") == []

    services.delete_volume(cinder, volume, "legacy")

    assert eventually(lambda: log_lines(proc, f"Volume {volume} deleted: purged 1 glance "
                                              "metadata key(s) and 1 generated"))
    with pytest.raises(exception.SecretNotFound):
        api.secret_get_value(member(), passphrase_uuid)
    with pytest.raises(exception.SecretNotFound):
        api.secret_lookup_by_usage(member(), "volume", volume)
    assert passphrase_uuid not in [s["uuid"] for s in api.secret_list(member())]
    assert api.volume_glance_metadata_get(member(), volume) == {}
    # Announced as before, and the other project's key is untouched.
    undefined = notifications.wait_for("secret.undefine")
    assert undefined["payload"]["uuid"] == passphrase_uuid
    assert undefined["payload"]["project_id"] == PROJECT
    assert api.secret_get_value(member(OTHER_PROJECT), other_uuid)
    # Marked, not destroyed: the sealed value is still in the row.
    [row] = rows(proc.database_url, "secrets", uuid=passphrase_uuid)
    assert row["deleted_at"] is not None and row["value"] is not None

    # The usage is free for a new key meanwhile; a restore then refuses.
    newer = api.secret_generate(member(), "volume", volume)
    status, _, error = manage(proc, "restore", "volume", volume)
    assert status == 1 and "restore_conflict" in error and newer in error
    api.secret_undefine(member(), newer)

    assert notifications.of("secret.define", reason="restore") == []

    status, restored, error = manage(proc, "restore", "volume", volume)
    assert status == 0, error
    assert restored["restored"] == {"secrets": [passphrase_uuid],
                                    "glance_metadata": {PROJECT: ["licence"]},
                                    "boot_roles": 0}
    # Listeners that heard the purge hear the secret come back.
    announced = eventually(lambda: notifications.of("secret.define", reason="restore"))
    assert len(announced) == 1, announced
    assert announced[0]["payload"] == {"uuid": passphrase_uuid, "usage_type": "volume",
                                       "usage_id": volume, "project_id": PROJECT,
                                       "reason": "restore"}
    assert announced[0]["publisher_id"] == f"custos-manage.{proc.sections['DEFAULT']['host']}"
    assert api.secret_get_value(member(), passphrase_uuid) == passphrase
    assert api.secret_lookup_by_usage(member(), "volume", volume) == passphrase_uuid
    assert api.volume_glance_metadata_get(member(), volume) == {"licence": "L-1"}
    # Nothing is left to restore, and an id that is no UUID is refused.
    status, _, error = manage(proc, "restore", "secret", passphrase_uuid)
    assert status == 1 and "nothing_to_restore" in error
    status, _, error = manage(proc, "restore", "volume", "../etc")
    assert status == 1 and "invalid_input" in error

    # Deleted again; past the grace, custos-manage destroys it for good.
    services.delete_volume(cinder, volume, "versioned")
    assert eventually(lambda: len(log_lines(proc, f"Volume {volume} deleted: purged 1 glance "
                                                  "metadata key(s) and 1 generated")) == 2)
    status, kept, error = manage(proc, "db", "purge")
    assert status == 0, error
    assert kept["destroyed"] == {"secrets": 0, "glance_metadata": 0, "boot_roles": 0}
    status, destroyed, error = manage(proc, "db", "purge", purge_grace=0)
    assert status == 0, error
    assert destroyed["destroyed"] == {"secrets": 1, "glance_metadata": 1, "boot_roles": 0}
    assert rows(proc.database_url, "secrets", uuid=passphrase_uuid) == []
    assert rows(proc.database_url, "volume_glance_metadata", volume_id=volume) == []
    status, _, error = manage(proc, "restore", "volume", volume)
    assert status == 1 and "nothing_to_restore" in error


def test_forged_instance_deletions_change_nothing_and_purged_roles_stay_frozen(
        start_agent, api, server, nova, cinder):
    proc = start_agent(auth=TRUSTED, vendordata=targets(server))
    vm = instance()
    api.instance_boot_roles_set(member_with_service(), vm["uuid"], ["member"], wait=True)
    context = services.service_context()

    # Versioned, on Cinder's exchange; legacy from a publisher Nova never uses;
    # Nova's own for another project and for none.
    notifier(cinder, "nova-compute:evil-host", "versioned_notifications").info(
        context, "instance.delete.end", services.instance_deleted_versioned(vm["uuid"]))
    notifier(nova, "volume.evil-host").info(
        context, "compute.instance.delete.end", services.instance_deleted_legacy(vm["uuid"]))
    other = services.instance_deleted_legacy(vm["uuid"])
    other["tenant_id"] = OTHER_PROJECT
    nova.legacy.info(context, "compute.instance.delete.end", other)
    del other["tenant_id"]
    nova.legacy.info(context, "compute.instance.delete.end", other)

    assert eventually(lambda: len([line for line in log_lines(proc, "Ignored ")
                                   if "instance.delete.end from" in line]) == 3)
    assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: purged 0"))
    # A service cast after the forged events finds the roles still there.
    api.instance_boot_roles_set(service_only(), vm["uuid"], ["admin", "billing-exempt"],
                                wait=True)
    api.vendordata_get(service_only(), vm)
    assert [b["boot-roles"] for b in asked_for(server, vm)] == ["member"]

    services.delete_instance(nova, vm["uuid"], "versioned")
    assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: purged 1"))
    # Purged roles stay frozen: a later cast sets nothing.
    api.instance_boot_roles_set(service_only(), vm["uuid"], ["admin", "billing-exempt"],
                                wait=True)
    [row] = rows(proc.database_url, "instance_system_metadata", instance_uuid=vm["uuid"])
    assert json.loads(row["value"]) == ["member"] and row["deleted_at"] is not None

    status, restored, error = manage(proc, "restore", "instance", vm["uuid"])
    assert status == 0, error
    assert restored["restored"]["boot_roles"] == 1
    [row] = rows(proc.database_url, "instance_system_metadata", instance_uuid=vm["uuid"])
    assert row["deleted_at"] is None and json.loads(row["value"]) == ["member"]


def test_the_agent_destroys_purged_rows_once_the_grace_has_passed(start_agent, api, cinder,
                                                                  mysql_url):
    proc = start_agent(database_url=mysql_url, auth=TRUSTED,
                       events={"purge_grace": 1, "purge_interval": 1})
    volume, kept = str(uuid.uuid4()), str(uuid.uuid4())
    passphrase_uuid = api.secret_generate(member(), "volume", volume)
    kept_uuid = api.secret_generate(member(), "volume", kept)

    services.delete_volume(cinder, volume, "legacy")

    assert eventually(lambda: log_lines(proc, f"Volume {volume} deleted"))
    assert eventually(lambda: rows(proc.database_url, "secrets", uuid=passphrase_uuid) == [])
    assert log_lines(proc, "Destroyed purged rows past the grace of 1s: 1 secrets")
    assert api.secret_get_value(member(), kept_uuid)
