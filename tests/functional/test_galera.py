"""Two custos-agent processes on different nodes of a three-node Galera cluster.

Agent A talks to the first node and agent B to the second, both to one
database created with the server's default collation, as an operator's
``CREATE DATABASE custos`` leaves it. Each call names its agent, so the
test decides which node serves it.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa

from rpcapi import CustosAPI
from tests.common import member, service_only
from tests.functional.agentproc import AgentProcess
from tests.functional.canary import RecordingClient
from tests.functional.conftest import agent_sections, launch_all, stop_all
from tests.functional.galera_cluster import GaleraCluster, galera_cluster  # noqa: F401
from tests.functional.load import Load

LVM = {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
       "target_portal": "192.0.2.10:3260", "target_iqn_prefix": "iqn.2010-10.org.example"}


@dataclass
class Deployment:
    cluster: GaleraCluster
    database: str
    agents: list[AgentProcess]
    a: CustosAPI
    b: CustosAPI


def _client(transport: messaging.Transport, proc: AgentProcess) -> CustosAPI:
    client = CustosAPI(transport=transport, server=proc.host, timeout=30)
    client.client = RecordingClient(client.client)
    return client


@pytest.fixture(scope="module")
def deployment(galera_cluster: GaleraCluster, transport: messaging.Transport,  # noqa: F811
               exchange: str, rabbit_url: str, canary_listener: None,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Agents A (first node) and B (second node) sharing one database and master key."""
    tmp_path = tmp_path_factory.mktemp("galera")
    database = galera_cluster.create_database()
    suffix = uuid.uuid4().hex[:6]
    configs = []
    for index, name in ((0, "a"), (1, "b")):
        host = f"galera-agent-{name}-{suffix}"
        workdir = tmp_path / host
        workdir.mkdir()
        configs.append((workdir, agent_sections(
            tmp_path, exchange, galera_cluster.url(galera_cluster.nodes[index], database),
            host=host, state_path=tmp_path / f"{host}-state", rabbit_url=rabbit_url,
            DEFAULT={"enabled_backends": "lvm-1"}, auth={"strategy": "trusted"},
            **{"lvm-1": LVM})))
    # One master key for both, copied as README says.
    first = AgentProcess(*configs[0])
    first.prepare()
    second_state = Path(configs[1][1]["DEFAULT"]["state_path"])
    second_state.mkdir(mode=0o700)
    shutil.copy(first.key_file, second_state / "master.key")
    (second_state / "master.key").chmod(0o600)
    agents = launch_all(configs, transport)
    try:
        yield Deployment(galera_cluster, database, agents, _client(transport, agents[0]),
                         _client(transport, agents[1]))
    finally:
        stop_all(agents)


def attach(api: CustosAPI, initiator: str) -> tuple[str, str]:
    data = api.initialize_connection(service_only(), {"id": str(uuid.uuid4())},
                                     {"initiator": initiator, "host": "compute"})["data"]
    return data["auth_username"], data["auth_password"]


def test_concurrent_first_attaches_through_two_nodes_agree(deployment):
    outcomes: list[object] = []
    lock = threading.Lock()

    def one(api: CustosAPI, initiator: str, gate: threading.Barrier) -> None:
        gate.wait()
        try:
            result: object = attach(api, initiator)
        except Exception as error:  # noqa: BLE001 - recorded for the assertion
            result = error
        with lock:
            outcomes.append((initiator, result))

    initiators = [f"iqn.1993-08.org.debian:01:{uuid.uuid4().hex[:12]}" for _ in range(5)]
    for initiator in initiators:
        gate = threading.Barrier(8)
        threads = [threading.Thread(target=one, args=(
            deployment.a if n % 2 else deployment.b, initiator, gate)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    failures = [result for _, result in outcomes if isinstance(result, Exception)]
    assert failures == [], f"{len(failures)} of {len(outcomes)} attaches failed: {failures[:3]}"
    assert len(outcomes) == 40
    for initiator in initiators:
        credentials = {result for name, result in outcomes if name == initiator}
        assert len(credentials) == 1, f"{initiator} got {len(credentials)} CHAP credentials"


def define(api: CustosAPI, ctxt: object) -> str:
    return api.secret_define_xml(ctxt, "<secret ephemeral='no' private='no'><usage type='ceph'>"
                                       f"<name>client.{uuid.uuid4().hex}</name></usage>"
                                       "</secret>")


def test_a_value_set_through_one_node_is_read_at_once_through_another(deployment):
    """B's node is held from applying A's write for a second: B's read waits for it.

    ``FLUSH TABLES WITH READ LOCK`` pauses a Galera node's appliers (reads
    go on), which turns the few milliseconds a node takes to apply another
    node's commit into a window the test can hit every time.
    """
    ctxt = member()
    uuid_ = define(deployment.a, ctxt)
    deployment.a.secret_set_value(ctxt, uuid_, b"first")
    assert deployment.b.secret_get_value(ctxt, uuid_) == b"first"
    lagging = deployment.cluster.nodes[1].connect()
    try:
        with lagging.cursor() as cur:
            cur.execute("FLUSH TABLES WITH READ LOCK")
        deployment.a.secret_set_value(ctxt, uuid_, b"second")
        release = threading.Timer(1.0, lambda: lagging.cursor().execute("UNLOCK TABLES"))
        release.start()
        began = time.monotonic()
        got = deployment.b.secret_get_value(ctxt, uuid_)
        waited = time.monotonic() - began
        release.join()
    finally:
        lagging.close()
    assert got == b"second"
    assert waited >= 0.9, f"B answered in {waited:.2f} s, before its node had A's write"


def test_killing_a_node_under_load_loses_no_acknowledged_write(deployment):
    ctxt = member()
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()

    def write(worker: int, _n: int) -> str:
        api = deployment.a if worker % 2 else deployment.b
        uuid_ = define(api, ctxt)
        value = secrets.token_hex(8).encode()
        api.secret_set_value(ctxt, uuid_, value)
        with lock:
            acknowledged[uuid_] = value
        return uuid_

    load = Load(write, threads=4).start()
    try:
        load.wait_for("ok", 30, timeout=60)
        killed_at = time.monotonic()
        deployment.cluster.nodes[1].kill()
        # Agent A's node goes on taking writes once the cluster has dropped B's.
        load.wait_for("ok", 30, timeout=60, after=killed_at + 5)
    finally:
        load.stop()
    deployment.cluster.restart(deployment.cluster.nodes[1])

    assert len(acknowledged) >= 60
    # B's node is gone: B answers DatabaseUnavailable until it is back.
    assert set(load.summary()) <= {"ok", "DatabaseUnavailable_Remote"}, load.summary()
    for api in (deployment.a, deployment.b):
        for uuid_, value in acknowledged.items():
            assert api.secret_get_value(ctxt, uuid_) == value
    engine = sa.create_engine(deployment.cluster.url(deployment.cluster.nodes[2],
                                                     deployment.database))
    with engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT uuid FROM secrets")).scalars())
    engine.dispose()
    assert set(acknowledged) <= stored
