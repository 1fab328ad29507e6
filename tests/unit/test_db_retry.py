"""Which database errors retry a whole transaction, and the engine's pool options."""

from __future__ import annotations

import pymysql
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
