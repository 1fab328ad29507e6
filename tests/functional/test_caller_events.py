"""Deleted instances and volumes, announced as real Nova and Cinder announce them.

Real custos-agent processes on RabbitMQ; the events come from notifiers
configured as Nova and Cinder configure theirs (tests/services.py: their
own exchanges ``nova`` and ``cinder``, driver messagingv2, topics
``notifications`` and ``versioned_notifications``, publisher ids
``compute.<host>``, ``nova-compute:<host>`` and ``volume.<host>``), and
every purge is observed through the RPC API.  A poison message is
published raw with kombu, as nothing built on oslo.messaging would send
it.
"""

from __future__ import annotations

import functools
import copy
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest

from agent import exception
from benchmarks.soak_samples import thread_count
from tests import common, services
from tests.common import (PROJECT, log_lines, member, member_with_service, nobody,
                          service_only)
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import RABBIT_URL, _rabbitmqctl, agent_sections
from tests.stub_server import StubServer, json_reply


# Events and purges reach an agent asynchronously.
eventually = functools.partial(common.eventually, timeout=60.0)


def targets(server: StubServer) -> dict[str, Any]:
    server.route("/a", json_reply({"x": 1}))
    return {"targets": f"a@{server.url('/a')}", "cache_ttl": 300}


def instance() -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "project_id": PROJECT, "image_id": "img-1",
            "hostname": "vm-1", "user_data": None, "metadata": {}}


def asked_for(server: StubServer, vm: dict[str, Any]) -> list[dict[str, Any]]:
    """The bodies the vendordata target received for ``vm``."""
    return [seen.json() for seen in server.seen("/a")
            if seen.json()["instance-id"] == vm["uuid"]]


def secret_gone(api: Any, secret: str, server: str | None = None) -> bool:
    try:
        api.secret_get_value(member(), secret, server=server)
    except exception.SecretNotFound:
        return True
    return False


def test_nova_deletions_in_both_styles_purge_boot_roles_and_vendordata(
        start_agent, api, server, nova):
    proc = start_agent(vendordata=targets(server))
    legacy_vm, versioned_vm, kept_vm = instance(), instance(), instance()
    for vm in (legacy_vm, versioned_vm, kept_vm):
        api.instance_boot_roles_set(service_only(), vm["uuid"], ["member"], wait=True)
        api.vendordata_get(service_only(), vm)

    services.delete_instance(nova, legacy_vm["uuid"], "legacy")
    services.delete_instance(nova, versioned_vm["uuid"], "versioned")

    for vm in (legacy_vm, versioned_vm):
        assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: "
                                                  "dropped 1 cached"))
        assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: "
                                                  "purged 1 boot roles"))
    for vm in (legacy_vm, versioned_vm, kept_vm):
        api.vendordata_get(service_only(), vm)
    # Deleted: asked again (the cache is gone), without roles (they are gone).
    for vm in (legacy_vm, versioned_vm):
        assert [b["boot-roles"] for b in asked_for(server, vm)] == ["member", ""]
    # Kept: still cached, so asked once only.
    assert [b["boot-roles"] for b in asked_for(server, kept_vm)] == ["member"]


def test_cinder_deletions_in_both_styles_purge_glance_metadata_and_generated_secrets(
        start_agent, api, cinder):
    proc = start_agent()
    volumes = {"legacy": str(uuid.uuid4()), "versioned": str(uuid.uuid4()),
               "kept": str(uuid.uuid4())}
    secrets = {}
    for name, volume in volumes.items():
        api.volume_glance_metadata_set(member_with_service(), volume, {"image_id": name},
                                       wait=True)
        secrets[name] = api.secret_generate(member(), "volume", volume)

    services.delete_volume(cinder, volumes["legacy"], "legacy")
    services.delete_volume(cinder, volumes["versioned"], "versioned")

    for style in ("legacy", "versioned"):
        assert eventually(lambda: log_lines(proc, f"Volume {volumes[style]} deleted"))
        assert api.volume_glance_metadata_get(member(), volumes[style]) == {}
        assert secret_gone(api, secrets[style])
    assert api.volume_glance_metadata_get(member(), volumes["kept"]) == {"image_id": "kept"}
    assert api.secret_get_value(member(), secrets["kept"])


def test_every_agent_forgets_its_cached_vendordata_and_ephemeral_volume_secret(
        start_agent, api, server, postgresql_url, nova, cinder):
    """One event reaches one agent of the shared pool, and every agent's own pool."""
    agents = [start_agent(database_url=postgresql_url, host=host, vendordata=targets(server))
              for host in ("agent-1", "agent-2")]
    vm, volume = instance(), str(uuid.uuid4())
    api.instance_boot_roles_set(service_only(), vm["uuid"], ["member"], wait=True)
    ephemeral = {}
    for proc in agents:
        api.vendordata_get(service_only(), vm, server=proc.host)
    # One ephemeral secret per usage and agent: each agent generates its own.
    ephemeral["agent-2"] = api.secret_generate(member(), "volume", volume, ephemeral=True,
                                               server="agent-2")
    assert len(asked_for(server, vm)) == 2

    services.delete_instance(nova, vm["uuid"], "versioned")
    services.delete_volume(cinder, volume, "legacy")

    for proc in agents:
        assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: "
                                                  "dropped 1 cached"))
    assert eventually(lambda: log_lines(agents[1], f"Volume {volume} deleted: undefined 1 "
                                                   "generated ephemeral"))
    # The database purge ran once, on one agent or the other.
    purges = [line for proc in agents
              for line in log_lines(proc, f"Instance {vm['uuid']} deleted: purged")]
    assert len(purges) == 1
    for proc in agents:
        api.vendordata_get(service_only(), vm, server=proc.host)
    assert [b["boot-roles"] for b in asked_for(server, vm)] == ["member", "member", "", ""]
    assert secret_gone(api, ephemeral["agent-2"], server="agent-2")


