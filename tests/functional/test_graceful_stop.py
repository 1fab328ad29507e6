"""Stopping an agent while callers keep calling loses no request.

Two agents serve one topic and one PostgreSQL database. Callers keep
calling and casting while one agent after the other is stopped with
SIGTERM and started again, as an operator restarts agents one at a time.
Every call returns (none times out at the caller) and every cast is
applied: a request the broker handed to a stopping agent is handled by
it, and one it had not handed over is served by the other agent.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from agent import rpc
from db import models
from rpcapi import CustosAPI
from tests.common import eventually, member, member_with_service
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import (agent_sections, create_database, launch,
                                       launch_all, stop_all)
from tests.functional.load import Load
from tests.functional.private_services import queue_types

HOSTS = ("agent-a", "agent-b")
RESTARTS_PER_AGENT = 1


@pytest.fixture
def shared_database(tmp_path) -> Iterator[str]:
    """A migrated PostgreSQL database, dropped afterwards."""
    url, drop = create_database("postgresql", tmp_path, migrated=True)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def two_agents(tmp_path, exchange, rabbit_url, transport,
               shared_database) -> Iterator[list[AgentProcess]]:
    url = shared_database
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


def test_restarting_agents_one_at_a_time_loses_no_call_and_no_cast(
        two_agents, transport, shared_database):
    api = CustosAPI(transport=transport, timeout=20)
    project = member("graceful-stop")

    def write_then_read(worker: int, n: int) -> bool:
        secret_uuid = api.secret_generate(project, "ceph", f"client.w{worker}-{n}-"
                                          f"{uuid.uuid4().hex[:8]}")
        return bool(api.secret_get_value(project, secret_uuid))

    def cast_metadata(worker: int, n: int) -> tuple[str, dict[str, str]]:
        volume_id, metadata = str(uuid.uuid4()), {"image_id": str(uuid.uuid4())}
        api.volume_glance_metadata_set(member_with_service(), volume_id, metadata)
        # Boot roles are committed by a committer thread after the cast
        # returned to the worker: a stopping agent must commit them first.
        api.instance_boot_roles_set(member_with_service(), volume_id, [f"r{n}"])
        time.sleep(0.05)
        return volume_id, metadata

    load = Load(write_then_read, threads=4).start()
    casts = Load(cast_metadata, threads=1).start()
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
        casts.stop()
        load.stop()

    # Every stop happened under load, so a dropped request would have shown.
    assert all(load.overlapping(began, ended) > 0 for began, ended in stops)
    assert set(load.summary()) == {"ok"}, load.summary()
    assert set(casts.summary()) == {"ok"}, casts.summary()
    sent = dict(casts.results())
    applied = {volume_id: api.volume_glance_metadata_get(member(), volume_id)
               for volume_id in sent}
    assert len(sent) > 50
    assert applied == sent
    engine = sa.create_engine(shared_database)

    def instances_with_roles() -> set[str]:
        with engine.connect() as conn:
            return set(conn.scalars(sa.select(models.InstanceSystemMetadata.instance_uuid)))

    try:
        # The last casts may still be in their batch's linger.
        assert eventually(lambda: instances_with_roles() == set(sent), 10)
    finally:
        engine.dispose()


def test_a_stopped_agent_deletes_its_own_event_queue_only(start_agent, rabbit_url):
    """The shared event queue stays; a queue another agent of that name consumes stays."""
    own = f"{rpc.LISTENER_POOL}.retiring"
    first = start_agent(host="retiring")
    twin = start_agent(host="retiring")
    assert {rpc.LISTENER_POOL, own} <= set(queue_types(rabbit_url))

    assert first.stop() == 0
    assert own in queue_types(rabbit_url)
    assert twin.stop() == 0

    queues = queue_types(rabbit_url)
    assert own not in queues and rpc.LISTENER_POOL in queues
    assert f"Deleted event queue {own}" in twin.log()


@contextlib.contextmanager
def _operator_policy(vhost_url: str, name: str, pattern: str,
                     definition: dict[str, int]) -> Iterator[None]:
    """A RabbitMQ operator policy on the queues of ``vhost_url``, cleared afterwards."""
    vhost = vhost_url.rsplit("/", 1)[1]

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args, "-p", vhost], capture_output=True,
                       timeout=60, check=True)

    ctl("set_operator_policy", name, pattern, json.dumps(definition), "--apply-to", "queues")
    try:
        yield
    finally:
        ctl("clear_operator_policy", name)


def test_an_operator_policy_removes_the_queue_a_killed_agent_left(start_agent, rabbit_url):
    """The policy README gives: the own queue goes once unused; the shared one stays."""
    host = f"killed-{uuid.uuid4().hex[:8]}"
    own = f"{rpc.LISTENER_POOL}.{host}"
    with _operator_policy(rabbit_url, f"custos-own-events-{host}", f"^{re.escape(own)}$",
                          {"expires": 2000}):
        agent = start_agent(host=host)
        time.sleep(3)  # longer than the expiry: a consumed queue does not expire
        assert own in queue_types(rabbit_url)

        agent.kill()
        deadline = time.monotonic() + 30
        while own in queue_types(rabbit_url) and time.monotonic() < deadline:
            time.sleep(0.5)

        queues = queue_types(rabbit_url)
        assert own not in queues
        assert rpc.LISTENER_POOL in queues
