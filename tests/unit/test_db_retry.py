"""Which database errors retry a whole transaction, and the engine's pool options."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy import exc as sa_exc

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


def test_the_engine_checks_pooled_connections_before_use(conf):
    engine = db_api.create_engine("postgresql+psycopg2://custos@127.0.0.1/custos")
    try:
        assert engine.pool._pre_ping
    finally:
        engine.dispose()
