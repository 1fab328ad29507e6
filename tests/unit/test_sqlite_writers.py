"""The agent's own SQLite writers take turns on a lock, not SQLite's busy sleeps."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from agent import exception
from db import api as db_api

# How long the first writer keeps its transaction open once the second
# waits. SQLite's busy handler would try again only 328 ms into its wait
# (after pauses of 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and 100 ms):
# a writer waiting on it starts about 90 ms after the release.
HOLD_S = 0.24
# What a writer handed its turn may lag behind the release: a thread's
# wake-up, even on a busy machine, well under SQLite's next try.
MAX_LAG_S = 0.04


@pytest.fixture
def sqlite_file(conf, tmp_path):
    db_api.configure(f"sqlite:///{tmp_path / 'writers.sqlite'}")
    db_api.run_in_transaction(lambda s: s.execute(sa.text("CREATE TABLE t (n INTEGER)")))
    yield
    db_api.dispose()


def test_a_waiting_writer_starts_as_soon_as_the_writer_before_it_commits(sqlite_file):
    holding = threading.Event()
    times: dict[str, float] = {}

    def first(session):
        session.execute(sa.text("INSERT INTO t VALUES (1)"))
        holding.set()
        time.sleep(HOLD_S)

    def second(session):
        # The transaction begins (BEGIN IMMEDIATE) with its first statement.
        session.execute(sa.text("INSERT INTO t VALUES (2)"))
        times["second began"] = time.perf_counter()

    def run_first() -> None:
        db_api.run_in_transaction(first)
        times["first committed"] = time.perf_counter()

    thread = threading.Thread(target=run_first)
    thread.start()
    assert holding.wait(5)
    db_api.run_in_transaction(second)
    thread.join(5)

    lag = times["second began"] - times["first committed"]
    assert lag < MAX_LAG_S, f"the second writer began {lag * 1000:.0f} ms after the commit"
    rows = db_api.run_in_transaction(
        lambda s: s.execute(sa.text("SELECT n FROM t ORDER BY n")).scalars().all(),
        read_only=True)
    assert rows == [1, 2]


def test_a_writer_kept_waiting_too_long_gets_database_unavailable(sqlite_file, monkeypatch):
    monkeypatch.setattr(db_api, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    holding, release = threading.Event(), threading.Event()

    def stuck(session):
        session.execute(sa.text("INSERT INTO t VALUES (1)"))
        holding.set()
        release.wait(5)

    thread = threading.Thread(target=db_api.run_in_transaction, args=(stuck,))
    thread.start()
    try:
        assert holding.wait(5)
        began = time.monotonic()
        with pytest.raises(exception.DatabaseUnavailable):
            db_api.run_in_transaction(lambda s: s.execute(sa.text("INSERT INTO t VALUES (2)")))
        assert 0.25 < time.monotonic() - began < 2.0
    finally:
        release.set()
        thread.join(5)
    rows = db_api.run_in_transaction(
        lambda s: s.execute(sa.text("SELECT n FROM t")).scalars().all(), read_only=True)
    assert rows == [1]


def test_a_thread_writing_again_inside_its_own_write_is_not_made_to_wait_for_itself(
        sqlite_file):
    # The reentrant turn changes nothing for such (mis)use: the inner
    # transaction still meets SQLite's own lock, held by the outer one.
    assert db_api._sqlite_writer is not None
    with db_api._writer_turn(db_api._sqlite_writer):
        with db_api._writer_turn(db_api._sqlite_writer):
            pass
