"""Write transactions run on connections kept between requests (db.api.WarmConnections)."""

from __future__ import annotations

import functools
import threading
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from agent.vendordata import bootroles
from db import api as db_api
from db import models
from tests.common import run_at_once


def _store(instance: str) -> int:
    """Store boot roles for ``instance``; return the DBAPI connection it used."""
    def work(session):
        bootroles.store_once(session, instance, ["member"])
        return id(session.connection().connection.dbapi_connection)

    return db_api.run_in_transaction(work)


def _stored() -> set[str]:
    with db_api.get_engine().connect() as conn:
        return set(conn.scalars(sa.select(models.InstanceSystemMetadata.instance_uuid)))


def test_sequential_writes_commit_on_one_kept_connection_left_outside_any_transaction(
        migrated):
    instances = [str(uuid.uuid4()) for _ in range(5)]

    used = {_store(instance) for instance in instances}

    assert len(used) == 1
    assert _stored() == set(instances)
    assert db_api.warm_writes().idle() == 1
    (conn, _born), = db_api.warm_writes()._idle
    assert not conn.in_transaction()
    assert not conn.connection.dbapi_connection.in_transaction


def test_a_failed_write_is_rolled_back_and_its_connection_serves_the_next(migrated):
    kept = _store(str(uuid.uuid4()))
    lost = str(uuid.uuid4())

    def fails(session):
        bootroles.store_once(session, lost, ["member"])
        raise RuntimeError("the handler failed after writing")

    with pytest.raises(RuntimeError):
        db_api.run_in_transaction(fails)

    assert lost not in _stored()
    assert db_api.warm_writes().idle() == 1
    assert _store(str(uuid.uuid4())) == kept


def test_a_burst_of_writes_keeps_no_more_than_the_pool_size_idle(migrated, monkeypatch):
    # On SQLite the agent's writers take turns before they take a
    # connection (db.api._writer_turn); without the turns, as on the other
    # databases, they all hold one at once, which is what this bound is for.
    monkeypatch.setattr(db_api, "_sqlite_writer", None)
    writers = 12
    keep = db_api.get_engine().pool.size()
    assert writers > keep
    barrier = threading.Barrier(writers)
    instances = [str(uuid.uuid4()) for _ in range(writers)]

    def writer(instance: str) -> None:
        def work(session):
            # Every writer holds a connection here at once (it is taken
            # before the work runs); on SQLite they then write in turn,
            # each waiting for the write lock (BEGIN IMMEDIATE).
            barrier.wait(10)
            bootroles.store_once(session, instance, [])
        db_api.run_in_transaction(work)

    assert run_at_once([functools.partial(writer, i) for i in instances], timeout=60) == []
    assert _stored() == set(instances)
    assert db_api.warm_writes().idle() == keep
    assert db_api.get_engine().pool.checkedout() == keep


def test_a_connection_lost_mid_write_drops_every_kept_connection(migrated):
    _store(str(uuid.uuid4()))
    lost = sa_exc.DBAPIError("INSERT", {}, Exception("server closed the connection"),
                             connection_invalidated=True)

    with pytest.raises(sa_exc.DBAPIError):
        with db_api.transaction():
            raise lost

    assert db_api.warm_writes().idle() == 0
    assert db_api.get_engine().pool.checkedout() == 0
    _store(str(uuid.uuid4()))
    assert db_api.warm_writes().idle() == 1


def test_dispose_closes_the_kept_write_connections(migrated):
    _store(str(uuid.uuid4()))
    warm, engine = db_api.warm_writes(), db_api.get_engine()

    db_api.dispose()

    assert warm.idle() == 0
    assert engine.pool.checkedout() == 0
