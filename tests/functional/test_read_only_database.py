"""Work without a write transaction, and kept connections, on each real database.

On PostgreSQL such work runs on connections that stay in autocommit, where
a write would commit by itself: it must be stopped before the server
sees it.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.connections import initiator_data
from agent.vendordata import bootroles
from agent.secrets import store
from db import api as db_api
from db import models, prepared
from tests.functional.conftest import DATABASES, create_database


@pytest.fixture(params=DATABASES)
def migrated_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url, drop = create_database(request.param, tmp_path, migrated=True)
    db_api.configure(url)
    try:
        yield url
    finally:
        db_api.dispose()
        drop()


def _insert(instance: str):
    def work(session):
        session.connection().execute(sa.insert(models.InstanceSystemMetadata), {
            "instance_uuid": instance, "key": "boot_roles", "value": "[]"})
    return work


def _stored(url: str, instance: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(
                models.InstanceSystemMetadata).where(
                    models.InstanceSystemMetadata.instance_uuid == instance))
    finally:
        engine.dispose()


def test_a_write_in_read_only_work_never_reaches_the_database(migrated_database):
    instance = str(uuid.uuid4())

    with pytest.raises(db_api.WriteNeeded):
        db_api.run_in_transaction(_insert(instance), read_only=True)

    assert _stored(migrated_database, instance) == 0
    # The connection it was refused on serves the next reads and writes.
    db_api.run_in_transaction(_insert(instance))
    assert db_api.run_in_transaction(lambda s: s.execute(sa.select(
        models.InstanceSystemMetadata.value).where(
            models.InstanceSystemMetadata.instance_uuid == instance)).scalar_one(),
        read_only=True) == "[]"
    assert _stored(migrated_database, instance) == 1


def test_read_only_work_sees_each_commit_at_once(migrated_database):
    instances = [str(uuid.uuid4()) for _ in range(20)]

    for n, instance in enumerate(instances):
        db_api.run_in_transaction(_insert(instance))
        seen = db_api.run_in_transaction(lambda s: s.execute(sa.select(sa.func.count()).select_from(
            models.InstanceSystemMetadata)).scalar_one(), read_only=True)
        assert seen == n + 1


def _count(session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(
        models.InstanceSystemMetadata)).scalar_one()


def test_a_kept_read_connection_the_server_ended_is_replaced_at_once(tmp_path):
    # Read-only work keeps its connections between requests; a server
    # restart or an idle timeout ends them without the agent knowing.
    url, drop = create_database("postgresql", tmp_path, migrated=True)
    db_api.configure(url)
    try:
        pid = db_api.run_in_transaction(
            lambda s: s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one(), read_only=True)
        assert db_api.warm_reads().idle() == 1
        admin = sa.create_engine(url)
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        admin.dispose()
        db_api.run_in_transaction(_insert(str(uuid.uuid4())))

        # The caller sees an answer, not the lost connection.
        assert db_api.run_in_transaction(_count, read_only=True) == 1
        again = db_api.run_in_transaction(
            lambda s: s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one(), read_only=True)
        assert again != pid
        assert db_api.warm_reads().idle() == 1
    finally:
        db_api.dispose()
        drop()


def test_nothing_is_kept_where_read_only_work_shares_the_write_pool(tmp_path):
    # MariaDB's reads share the engine's pool with writes: a kept
    # connection there would take one from the writers.
    url, drop = create_database("mysql", tmp_path, migrated=True)
    db_api.configure(url)
    try:
        assert db_api.run_in_transaction(_count, read_only=True) == 0
        assert db_api.warm_reads().idle() == 0
        assert db_api.get_engine().pool.checkedout() == 0
    finally:
        db_api.dispose()
        drop()


def test_prepared_reads_return_what_sqlalchemy_returns(migrated_database):
    secret = str(uuid.uuid4())
    when = datetime.datetime(2026, 11, 26, 21, 30, 15)
    with db_api.get_engine().begin() as conn:
        conn.execute(sa.insert(models.Secret), {
            "uuid": secret, "project_id": "p1", "usage_type": "ceph", "usage_id": "pool-a",
            "description": "ring", "private": True, "generated": False,
            "value": b"\x00sealed\xff", "wrapped_key": b"\x01key", "master_key_id": "mk-1",
            "created_at": when, "updated_at": when})
        conn.execute(sa.insert(models.DriverInitiatorData), [
            {"initiator": "iqn.a", "namespace": "ns", "key": key, "value": value,
             "created_at": when} for key, value in (("user", "u"), ("empty", None))])
    reads = [(store._BY_UUID, {"uuid": secret}),
             (store._BY_USAGE, {"project_id": "p1", "usage_type": "ceph", "usage_id": "pool-a"}),
             (initiator_data._READ, {"initiator": "iqn.a", "namespace": "ns"})]

    with db_api.read_engine().connect() as conn:
        for statement, params in reads:
            expected = sorted(conn.execute(statement, params).all(), key=repr)
            got = sorted(prepared.run(conn, statement, params).all(), key=repr)

            assert [tuple(row) for row in got] == [tuple(row) for row in expected]
            assert ([[type(value) for value in row] for row in got]
                    == [[type(value) for value in row] for row in expected])
        row, = prepared.run(conn, store._BY_UUID, {"uuid": secret}).all()
        # A parameter name SQLAlchemy escapes for the driver goes through it.
        odd = sa.select(models.Secret.__table__.c.uuid).where(
            models.Secret.__table__.c.uuid == sa.bindparam("the uuid"))
        assert prepared.prepare(odd, conn.dialect, frozenset({"the uuid"})) is None
        assert prepared.run(conn, odd, {"the uuid": secret}).scalar() == secret
    assert row.value == b"\x00sealed\xff" and row.private is True and row.created_at == when


def test_a_prepared_insert_on_a_lost_connection_runs_again_on_a_new_one(tmp_path):
    url, drop = create_database("postgresql", tmp_path, migrated=True)
    db_api.configure(url)
    admin = sa.create_engine(url)
    instance = str(uuid.uuid4())
    ended: list[int] = []

    def work(session):
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        if not ended:
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            ended.append(pid)
        bootroles.store_once(session, instance, ["member"])
        return pid

    try:
        pid = db_api.run_in_transaction(work)

        assert ended and pid != ended[0]
        assert _stored(url, instance) == 1
    finally:
        admin.dispose()
        db_api.dispose()
        drop()


def test_a_kept_write_connection_the_server_ended_is_replaced_at_once(tmp_path):
    url, drop = create_database("postgresql", tmp_path, migrated=True)
    db_api.configure(url)

    def pid_after_insert(instance: str):
        def work(session):
            bootroles.store_once(session, instance, ["member"])
            return session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        return work

    try:
        pid = db_api.run_in_transaction(pid_after_insert(str(uuid.uuid4())))
        assert db_api.warm_writes().idle() == 1
        admin = sa.create_engine(url)
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        admin.dispose()
        instance = str(uuid.uuid4())

        # The caller's write lands, on a new connection.
        again = db_api.run_in_transaction(pid_after_insert(instance))

        assert again != pid and _stored(url, instance) == 1
        assert db_api.warm_writes().idle() == 1
    finally:
        db_api.dispose()
        drop()


def _server_prepared(session) -> list[str]:
    """The statements the server holds prepared on this session's connection."""
    return list(session.connection().exec_driver_sql(
        "SELECT statement FROM pg_prepared_statements").scalars())


