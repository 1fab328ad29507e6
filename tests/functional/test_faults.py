"""Faults a deployment meets: broker restart, database outage, a killed agent.

The broker and database that these tests stop are private servers
(:mod:`tests.functional.private_services`), never the machine's shared
ones.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_config import cfg

from agent import exception, rpc
from db import models
from rpcapi import CustosAPI
from tests.common import member, nobody
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import agent_sections
from tests.functional.load import Load
from tests.functional.private_services import (  # noqa: F401 - fixtures
    PrivateRabbit, private_postgres, private_rabbit)

CONF = cfg.CONF
OUTAGE_S = 5


@pytest.fixture
def private_bus(private_rabbit: PrivateRabbit,
                transport: messaging.Transport) -> Iterator[messaging.Transport]:
    """A client transport on the private RabbitMQ node."""
    bus = messaging.get_rpc_transport(CONF, url=private_rabbit.url,
                                      allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    yield bus
    bus.cleanup()


def test_agent_reconnects_after_rabbitmq_restart_under_load(
        private_rabbit, private_bus, tmp_path, exchange):
    sections = agent_sections(tmp_path, exchange, host="fault-rabbit",
                              rabbit_url=private_rabbit.url)
    proc = AgentProcess(tmp_path, sections)
    proc.prepare()
    proc.start()
    try:
        proc.wait_ready(private_bus, nobody())
        api = CustosAPI(transport=private_bus, timeout=5)
        load = Load(lambda worker, n: api.secret_generate(
            member(), "ceph", f"client.fault-{worker}-{n}")).start()
        load.wait_for("ok", 20)

        private_rabbit.stop_app()
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        private_rabbit.start_app()
        back_at = time.monotonic()
        load.wait_for("ok", 20, after=back_at)
        load.stop()

        # Calls caught by the outage waited through it, then completed or
        # timed out; none failed any other way and none hangs (stop()).
        assert load.overlapping(down_at, back_at) >= 4
        assert set(load.summary()) <= {"ok", "timeout"}, load.summary()
        assert proc.process is not None and proc.process.poll() is None
        assert api.health(nobody())["database"] == "ok"
        answered = load.results()
        assert len(api.secret_get_value(member(), answered[-1])) == 32
    finally:
        proc.stop()
    assert "custos-agent stopped" in proc.log()
    rows = stored_secrets(f"sqlite:///{tmp_path / 'state' / 'custos.sqlite'}")
    assert set(answered) <= set(rows)
    assert all(sealed for sealed in rows.values()), "a secret row without its sealed value"


def stored_secrets(url: str) -> dict[str, bool]:
    """``{uuid: whether the row holds its value, data key and master key id}``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(models.Secret.uuid, models.Secret.value,
                                          models.Secret.wrapped_key,
                                          models.Secret.master_key_id)).all()
    finally:
        engine.dispose()
    return {row.uuid: all((row.value, row.wrapped_key, row.master_key_id)) for row in rows}


def test_database_outage_is_reported_then_served_again_without_restart(
        private_postgres, start_agent, api):
    proc = start_agent(database_url=private_postgres.create_database(), host="fault-db")
    assert proc.process is not None
    pid = proc.process.pid
    before = api.secret_generate(member(), "ceph", "client.before-outage")

    private_postgres.stop()
    try:
        while_down = api.health(nobody())
        with pytest.raises(exception.DatabaseUnavailable):
            api.secret_list(member())
        with pytest.raises(exception.DatabaseUnavailable):
            api.secret_generate(member(), "ceph", "client.during-outage")
    finally:
        private_postgres.start()
    after = api.secret_generate(member(), "ceph", "client.after-outage")

    assert while_down["database"] == exception.DatabaseUnavailable.code
    assert api.health(nobody())["database"] == "ok"
    assert {s["usage_id"] for s in api.secret_list(member())} == {
        "client.before-outage", "client.after-outage"}
    assert len(api.secret_get_value(member(), before)) == 32
    assert api.secret_lookup_by_usage(member(), "ceph", "client.after-outage") == after
    assert proc.process.pid == pid and proc.process.poll() is None


def test_connections_a_database_restart_dropped_cost_no_failed_call(
        private_postgres, start_agent, api):
    """The pooled connections of an idle agent die with the server's restart.

    The first request after the restart draws a dead connection; the agent
    runs it again on a fresh one at once, so the caller sees no error.
    """
    proc = start_agent(database_url=private_postgres.create_database(), host="stale-pool")
    secret = api.secret_generate(member(), "ceph", "client.before-restart")
    api.health(nobody())

    private_postgres.stop()
    private_postgres.start()
    health = api.health(nobody())
    value = api.secret_get_value(member(), secret)
    after = api.secret_generate(member(), "ceph", "client.after-restart")

    assert len(value) == 32
    assert health["database"] == "ok"
    assert api.secret_lookup_by_usage(member(), "ceph", "client.after-restart") == after
    assert "DatabaseUnavailable" not in proc.log()


def test_partner_agent_keeps_serving_when_one_is_killed(start_agent, api):
    first = start_agent(host="agent-a")
    start_agent(host="agent-b")
    caller = CustosAPI(transport=api.client.transport, timeout=5)
    load = Load(lambda worker, n: caller.health(nobody())["host"]).start()
    load.wait_for("ok", 40)
    assert first.process is not None

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    killed_at = time.monotonic()
    load.wait_for("ok", 40, after=killed_at)
    load.stop()

    assert set(load.summary()) <= {"ok", "timeout"}, load.summary()
    assert set(load.results(after=killed_at)) == {"agent-b"}
    assert load.count("timeout", after=killed_at) == 0
