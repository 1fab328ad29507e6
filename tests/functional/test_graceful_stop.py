"""Stopping an agent while callers keep calling loses no request.

Two agents serve one topic and one PostgreSQL database. Callers keep
calling and casting while one agent after the other is stopped with
SIGTERM and started again, as an operator restarts agents one at a time.
Every call returns (none times out at the caller) and every cast is
applied: a request the broker handed to a stopping agent is handled by
it, and one it had not handed over is served by the other agent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from rpcapi import CustosAPI
from tests.common import member, member_with_service
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import (agent_sections, create_database, launch,
                                       launch_all, stop_all)
from tests.functional.load import Load

HOSTS = ("agent-a", "agent-b")
RESTARTS_PER_AGENT = 1


@pytest.fixture
def two_agents(tmp_path, exchange, rabbit_url, transport) -> Iterator[list[AgentProcess]]:
    url, drop = create_database("postgresql", tmp_path, migrated=True)
    key_file = tmp_path / "master.key"
    configs = []
    for host in HOSTS:
        workdir = tmp_path / host
        workdir.mkdir()
        configs.append((workdir, agent_sections(
            tmp_path, exchange, url, host, state_path=workdir / "state",
            rabbit_url=rabbit_url, keystore={"master_key_file": str(key_file)})))
    agents = launch_all(configs, transport)
    try:
        yield agents
    finally:
        stop_all(agents)
        drop()


class Casts(threading.Thread):
    """Casts glance metadata for fresh volumes until stopped; remembers each."""

    def __init__(self, api: CustosAPI) -> None:
        super().__init__(name="casts", daemon=True)
        self.api = api
        self.sent: dict[str, dict[str, str]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            volume_id = str(uuid.uuid4())
            metadata = {"image_id": str(uuid.uuid4())}
            self.api.volume_glance_metadata_set(member_with_service(), volume_id, metadata)
            self.sent[volume_id] = metadata
            time.sleep(0.05)


def test_restarting_agents_one_at_a_time_loses_no_call_and_no_cast(
        two_agents, transport):
    api = CustosAPI(transport=transport, timeout=20)
    project = member("graceful-stop")

    def write_then_read(worker: int, n: int) -> bool:
        secret_uuid = api.secret_generate(project, "ceph", f"client.w{worker}-{n}-"
                                          f"{uuid.uuid4().hex[:8]}")
        return bool(api.secret_get_value(project, secret_uuid))

    load = Load(write_then_read, threads=4).start()
    casts = Casts(api)
    casts.start()
    stops: list[tuple[float, float]] = []
    try:
        load.wait_for("ok", 20)
        for _ in range(RESTARTS_PER_AGENT):
            for index, proc in enumerate(two_agents):
                began = time.monotonic()
                assert proc.stop() == 0, proc.log()
                stops.append((began, time.monotonic()))
                two_agents[index] = launch(proc.workdir, proc.sections, transport)
                load.wait_for("ok", 20, after=time.monotonic())
    finally:
        casts.stopping.set()
        casts.join(30)
        load.stop()

    # Every stop happened under load, so a dropped request would have shown.
    assert all(load.overlapping(began, ended) > 0 for began, ended in stops)
    assert set(load.summary()) == {"ok"}, load.summary()
    applied = {volume_id: api.volume_glance_metadata_get(member(), volume_id)
               for volume_id in casts.sent}
    assert len(casts.sent) > 50
    assert applied == casts.sent
