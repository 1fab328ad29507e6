"""Which database errors retry a whole transaction, and the engine's pool options."""

from __future__ import annotations

import pymysql
import sqlalchemy as sa
import pytest
from sqlalchemy import exc as sa_exc

from agent import exception
from db import api as db_api


def mysql_error(code: int, text: str) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, pymysql.err.OperationalError(code, text))


@pytest.mark.parametrize("code, text", [
    (1047, "WSREP has not yet prepared node for application use"),
    (1213, "Deadlock found when trying to get lock"),
    (1205, "Lock wait timeout exceeded"),
])
def test_galera_not_ready_and_deadlocks_are_retried(code, text):
    assert db_api.is_retriable(mysql_error(code, text))


def test_a_permanent_error_is_not_retried():
    assert not db_api.is_retriable(mysql_error(1146, "Table 'custos.nope' doesn't exist"))


def stale_connection_error() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                                   connection_invalidated=True)


def test_a_stale_pooled_connection_is_retried_at_once(conf, monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(db_api.time, "sleep", pauses.append)
    attempts: list[int] = []

    def work(session):
        attempts.append(1)
        if len(attempts) == 1:
            raise stale_connection_error()
        return "done"

    assert db_api.run_in_transaction(work) == "done"
    assert len(attempts) == 2
    assert pauses == []


def test_a_database_that_stays_away_is_retried_with_pauses(conf, monkeypatch):
    conf.set_override("max_retries", 2, group="database")
    pauses: list[float] = []
    monkeypatch.setattr(db_api.time, "sleep", pauses.append)
    attempts: list[int] = []

    def work(session):
        attempts.append(1)
        raise stale_connection_error()

    with pytest.raises(exception.DatabaseUnavailable):
        db_api.run_in_transaction(work)
    assert pauses, "a database that stays away is waited for, not hammered"
    assert len(attempts) >= 3


def hidden_behind_a_savepoint(code: int, text: str) -> sa_exc.OperationalError:
    """The 1305 a ROLLBACK TO SAVEPOINT raises after ``code`` ended the transaction."""
    try:
        try:
            raise mysql_error(code, text)
        except sa_exc.OperationalError:
            raise mysql_error(1305, "SAVEPOINT sa_savepoint_1 does not exist")
    except sa_exc.OperationalError as error:
        return error


@pytest.mark.parametrize("code, text", [
    (1213, "Deadlock found when trying to get lock; try restarting transaction"),
    (1047, "WSREP has not yet prepared node for application use"),
])
def test_a_deadlock_hidden_by_a_lost_savepoint_is_retried(code, text):
    assert db_api.is_retriable(hidden_behind_a_savepoint(code, text))


def test_a_lost_savepoint_alone_is_not_retried():
    assert not db_api.is_retriable(mysql_error(1305, "SAVEPOINT sa_savepoint_1 does not exist"))
    try:
        try:
            raise mysql_error(1062, "Duplicate entry")
        except sa_exc.OperationalError:
            raise mysql_error(1305, "SAVEPOINT sa_savepoint_1 does not exist")
    except sa_exc.OperationalError as error:
        assert not db_api.is_retriable(error)


def test_the_whole_transaction_runs_again_after_a_hidden_deadlock(conf, monkeypatch):
    monkeypatch.setattr(db_api.time, "sleep", lambda _s: None)
    attempts: list[int] = []

    def work(session):
        attempts.append(1)
        if len(attempts) == 1:
            raise hidden_behind_a_savepoint(1213, "Deadlock found when trying to get lock")
        return "done"

    assert db_api.run_in_transaction(work) == "done"
    assert len(attempts) == 2


def test_a_sqlite_database_locked_for_good_is_unavailable_after_one_wait(conf, tmp_path,
                                                                         monkeypatch):
    import sqlite3
    import time

    monkeypatch.setattr(db_api, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    url = f"sqlite:///{tmp_path / 'stuck.sqlite'}"
    db_api.configure(url)
    db_api.run_in_transaction(lambda s: s.execute(sa.text("CREATE TABLE t (n INTEGER)")))
    holder = sqlite3.connect(tmp_path / "stuck.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    attempts: list[int] = []

    def work(session):
        attempts.append(1)
        session.execute(sa.text("INSERT INTO t VALUES (1)"))

    began = time.monotonic()
    try:
        with pytest.raises(exception.DatabaseUnavailable):
            db_api.run_in_transaction(work)
    finally:
        holder.rollback()
        holder.close()
    assert 0.4 < time.monotonic() - began < 2.0
    assert attempts == [1]  # the wait was the retry: no second attempt


def test_a_sqlite_writer_waits_for_another_writer_to_commit(conf, tmp_path):
    import sqlite3
    import threading

    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    db_api.configure(url)
    db_api.run_in_transaction(lambda s: s.execute(sa.text("CREATE TABLE t (n INTEGER)")))
    holder = sqlite3.connect(tmp_path / "busy.sqlite", isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()

    attempts: list[int] = []

    def work(session):
        attempts.append(1)
        # Reads first, as most requests do, then writes.
        seen = session.execute(sa.text("SELECT count(*) FROM t")).scalar()
        session.execute(sa.text("INSERT INTO t VALUES (:n)"), {"n": seen + 1})
        return seen

    try:
        assert db_api.run_in_transaction(work) == 1
    finally:
        holder.close()
    # Waited for its turn: no attempt was spent (and counted towards
    # DatabaseUnavailable) on a snapshot another writer made stale.
    assert attempts == [1]


def _retries(cause: str) -> float:
    from agent import metrics

    return metrics.REGISTRY.get_sample_value("custos_db_retries_total", {"cause": cause}) or 0.0


def test_retries_are_counted_by_cause(conf, monkeypatch):
    conf.set_override("max_retries", 3, group="database")
    monkeypatch.setattr(db_api.time, "sleep", lambda _: None)
    before = {cause: _retries(cause) for cause in ("deadlock", "unreachable", "stale_connection")}
    failures = [mysql_error(1213, "Deadlock found when trying to get lock"),
                mysql_error(1213, "Deadlock found when trying to get lock"),
                mysql_error(2003, "Can't connect to MySQL server")]

    def work(session):
        if failures:
            raise failures.pop(0)
        return "done"

    assert db_api.run_in_transaction(work) == "done"
    assert _retries("deadlock") - before["deadlock"] == 2
    assert _retries("unreachable") - before["unreachable"] == 1

    stale = [stale_connection_error()]

    def once_stale(session):
        if stale:
            raise stale.pop()
        return "done"

    assert db_api.run_in_transaction(once_stale) == "done"
    assert _retries("stale_connection") - before["stale_connection"] == 1
