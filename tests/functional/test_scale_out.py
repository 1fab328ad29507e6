"""Three agents on one topic: the deployment that goes past one machine.

Quorum queues (``[oslo_messaging_rabbit] rabbit_quorum_queue = true``) and
one PostgreSQL database shared by every agent, as README.rst describes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import rpc
from rpcapi import CustosAPI
from tests.common import member, member_with_service, nobody
from tests.functional.conftest import agent_sections, create_database, launch_all, stop_all
from tests.functional.load import Load
from tests.functional.private_services import new_vhost, queue_types

CONF = cfg.CONF
HOSTS = ("node-1", "node-2", "node-3")


@pytest.fixture(scope="module")
def quorum_vhost(rabbit_url) -> Iterator[str]:
    """A virtual host of the module's own: its queues are quorum queues."""
    with new_vhost() as url:
        yield url


@pytest.fixture(scope="module")
def three_agents(quorum_vhost, transport, exchange,
                 tmp_path_factory) -> Iterator[CustosAPI]:
    """Three agents on quorum queues sharing one database; yields a client.

    The tests of this module only read what they write under fresh ids,
    so they share the deployment. The client declares the exchange
    durable as the agents do, so it sets ``rabbit_quorum_queue`` too, as
    every caller of such a deployment must.
    """
    tmp_path = tmp_path_factory.mktemp("scale-out")
    postgresql_url, drop = create_database("postgresql", tmp_path, migrated=True)
    CONF.set_override("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")
    bus = messaging.get_rpc_transport(CONF, url=quorum_vhost,
                                      allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    agents = []
    try:
        configs = []
        for host in HOSTS:
            workdir = tmp_path / host
            workdir.mkdir()
            configs.append((workdir, agent_sections(
                tmp_path, exchange, postgresql_url, host=host, rabbit_url=quorum_vhost,
                oslo_messaging_rabbit={"rabbit_quorum_queue": "true"})))
        agents = launch_all(configs, bus)
        yield CustosAPI(transport=bus, timeout=20)
    finally:
        stop_all(agents)
        bus.cleanup()
        CONF.clear_override("rabbit_quorum_queue", group="oslo_messaging_rabbit")
        drop()


def test_three_agents_share_the_load(three_agents, quorum_vhost):
    types = queue_types(quorum_vhost)
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
