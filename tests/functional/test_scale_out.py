"""Three agents on one topic: the deployment that goes past one machine.

Quorum queues (``[oslo_messaging_rabbit] rabbit_quorum_queue = true``) and
one PostgreSQL database shared by every agent, as README.rst describes.
"""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import rpc
from rpcapi import CustosAPI
from tests.common import member, member_with_service, nobody
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import agent_sections
from tests.functional.load import Load
from tests.functional.private_services import fresh_vhost  # noqa: F401 - fixture

CONF = cfg.CONF
HOSTS = ("node-1", "node-2", "node-3")


@pytest.fixture
def three_agents(fresh_vhost, transport, exchange, postgresql_url,
                 tmp_path) -> Iterator[CustosAPI]:
    """Three agents on quorum queues sharing one database; yields a client.

    The client declares the exchange durable as the agents do, so it sets
    ``rabbit_quorum_queue`` too, as every caller of such a deployment must.
    """
    CONF.set_override("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")
    bus = messaging.get_rpc_transport(CONF, url=fresh_vhost,
                                      allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    agents = []
    try:
        for host in HOSTS:
            workdir = tmp_path / host
            workdir.mkdir()
            sections = agent_sections(
                tmp_path, exchange, postgresql_url, host=host, rabbit_url=fresh_vhost,
                oslo_messaging_rabbit={"rabbit_quorum_queue": "true"})
            proc = AgentProcess(workdir, sections)
            proc.prepare()
            proc.start()
            agents.append(proc)
        for proc in agents:
            proc.wait_ready(bus, nobody())
        yield CustosAPI(transport=bus, timeout=20)
    finally:
        for proc in agents:
            proc.stop()
        bus.cleanup()
        CONF.clear_override("rabbit_quorum_queue", group="oslo_messaging_rabbit")


def queue_types(vhost_url: str) -> dict[str, str]:
    """``{queue name: type}`` of a virtual host, as RabbitMQ reports them."""
    listing = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost_url.rsplit("/", 1)[1],
                              "--no-table-headers", "name", "type"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(line.split("\t")[:2] for line in listing.splitlines() if "\t" in line)


def test_three_agents_share_the_load(three_agents, fresh_vhost):
    types = queue_types(fresh_vhost)
    assert types["custos-agent"] == "quorum", types
    assert {types[f"custos-agent.{host}"] for host in HOSTS} == {"quorum"}, types
    load = Load(lambda worker, n: three_agents.health(nobody())["host"], threads=6).start()
    load.wait_for("ok", 150)
    load.stop()

    served = Counter(load.results())
    assert set(served) == set(HOSTS), served
    assert set(load.summary()) == {"ok"}


def test_three_agents_give_the_same_answers(three_agents):
    volume_id = str(uuid.uuid4())
    metadata = {"image_id": str(uuid.uuid4()), "image_name": "cirros"}
    three_agents.volume_glance_metadata_set(member_with_service(), volume_id, metadata,
                                            wait=True)

    each = {host: three_agents._call(member(), "volume_glance_metadata_get", server=host,
                                     volume_id=volume_id) for host in HOSTS}
    load = Load(lambda worker, n: three_agents.volume_glance_metadata_get(member(), volume_id),
                threads=3).start()
    load.wait_for("ok", 30)
    load.stop()

    assert all(answer == metadata for answer in each.values()), each
    assert all(answer == metadata for answer in load.results())
    assert set(load.summary()) == {"ok"}
