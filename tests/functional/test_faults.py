"""Faults a deployment meets: broker restart, database outage, a killed agent.

The broker and database that these tests stop are private servers
(:mod:`tests.functional.private_services`), never the machine's shared
ones.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import exception, rpc
from rpcapi import CustosAPI
from tests.common import nobody
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import agent_sections
from tests.functional.load import Load
from tests.functional.private_services import (  # noqa: F401 - fixtures
    PrivatePostgres, PrivateRabbit, private_postgres, private_rabbit)

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
        load = Load(lambda worker, n: api.health(nobody())).start()
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
    finally:
        proc.stop()
    assert "custos-agent stopped" in proc.log()


def test_database_outage_is_reported_then_served_again_without_restart(
        private_postgres, start_agent, api):
    proc = start_agent(database_url=private_postgres.create_database(), host="fault-db")
    assert proc.process is not None
    pid = proc.process.pid

    private_postgres.stop()
    try:
        while_down = api.health(nobody())
    finally:
        private_postgres.start()
    after = api.health(nobody())

    assert while_down["database"] == exception.DatabaseUnavailable.code
    assert after["database"] == "ok"
    assert proc.process.pid == pid and proc.process.poll() is None


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