# -- threads ------------------------------------------------------------------

def queued_events(vhost: str) -> dict[str, int]:
    """Messages ready or unacknowledged in each event queue of the virtual host."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers",
         "name", "messages"], capture_output=True, text=True, timeout=60, check=True).stdout
    return {name: int(count) for name, count in
            (line.split("\t")[:2] for line in listing.splitlines() if "\t" in line)
            if name.startswith("custos-agent-events")}


def announce_deletions(nova: services.Service, cinder: services.Service,
                       count: int) -> list[str]:
    """Announce ``count`` deletions, Nova's and Cinder's in both styles, in turn.

    :returns: the ids of the deleted instances and volumes.
    """
    ids = []
    for number in range(count):
        resource = str(uuid.uuid4())
        style = ("legacy", "versioned")[number // 2 % 2]
        if number % 2:
            services.delete_volume(cinder, resource, style)
        else:
            services.delete_instance(nova, resource, style)
        ids.append(resource)
    return ids


def test_hundreds_of_events_leave_the_agents_thread_count_flat(
        start_agent, api, exchange, nova, cinder):
    """Both listeners run each event on a small pool of their own, not one thread per event."""
    proc = start_agent(auth={"strategy": "trusted"})
    assert proc.process is not None
    pid = proc.process.pid

    def purged() -> int:
        return len(log_lines(proc, " deleted: purged "))

    def drained() -> bool:
        queues = queued_events(exchange)
        return len(queues) == 2 and not any(queues.values())

    # A few events first, so that each listener has started its first thread.
    announce_deletions(nova, cinder, 4)
    assert eventually(lambda: purged() == 4)
    assert eventually(drained)
    before = thread_count(pid)

    announce_deletions(nova, cinder, 300)

    assert eventually(lambda: purged() == 304), purged()
    assert eventually(drained), queued_events(exchange)
    after = thread_count(pid)
    # Each listener may add a few workers under a burst; with a thread per
    # event up to executor_thread_pool_size (64) the two added about 126.
    assert after - before <= 8, f"{before} threads before 300 events, {after} after"
    assert api.health(nobody(), server=proc.host)


# -- poison -------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publish_raw(rabbit_url: str, exchange: str, routing_key: str,
                message: dict[str, Any] | str) -> None:
    """Publish an oslo.messaging v2 envelope around ``message`` with kombu alone.

    A string is published as the envelope itself, as it is.
    """
    if isinstance(message, str):
        body = message
    else:
        body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)})
    # oslo.messaging's rabbit:// is kombu's amqp://.
    with kombu.Connection("amqp" + rabbit_url[len("rabbit"):]) as connection:
        producer = connection.Producer()
        producer.publish(body, exchange=exchange, routing_key=routing_key,
                         content_type="application/json", declare=[])


def test_a_poison_message_costs_one_line_and_no_cpu(start_agent, api, rabbit_url, cinder):
    proc = start_agent()
    assert proc.process is not None
    poison = {"message_id": str(uuid.uuid4()), "publisher_id": "volume.host-1",
              "event_type": "volume.delete.end", "priority": None,
              "payload": {"volume_id": str(uuid.uuid4())},
              "timestamp": "2026-01-01 00:00:00.000000"}

    publish_raw(rabbit_url, "cinder", "notifications.info", poison)
    # Not JSON at all: oslo.messaging's rabbit driver rejects it, unrequeued.
    publish_raw(rabbit_url, "nova", "notifications.info",
                '{"oslo.version": "2.0", "oslo.message": "{not json"}')

    assert eventually(lambda: log_lines(proc, "can never be handled"))
    assert eventually(lambda: len(log_lines(proc, "Failed to process message")) == 2)
    before = cpu_seconds(proc.process.pid)
    time.sleep(3)
    used = cpu_seconds(proc.process.pid) - before
    assert used < 0.3, f"the agent used {used:.2f} s of CPU in 3 s after the poison"
    [line] = log_lines(proc, "can never be handled")
    assert "unknown priority" in line and "volume.delete.end" in line
    assert not log_lines(proc, "Exception during message handling")
    # Still serving, and still purging.
    assert api.health(member(), server=proc.host)
    volume = str(uuid.uuid4())
    secret = api.secret_generate(member(), "volume", volume)
    services.delete_volume(cinder, volume, "legacy")
    assert eventually(lambda: secret_gone(api, secret))
    assert len(log_lines(proc, "can never be handled")) == 1
    # Once for each of the agent's two queues, never again.
    assert len(log_lines(proc, "Failed to process message")) == 2


def test_an_unreachable_database_is_retried_within_the_bound_on_a_classic_queue(
        start_agent, api, cinder, tmp_path):
    """A requeued event comes straight back from a classic queue; the agent counts."""
    prepared = start_agent()
    prepared.stop()
    sections = copy.deepcopy(prepared.sections)
    # Nothing listens on port 1: every transaction fails at once as unreachable.
    sections["database"] = {"connection": "postgresql+psycopg2://postgres@127.0.0.1:1/custos",
                            "max_retries": 0, "connect_timeout": 1}
    sections["events"] = {"max_redeliveries": 2}
    workdir = tmp_path / "unreachable"
    workdir.mkdir()
    proc = AgentProcess(workdir, sections)
    proc.start()
    try:
        proc.wait_ready(api.client.transport, nobody())
        assert proc.process is not None

        services.delete_volume(cinder, str(uuid.uuid4()), "legacy")

        assert eventually(lambda: log_lines(proc, "failed deliveries"))
        before = cpu_seconds(proc.process.pid)
        time.sleep(3)
        used = cpu_seconds(proc.process.pid) - before
        requeued = log_lines(proc, "Requeued volume.delete.end")
        assert ["delivery 1 of at most 3" in requeued[0],
                "delivery 2 of at most 3" in requeued[1]] == [True, True]
        assert len(requeued) == 2
        assert len(log_lines(proc, "Could not handle volume.delete.end")) == 3
        [dropped] = log_lines(proc, "failed deliveries")
        assert "ERROR" in dropped and "after 3 failed deliveries" in dropped
        assert used < 0.3, f"the agent used {used:.2f} s of CPU in 3 s after dropping"
        assert api.health(nobody(), server=proc.host)
    finally:
        proc.stop()


# -- quorum queues --------------------------------------------------------------

UNREACHABLE_DATABASE = {"connection": "postgresql+psycopg2://postgres@127.0.0.1:1/custos",
                        "max_retries": 0, "connect_timeout": 1}


@pytest.fixture
def quorum_url(exchange: str) -> Iterator[str]:
    """A virtual host of its own: its queues are declared as quorum queues from the start."""
    name = f"{exchange}-quorum"
    if not (_rabbitmqctl("add_vhost", name)
            and _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")):
        pytest.skip("rabbitmqctl cannot create a virtual host here")
    yield RABBIT_URL.rstrip("/") + "/" + name
    _rabbitmqctl("delete_vhost", name)


def test_on_a_quorum_queue_the_brokers_count_bounds_redelivery_across_agents(
        tmp_path, exchange, quorum_url):
    """Two agents share the requeued event; RabbitMQ's x-delivery-count is one count."""
    agents = []
    try:
        for host in ("agent-q1", "agent-q2"):
            workdir = tmp_path / host
            workdir.mkdir()
            sections = agent_sections(
                tmp_path, exchange, host=host, state_path=workdir / "state",
                rabbit_url=quorum_url, database=UNREACHABLE_DATABASE,
                oslo_messaging_rabbit={"rabbit_quorum_queue": "true"},
                events={"max_redeliveries": 2})
            proc = AgentProcess(workdir, sections)
            proc.start()
            agents.append(proc)
        for proc in agents:
            # No RPC client here: one on this virtual host would have to
            # declare its exchange as quorum queues need, so readiness is
            # read from the log (a loaded machine can take a while). The
            # agent says it is serving once its listeners' queues exist.
            assert eventually(lambda: log_lines(proc, "serving topic custos-agent")
                              or proc.process is None or proc.process.poll() is not None,
                              timeout=120)
            assert log_lines(proc, "serving topic custos-agent"), proc.log()
        volume = str(uuid.uuid4())
        event = {"message_id": str(uuid.uuid4()), "publisher_id": "volume.volume-1",
                 "event_type": "volume.delete.end", "priority": "INFO",
                 "payload": services.volume_deleted_legacy(volume),
                 "timestamp": "2026-01-02 03:04:05.000000"}

        # Cinder's own notifier would declare exchange cinder non-durable;
        # the agents declared it durable, as quorum queues need.
        publish_raw(quorum_url, "cinder", "notifications.info", event)

        def dropped() -> list[str]:
            return [line for proc in agents for line in log_lines(proc, "failed deliveries")]

        assert eventually(dropped)
        time.sleep(2)
        attempts = [line for proc in agents
                    for line in log_lines(proc, "Could not handle volume.delete.end")]
        # Counted per agent, two agents would take it up to 2 x 3 times.
        assert len(attempts) == 3
        assert len(dropped()) == 1
        # One count for the queue: whichever agent took it, the numbers go on.
        numbers = sorted(int(line.split("(delivery ")[1].split(" ")[0]) for proc in agents
                         for line in log_lines(proc, "Requeued volume.delete.end"))
        assert numbers == [1, 2]
    finally:
        for proc in agents:
            proc.stop()
