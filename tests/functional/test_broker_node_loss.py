"""Losing one node of a three-node RabbitMQ cluster (SPEC §3.7 and §4).

The deployment README.rst describes past one machine: agents on quorum
queues over one PostgreSQL database, every agent and caller naming all
three broker nodes in ``transport_url``. The cluster is a private one
(:mod:`tests.functional.rabbit_cluster`); the node that leads the
``custos-agent`` queue is SIGKILLed while four callers define secrets.
Nothing the agents acknowledged may be lost, and every change they
committed must be announced on the notifications topic, including by an
agent started while the node is still down.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_config import cfg

from agent import rpc
from db import models
from rpcapi import CustosAPI
from tests.common import member
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import agent_sections, launch_all, stop_all
from tests.functional.load import Load
from tests.functional.rabbit_cluster import RabbitCluster, rabbit_cluster  # noqa: F401

CONF = cfg.CONF
HOSTS = ("node-1", "node-2")
LATE_HOST = "node-3"  # started while a broker node is down
CALLERS = 4
CALL_TIMEOUT_S = 20
LATE_CALLS = 32
LATE_CALLERS = 8  # at once: the new agent opens a broker connection for each
ANNOUNCE_GRACE_S = 30
PAUSE_WINDOW_S = 10
NOT_SENT = ("Could not send notification", "attempting to send to notification system")
REANSWERED = "this request was served before"  # agent.dispatch, for a redelivered call


class Announcements:
    """Notification endpoint remembering the UUID of every ``secret.define``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.defined: list[str] = []

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> Any:
        if event_type == "secret.define":
            with self._lock:
                self.defined.append(payload["uuid"])
        return messaging.NotificationResult.HANDLED

    def uuids(self) -> set[str]:
        with self._lock:
            return set(self.defined)

    def wait_for(self, expected: set[str], timeout: float) -> set[str]:
        """Wait until every UUID of ``expected`` was announced; returns the missing ones."""
        deadline = time.monotonic() + timeout
        while expected - self.uuids() and time.monotonic() < deadline:
            time.sleep(0.2)
        return expected - self.uuids()


