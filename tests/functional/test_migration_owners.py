"""Migration 0005 on SQLite, PostgreSQL and MariaDB: usages and glance rows per owner."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa

from db import migration

INITIATOR = "iqn.1993-08.org.debian:01:compute-1"
PLANTED = "iqn.2026-11.org.attacker:01:nowhere"
P1, P2 = "p1-project", "p2-project"
NOW = datetime.datetime(2026, 11, 25, 12, 0)


def secret_row(**values):
    row = {"uuid": str(uuid.uuid4()), "project_id": None, "usage_type": None,
           "usage_id": None, "description": None, "private": False, "generated": False,
           "created_at": NOW}
    row.update(values)
    return row


def test_0005_gives_the_driver_its_chap_secrets_and_nothing_else(engine):
    migration.db_sync("0004", engine=engine)
    meta = sa.MetaData()
    meta.reflect(engine)
    secrets, data, glance = (meta.tables[name] for name in
                             ("secrets", "driver_initiator_data", "volume_glance_metadata"))
    chap = secret_row(usage_type="iscsi", usage_id=f"chap:lvm:{INITIATOR}", private=True,
                      generated=True)
    victim = secret_row(project_id=P1, usage_type="ceph", usage_id="client.p1", private=True)
    volume = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(secrets.insert(), [chap, victim])
        conn.execute(data.insert(), [
            {"initiator": INITIATOR, "namespace": "lvm", "key": "chap_username",
             "value": "chap-1", "created_at": NOW},
            {"initiator": INITIATOR, "namespace": "lvm", "key": "chap_secret_uuid",
             "value": chap["uuid"], "created_at": NOW},
            {"initiator": PLANTED, "namespace": "lvm", "key": "chap_secret_uuid",
             "value": victim["uuid"], "created_at": NOW}])
        conn.execute(glance.insert(), [
            {"volume_id": volume, "key": "license", "value": "old", "project_id": None,
             "created_at": NOW}])

    migration.db_sync("head", engine=engine)

    meta = sa.MetaData()
    meta.reflect(engine)
    secrets, data, glance = (meta.tables[name] for name in
                             ("secrets", "driver_initiator_data", "volume_glance_metadata"))
    with engine.begin() as conn:
        rows = {row.uuid: row for row in conn.execute(sa.select(secrets))}
        assert (rows[chap["uuid"]].driver_namespace, rows[chap["uuid"]].usage_id,
                rows[chap["uuid"]].project_id) == ("lvm", INITIATOR, None)
        assert (rows[victim["uuid"]].driver_namespace, rows[victim["uuid"]].project_id,
                rows[victim["uuid"]].usage_id) == (None, P1, "client.p1")
        pointers = {(row.initiator, row.key) for row in conn.execute(sa.select(data))}
        # The pointers stay for agents of the previous release, which read them.
        assert pointers == {(INITIATOR, "chap_username"), (INITIATOR, "chap_secret_uuid"),
                            (PLANTED, "chap_secret_uuid")}
        # Per owner now: another project, and the driver, may hold the same usages.
        conn.execute(secrets.insert(), [
            secret_row(project_id=P2, usage_type="ceph", usage_id="client.p1"),
            secret_row(project_id=P2, usage_type="iscsi", usage_id=INITIATOR),
            secret_row(driver_namespace="other", usage_type="iscsi", usage_id=INITIATOR)])
        conn.execute(glance.insert(), [
            {"volume_id": volume, "key": "license", "value": "p2", "project_id": P2,
             "created_at": NOW}])
    for duplicate in (secret_row(project_id=P1, usage_type="ceph", usage_id="client.p1"),
                      secret_row(driver_namespace="lvm", usage_type="iscsi",
                                 usage_id=INITIATOR)):
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(secrets.insert(), [duplicate])
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(glance.insert(), [
                {"volume_id": volume, "key": "license", "value": "again", "project_id": P2,
                 "created_at": NOW}])
