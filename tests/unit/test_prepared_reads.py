"""Hot reads and inserts on the driver's cursor do what SQLAlchemy does (db.prepared)."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from agent.connections import initiator_data
from agent.secrets import store
from db import api as db_api
from db import models, prepared, upsert

SECRET = "6f5c2a1e-0b7d-4c8e-9a3f-2d1b0c9e8f7a"
PLAIN = "0d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
DRIVER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def rows(migrated):
    """Three secrets (one with every column set, one a driver's) and initiator data."""
    when = datetime.datetime(2026, 11, 26, 21, 30, 15, 123456)
    with db_api.get_engine().begin() as conn:
        conn.execute(sa.insert(models.Secret), [
            {"uuid": SECRET, "project_id": "p1", "usage_type": "ceph", "usage_id": "pool-a",
             "description": "ring", "private": True, "generated": True,
             "value": b"\x00sealed\xff", "wrapped_key": b"\x01key", "master_key_id": "mk-1",
             "created_at": when, "updated_at": when},
        ])
        conn.execute(sa.insert(models.Secret), [
            {"uuid": PLAIN, "project_id": "p1", "private": False, "created_at": when}])
        conn.execute(sa.insert(models.Secret), [
            {"uuid": DRIVER, "driver_namespace": "ns", "usage_type": "ceph", "usage_id": "x",
             "private": True, "value": b"chap", "created_at": when}])
        conn.execute(sa.insert(models.DriverInitiatorData), [
            {"initiator": "iqn.a", "namespace": "ns", "key": key, "value": value,
             "created_at": when} for key, value in (("user", "u"), ("empty", None))
        ])
    return when


def _both(statement, params):
    """The rows of ``statement`` through SQLAlchemy and through db.prepared."""
    with db_api.read_engine().connect() as conn:
        expected = conn.execute(statement, params).all()
        got = prepared.run(conn, statement, params)
        assert isinstance(got, prepared.Rows)
        return expected, got.all()


@pytest.mark.parametrize("statement,params,count", [
    (store._BY_UUID, {"uuid": SECRET}, 1),
    (store._BY_UUID, {"uuid": PLAIN}, 1),
    (store._BY_UUID, {"uuid": "00000000-0000-4000-8000-000000000000"}, 0),
    (store._BY_USAGE, {"project_id": "p1", "usage_type": "ceph", "usage_id": "pool-a"}, 1),
    (store._BY_DRIVER_USAGE, {"namespace": "ns", "usage_type": "ceph", "usage_id": "x"}, 1),
    (initiator_data._READ, {"initiator": "iqn.a", "namespace": "ns"}, 2),
], ids=["by-uuid-full", "by-uuid-sparse", "by-uuid-none", "by-usage", "by-driver-usage",
        "initiator-data"])
def test_a_prepared_read_returns_the_values_and_types_sqlalchemy_returns(rows, statement,
                                                                       params, count):
    expected, got = _both(statement, params)

    assert len(expected) == count
    assert sorted(map(tuple, got), key=repr) == sorted(map(tuple, expected), key=repr)
    for want, have in zip(sorted(expected, key=repr), sorted(got, key=repr)):
        assert [type(value) for value in have] == [type(value) for value in want]
        assert have._fields == tuple(want._fields)


def test_columns_are_read_by_name_with_their_python_types(rows):
    _expected, (row,) = _both(store._BY_UUID, {"uuid": SECRET})

    assert row.value == b"\x00sealed\xff" and row.wrapped_key == b"\x01key"
    assert row.private is True and row.created_at == rows
    assert isinstance(row.created_at, datetime.datetime)


def test_one_or_none_refuses_two_rows(rows):
    with db_api.read_engine().connect() as conn:
        result = prepared.run(conn, initiator_data._READ,
                              {"initiator": "iqn.a", "namespace": "ns"})

        with pytest.raises(sa_exc.MultipleResultsFound):
            result.one_or_none()


def test_a_statement_with_a_list_parameter_goes_through_sqlalchemy(rows):
    table = models.Secret.__table__
    statement = sa.select(table.c.uuid).where(table.c.uuid.in_(sa.bindparam("uuids",
                                                                           expanding=True)))

    with db_api.read_engine().connect() as conn:
        assert prepared.prepare(statement, conn.dialect) is None
        result = prepared.run(conn, statement, {"uuids": [SECRET, PLAIN]})

        assert not isinstance(result, prepared.Rows)
        assert sorted(result.scalars()) == sorted([SECRET, PLAIN])


def test_a_driver_error_reaches_the_caller_as_sqlalchemy_reports_it(rows):
    statement = sa.select(sa.column("x")).select_from(sa.table("no_such_table"))

    with db_api.read_engine().connect() as conn:
        with pytest.raises(sa_exc.OperationalError) as raised:
            prepared.run(conn, statement, {})

    assert "no_such_table" in str(raised.value.orig)


def test_engine_listeners_see_each_prepared_statement(rows, statements):
    statements.clear()

    db_api.run_in_transaction(
        lambda session: store.SecretStore._read(session, SECRET), read_only=True)

    assert statements == ["SELECT"]


def _insert_roles(instance: str, **extra):
    def work(session):
        return db_api.execute(session, upsert._insert_if_absent_statement(
            "sqlite", models.InstanceSystemMetadata, ("instance_uuid", "key")),
            {"instance_uuid": instance, "key": "boot_roles", "value": '["member"]', **extra})
    return work


def _stored_text(instance: str) -> tuple[str, str]:
    with db_api.get_engine().connect() as conn:
        return tuple(conn.exec_driver_sql(
            "SELECT value, created_at FROM instance_system_metadata WHERE instance_uuid = ?",
            (instance,)).one())


def test_a_prepared_insert_stores_what_sqlalchemy_stores(migrated):
    when = datetime.datetime(2026, 11, 26, 21, 30, 15, 123456)
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())

    written = db_api.run_in_transaction(_insert_roles(ours, created_at=when))
    with db_api.get_engine().begin() as conn:
        conn.execute(sa.insert(models.InstanceSystemMetadata), {
            "instance_uuid": theirs, "key": "boot_roles", "value": '["member"]',
            "created_at": when})

    assert isinstance(written, prepared.Written) and written.rowcount == 1
    # The same text in the file, datetime format included.
    assert _stored_text(ours) == _stored_text(theirs)


def test_an_insert_leaving_a_default_to_sqlalchemy_goes_through_it(migrated):
    instance = str(uuid.uuid4())

    written = db_api.run_in_transaction(_insert_roles(instance))

    assert not isinstance(written, prepared.Written)
    value, created_at = _stored_text(instance)
    assert value == '["member"]' and created_at


def test_a_failed_prepared_insert_is_reported_without_its_values(migrated):
    secret_value = "s3cret-never-shown"
    table = models.InstanceSystemMetadata.__table__
    plain = sa.insert(table)
    row = {"instance_uuid": str(uuid.uuid4()), "key": "boot_roles", "value": secret_value,
           "created_at": datetime.datetime(2026, 11, 26)}

    assert prepared.prepare(plain, db_api.get_engine().dialect, frozenset(row)) is not None

    def twice(session):
        db_api.execute(session, plain, row)
        db_api.execute(session, plain, row)

    with pytest.raises(sa_exc.IntegrityError) as raised:
        db_api.run_in_transaction(twice)

    assert secret_value not in str(raised.value)
    assert "UNIQUE" in str(raised.value.orig)
    # Rolled back as a whole: the first insert is gone too.
    with db_api.get_engine().connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(table)) == 0