class Deployment:
    """Agents on the cluster, and the callers' and the listener's transports."""

    def __init__(self, cluster: RabbitCluster, exchange: str, database_url: str,
                 tmp_path: Path) -> None:
        self.cluster = cluster
        self.exchange = exchange
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.agents: dict[str, AgentProcess] = {}
        self.bus = messaging.get_rpc_transport(CONF, url=cluster.url,
                                               allowed_remote_exmods=rpc.ALLOWED_EXMODS)
        self.api = CustosAPI(transport=self.bus, timeout=CALL_TIMEOUT_S)
        self.announcements = Announcements()
        self._notices = messaging.get_notification_transport(CONF, url=cluster.url)
        self._listener = messaging.get_notification_listener(
            self._notices, [messaging.Target(exchange=exchange, topic=rpc.NOTIFICATION_TOPIC)],
            [self.announcements], pool="custos-node-loss-audit")
        self._listener.start()

    def start_agents(self, *hosts: str) -> list[AgentProcess]:
        """Start agents configured as README.rst says; return once each answers."""
        configs = []
        for host in hosts:
            workdir = self.tmp_path / host
            workdir.mkdir()
            configs.append((workdir, agent_sections(
                self.tmp_path, self.exchange, self.database_url, host=host,
                rabbit_url=self.cluster.url,
                oslo_messaging_rabbit={"rabbit_quorum_queue": "true"})))
        started = launch_all(configs, self.bus)
        self.agents.update((proc.host, proc) for proc in started)
        return started

    def committed(self) -> set[str]:
        """UUIDs of every secret row in the database."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return set(conn.scalars(sa.select(models.Secret.uuid)))
        finally:
            engine.dispose()

    def close(self) -> None:
        stop_all(list(self.agents.values()))
        self._listener.stop()
        self._listener.wait()
        self._notices.cleanup()
        self.bus.cleanup()


@pytest.fixture
def deployment(rabbit_cluster: RabbitCluster, transport: messaging.Transport, exchange: str,
               postgresql_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """Two agents on the cluster with quorum queues; callers use quorum queues too."""
    CONF.set_override("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")
    deployment = None
    try:
        deployment = Deployment(rabbit_cluster, exchange, postgresql_url, tmp_path)
        deployment.start_agents(*HOSTS)
        yield deployment
    finally:
        if deployment is not None:
            deployment.close()
        CONF.clear_override("rabbit_quorum_queue", group="oslo_messaging_rabbit")


def latencies(load: Load, start: float, end: float) -> list[float]:
    """Durations of the successful calls that ended between ``start`` and ``end``."""
    return [ended - began for (began, kind, _), (_, ended) in zip(load.outcomes, load.spans)
            if kind == "ok" and start <= ended <= end]


def longest_silence(load: Load, start: float, end: float) -> float:
    """The longest time between ``start`` and ``end`` in which no call ended."""
    ends = sorted(ended for _, ended in load.spans if start <= ended <= end)
    marks = [start, *ends, end]
    return max(later - earlier for earlier, later in zip(marks, marks[1:]))


def test_losing_the_leading_broker_node_loses_no_write_and_no_announcement(deployment):
    cluster = deployment.cluster
    api = deployment.api
    queues = cluster.queues()
    assert queues["custos-agent"][0] == "quorum", queues
    victim = cluster.leader_of("custos-agent")

    load = Load(lambda worker, n: api.secret_generate(
        member(), "ceph", f"client.node-loss-{worker}-{n}"), threads=CALLERS).start()
    loaded_at = time.monotonic()
    load.wait_for("ok", 40)
    time.sleep(max(0.0, loaded_at + PAUSE_WINDOW_S - time.monotonic()))
    killed_at, killed_clock = time.monotonic(), time.strftime("%H:%M:%S")
    victim.kill()
    load.wait_for("ok", 60, after=killed_at, timeout=120)
    new_leader = cluster.leader_of("custos-agent")

    # An agent starting now opens every broker connection while one node
    # of its transport_url refuses them.
    late, = deployment.start_agents(LATE_HOST)
    with ThreadPoolExecutor(LATE_CALLERS) as pool:
        late_answers = list(pool.map(lambda n: api.secret_generate(
            member(), "ceph", f"client.node-loss-late-{n}", server=LATE_HOST),
            range(LATE_CALLS)))
    load.stop(timeout=CALL_TIMEOUT_S + 30)

    acknowledged = set(load.results()) | set(late_answers)
    committed = deployment.committed()
    missing = deployment.announcements.wait_for(committed, ANNOUNCE_GRACE_S)
    listed = {s["uuid"] for s in api.secret_list(member())}
    with ThreadPoolExecutor(CALLERS) as pool:
        lengths = list(pool.map(lambda uuid: len(api.secret_get_value(member(), uuid)),
                                sorted(acknowledged)))

    before = latencies(load, killed_at - PAUSE_WINDOW_S, killed_at)
    around = latencies(load, killed_at, killed_at + PAUSE_WINDOW_S)
    duplicates = len(deployment.announcements.defined) - len(deployment.announcements.uuids())
    agent_lines = [line for proc in deployment.agents.values() for line in proc.log().splitlines()]
    not_sent = [line for line in agent_lines if any(marker in line for marker in NOT_SENT)]
    answered_again = sum(REANSWERED in line for line in agent_lines)
    print(f"\nbroker node loss: cluster started in {cluster.started_in:.1f} s; "
          f"killed {victim.node} at {killed_clock}, new leader {new_leader.node}; "
          f"calls {dict(load.summary())}, "
          f"{LATE_CALLS} more on {LATE_HOST}; acknowledged {len(acknowledged)}, "
          f"committed {len(committed)}, announced {len(deployment.announcements.uuids())} "
          f"(+{duplicates} duplicates), unannounced {len(missing)}; "
          f"in the {PAUSE_WINDOW_S} s before the kill: call p50 "
          f"{statistics.median(before):.2f} s, max {max(before):.2f} s, longest silence "
          f"{longest_silence(load, killed_at - PAUSE_WINDOW_S, killed_at):.2f} s; "
          f"in the {PAUSE_WINDOW_S} s after: call max "
          f"{f'{max(around):.2f} s' if around else 'none ended'}, longest silence "
          f"{longest_silence(load, killed_at, killed_at + PAUSE_WINDOW_S):.2f} s; "
          f"'not sent' log lines {len(not_sent)}; copies answered as before {answered_again}")

    assert new_leader is not victim
    assert set(load.summary()) <= {"ok", "timeout"}, load.summary()
    assert acknowledged <= committed, f"{len(acknowledged - committed)} acknowledged writes lost"
    assert acknowledged <= listed
    assert set(lengths) == {32}
    assert not missing, (f"{len(missing)} of {len(committed)} committed secrets never "
                         f"announced; agents logged: {not_sent[:3]}")
    assert deployment.announcements.uuids() == committed
    assert late.process is not None and late.process.poll() is None