# A literal percent sign, which the driver's SQL text escapes.
_PERCENT = sa.select(sa.literal_column("'100%'").label("text"),
                     models.Secret.__table__.c.uuid).where(
    models.Secret.__table__.c.uuid == sa.bindparam("uuid"))


def _read_twice(secret: str) -> tuple[list[Any], list[str]]:
    def work(session):
        rows = [db_api.execute(session, store._BY_UUID, {"uuid": secret}).all()
                for _ in range(2)]
        rows.append(db_api.execute(session, _PERCENT, {"uuid": secret}).all())
        return rows, _server_prepared(session)

    return db_api.run_in_transaction(work, read_only=True)


@pytest.mark.parametrize("server_prepared", [True, False])
def test_postgresql_prepares_each_hot_read_once_per_connection(tmp_path, server_prepared):
    """The server plans a read once per connection; the rows are the same either way."""
    from oslo_config import cfg

    cfg.CONF.set_override("server_prepared_reads", server_prepared, group="database")
    url, drop = create_database("postgresql", tmp_path, migrated=True)
    db_api.configure(url)
    try:
        secret = str(uuid.uuid4())
        with db_api.get_engine().begin() as conn:
            conn.execute(sa.insert(models.Secret), {
                "uuid": secret, "project_id": "p1", "private": False, "generated": False,
                "created_at": datetime.datetime(2026, 12, 5)})

        rows, held = _read_twice(secret)
        _again, held_later = _read_twice(secret)
    finally:
        db_api.dispose()
        drop()
        cfg.CONF.clear_override("server_prepared_reads", group="database")

    first, second, percent = rows
    assert first == second and [row.uuid for row in first] == [secret]
    assert [tuple(row) for row in percent] == [("100%", secret)]
    if server_prepared:
        assert len([s for s in held if "FROM secrets" in s]) == 2
        assert held_later == held  # the kept connection prepared nothing again
    else:
        assert held == []
