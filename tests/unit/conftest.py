"""Unit fixtures: a real AgentService on oslo.messaging's fake transport and SQLite."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_config import cfg
from oslo_messaging._drivers import impl_fake
from oslo_messaging.notify import _impl_test as test_notifier

from agent import rpc
from agent.keystore import masterkey
from agent.service import AgentService
from db import api as db_api
from db import migration
from rpcapi import CustosAPI


class _QuickPolling:
    """``time`` for the fake driver, whose listener naps 50 ms between polls."""

    time = staticmethod(time.time)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.001))


class _Delivered(dict):  # type: ignore[type-arg]
    """A message the fake driver delivered, naming its exchange as kombu's does."""

    def __init__(self, message: dict[str, Any], exchange: str) -> None:
        super().__init__(message)
        self._raw_message = SimpleNamespace(delivery_info={"exchange": exchange},
                                            headers=None)


_fake_poll = impl_fake.FakeExchange.poll


def _poll_naming_the_exchange(self: Any, target: Any, pool: Any) -> Any:
    ctxt, message, reply_q, requeue = _fake_poll(self, target, pool)
    if isinstance(message, dict):
        message = _Delivered(message, self.name)
    return ctxt, message, reply_q, requeue


@pytest.fixture(autouse=True)
def quick_fake_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let calls through the fake transport without waiting for a 50 ms poll nap each.

    Its messages also say which exchange they came from, as RabbitMQ's
    do: the agent counts an event only from its service's exchange.
    """
    monkeypatch.setattr(impl_fake, "time", _QuickPolling)
    monkeypatch.setattr(impl_fake.FakeExchange, "poll", _poll_naming_the_exchange)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, for tests to copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "custos.sqlite"
    engine = db_api.create_engine(f"sqlite:///{path}")
    try:
        migration.db_sync(engine=engine)
        # One self-contained file: nothing left in a write-ahead log. On
        # the driver's connection, outside the write transaction (BEGIN
        # IMMEDIATE) SQLAlchemy would open, where a checkpoint cannot run.
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    finally:
        engine.dispose()
    return path


@pytest.fixture
def migrated(conf: cfg.ConfigOpts, sqlite_template: Path) -> cfg.ConfigOpts:
    """A SQLite database under the test's state_path, migrated to head.

    A copy of the session's migrated template: the same schema as
    ``db sync`` gives, without running the migrations for every test.
    """
    shutil.copyfile(sqlite_template, db_api.default_url(conf).removeprefix("sqlite:///"))
    db_api.configure()
    return conf


@pytest.fixture
def master_key(conf: cfg.ConfigOpts) -> str:
    """A fresh master key file at the default path; returns its id."""
    return masterkey.init_key_file(masterkey.default_path())


@pytest.fixture
def statements():
    """The first word of each SQL statement the database ran for the agent's engines.

    Recorded after execution: a statement refused before it reached the
    database (a write on a read-only connection) is not among them.
    """
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.strip().split()[0].upper())

    engines = [db_api.get_engine()]
    if db_api.read_engine().pool is not engines[0].pool:
        engines.append(db_api.read_engine())
    for engine in engines:
        sa.event.listen(engine, "after_cursor_execute", record)
    yield seen
    for engine in engines:
        sa.event.remove(engine, "after_cursor_execute", record)


@dataclass
class Harness:
    """A running in-process agent and a client on the same fake transport."""

    api: CustosAPI
    service: AgentService

    @property
    def runtime(self) -> Any:
        return self.service.runtime

    def notifications(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Notifications sent so far: ``{event_type, priority, payload, context}``.

        The agent publishes them from its own thread after the reply; this
        waits until it has published what was queued.
        """
        assert self.runtime.notifications.flush(10), "notifications still queued"
        found = [{"context": ctxt, "event_type": message["event_type"],
                  "priority": priority.lower(), "payload": message["payload"],
                  "publisher_id": message["publisher_id"]}
                 for ctxt, message, priority, _retry in test_notifier.NOTIFICATIONS]
        return [n for n in found if event_type is None or n["event_type"] == event_type]


@pytest.fixture
def harness(migrated: cfg.ConfigOpts, master_key: str) -> Iterator[Harness]:
    """Start the agent on ``fake:/`` with a recording notifier.

    Tests may set configuration overrides before requesting this fixture
    (through another fixture) to shape the agent.
    """
    migrated.set_override("transport_url", "fake:/")
    test_notifier.reset()
    service = AgentService(migrated)
    service.start()
    assert service.runtime is not None
    service.runtime.notifier = messaging.Notifier(
        rpc.NOTIFICATION_TRANSPORT, publisher_id=f"custos-agent.{migrated.host}",
        driver="test", topics=[rpc.NOTIFICATION_TOPIC],
        serializer=rpc.NotificationSerializer())
    api = CustosAPI(transport=rpc.TRANSPORT, timeout=10)
    try:
        yield Harness(api=api, service=service)
    finally:
        service.stop()
        service.wait()
        test_notifier.reset()
