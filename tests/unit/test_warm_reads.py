"""Read-only work runs on connections kept between requests (db.api.WarmConnections)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from db import api as db_api
from db import models
from tests.common import run_at_once


def _dbapi_connection_of_a_read() -> int:
    def work(session):
        session.execute(sa.select(sa.func.count()).select_from(models.Secret)).scalar_one()
        return id(session.connection().connection.dbapi_connection)

    return db_api.run_in_transaction(work, read_only=True)


def test_sequential_reads_run_on_one_kept_connection_outside_any_database_transaction(migrated):
    seen = {_dbapi_connection_of_a_read() for _ in range(5)}

    assert len(seen) == 1
    assert db_api.warm_reads().idle() == 1
    # What waits holds no database transaction, hence no snapshot of
    # older data (SQLAlchemy's own transaction on it emits no BEGIN).
    (conn, _born), = db_api.warm_reads()._idle
    assert not conn.connection.dbapi_connection.in_transaction
    assert db_api.read_engine().pool.checkedout() == 1


def test_a_burst_of_reads_keeps_no_more_than_the_pool_size_idle(migrated):
    readers = 12
    keep = db_api.read_engine().pool.size()
    assert readers > keep
    barrier = threading.Barrier(readers)

    def work(session):
        barrier.wait(10)
        return session.execute(sa.select(sa.literal(1))).scalar_one()

    def reader() -> None:
        assert db_api.run_in_transaction(work, read_only=True) == 1

    assert run_at_once([reader] * readers) == []
    assert db_api.warm_reads().idle() == keep
    # The rest went back to the pool: only the kept ones are checked out.
    assert db_api.read_engine().pool.checkedout() == keep


def test_a_connection_lost_mid_read_drops_every_kept_connection(migrated):
    _dbapi_connection_of_a_read()
    assert db_api.warm_reads().idle() == 1

    lost = sa_exc.DBAPIError("SELECT 1", {}, Exception("server closed the connection"),
                             connection_invalidated=True)
    with pytest.raises(sa_exc.DBAPIError):
        with db_api.transaction(read_only=True):
            raise lost

    assert db_api.warm_reads().idle() == 0
    assert db_api.read_engine().pool.checkedout() == 0
    # The next read takes a new connection and keeps it.
    _dbapi_connection_of_a_read()
    assert db_api.warm_reads().idle() == 1


def test_a_connection_in_use_while_the_others_are_dropped_is_not_kept(migrated):
    warm = db_api.warm_reads()
    conn, born, generation = warm.take()
    warm.drop()

    warm.give(conn, born, generation)

    assert warm.idle() == 0
    assert conn.closed


def test_a_connection_past_its_recycle_age_goes_back_to_the_pool(migrated):
    warm = db_api.warm_reads()
    conn, born, generation = warm.take()

    warm.give(conn, born - db_api.POOL_RECYCLE_S, generation)

    assert warm.idle() == 0
    assert conn.closed


def test_dispose_closes_the_kept_connections(migrated):
    _dbapi_connection_of_a_read()
    warm, engine = db_api.warm_reads(), db_api.read_engine()

    db_api.dispose()

    assert warm.idle() == 0
    assert engine.pool.checkedout() == 0


def test_a_prebuilt_read_goes_to_the_kept_connection_without_a_session_transaction(migrated):
    def work(session):
        value = db_api.execute(session, sa.select(sa.literal(7)), {}).scalar_one()
        return value, session.in_transaction()

    assert db_api.run_in_transaction(work, read_only=True) == (7, False)
    # A write transaction's reads stay in the session's own transaction.
    assert db_api.run_in_transaction(work) == (7, True)


def test_the_health_check_pings_on_a_kept_read_connection(migrated):
    assert db_api.ping() == "ok"
    assert db_api.ping() == "ok"

    assert db_api.warm_reads().idle() == 1
    assert db_api.read_engine().pool.checkedout() == 1
    assert _dbapi_connection_of_a_read() == id(
        db_api.warm_reads()._idle[0][0].connection.dbapi_connection)
