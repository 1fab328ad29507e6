"""Greedy callers and slow vendordata targets against a real custos-agent.

Each test starts a ``custos-agent`` process: what is bounded here is the
process itself (its memory, its threads, how long it takes to stop).
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import uuid
from typing import Any

import pytest

from agent import exception
from tests.common import OTHER_PROJECT, member, service_only
from tests.functional.agentproc import AgentProcess
from tests.functional.test_vendordata import eventually, instance, vendordata
from tests.stub_server import StubServer, hang, json_reply, trickle

KIB = 1024
MIB = 1024 * KIB


def rss_bytes(proc: AgentProcess) -> int:
    assert proc.process is not None
    with open(f"/proc/{proc.process.pid}/status") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match, "no VmRSS line"
    return int(match.group(1)) * KIB


# -- ephemeral secrets ----------------------------------------------------------

def test_greedy_member_gets_quota_exceeded_and_agent_memory_stays_bounded(start_agent, api):
    # 64 KiB values, at most 200 per project and 8 MiB in all: the agent
    # holds 8 MiB of them whatever the caller sends.
    proc = start_agent(secrets={"max_ephemeral_per_project": 200,
                                "max_ephemeral_bytes": 8 * MIB,
                                # One project may take it all: the agent's own
                                # bound is what this test pushes on.
                                "max_ephemeral_bytes_per_project": 16 * MIB})
    greedy = member()
    value = b"v" * (64 * KIB)

    def define_with_value(n: int, ctxt: Any = greedy) -> str:
        uuid_ = api.secret_define_xml(
            ctxt, "<secret ephemeral='yes' private='no'><usage type='ceph'>"
                  f"<name>greedy.{uuid.uuid4().hex}.{n}</name></usage></secret>",
            server="agent-1")
        try:
            api.secret_set_value(ctxt, uuid_, value, server="agent-1")
        except exception.QuotaExceeded:
            api.secret_undefine(ctxt, uuid_, server="agent-1")
            raise
        return uuid_

    held: list[str] = []
    refused: list[exception.QuotaExceeded] = []
    rss_at_limit = rss_warm = 0
    for n in range(700):
        try:
            held.append(define_with_value(n))
        except exception.QuotaExceeded as error:
            if not refused:
                rss_at_limit = rss_bytes(proc)
            refused.append(error)
            if len(refused) == 128:
                rss_warm = rss_bytes(proc)
            # Keep pushing past the limit: 32 MiB more, all refused.
            if len(refused) >= 512:
                break
    rss_after = rss_bytes(proc)

    assert len(refused) == 512 and {e.code for e in refused} == {"quota_exceeded"}
    assert {e.kwargs["limit"] for e in refused} == {"max_ephemeral_bytes"}
    # 8 MiB of 64 KiB values, less the definitions counted with them.
    assert 120 <= len(held) <= 128
    # The agent grows by what any RPC traffic costs it (buffers, allocator
    # arenas: about 10 KiB a request here), never by the values refused:
    # the last 384 of them were 24 MiB.
    assert rss_after - rss_warm < 8 * MIB, (rss_at_limit, rss_warm, rss_after)
    assert rss_after - rss_at_limit < 12 * MIB, (rss_at_limit, rss_warm, rss_after)
    assert len(api.secret_list(greedy, ephemeral=True, server="agent-1")) == len(held)

    # Undefining gives the room back, for this caller and for another project.
    for uuid_ in held[:10]:
        api.secret_undefine(greedy, uuid_, server="agent-1")
    assert define_with_value(0, member(OTHER_PROJECT))
    assert api.secret_get_value(greedy, held[-1], server="agent-1") == value
    assert "Traceback" not in proc.log()


def test_a_project_past_its_count_is_refused_while_another_is_served(start_agent, api):
    start_agent(secrets={"max_ephemeral_per_project": 5})
    for n in range(5):
        api.secret_generate(member(), "ceph", f"count.{n}", ephemeral=True, server="agent-1")

    with pytest.raises(exception.QuotaExceeded) as caught:
        api.secret_generate(member(), "ceph", "count.5", ephemeral=True, server="agent-1")

    assert caught.value.kwargs == {"limit": "max_ephemeral_per_project", "allowed": 5}
    assert api.secret_generate(member(OTHER_PROJECT), "ceph", "count.other", ephemeral=True,
                               server="agent-1")


def test_a_project_filling_its_byte_share_leaves_room_for_another(start_agent, api):
    # 2 MiB for the agent; each project's share is a sixteenth of it, 128 KiB.
    start_agent(secrets={"max_ephemeral_bytes": 2 * MIB}, auth={"strategy": "trusted"})
    greedy, other = member(), member(OTHER_PROJECT)
    value = b"v" * (16 * KIB)

    def store(ctxt: Any) -> str:
        uuid_ = api.secret_define_xml(
            ctxt, "<secret ephemeral='yes' private='no'><usage type='ceph'>"
                  f"<name>share.{uuid.uuid4().hex}</name></usage></secret>", server="agent-1")
        api.secret_set_value(ctxt, uuid_, value, server="agent-1")
        return uuid_

    held = []
    with pytest.raises(exception.QuotaExceeded) as caught:
        for _ in range(64):
            held.append(store(greedy))
    theirs = [store(other) for _ in range(7)]

    assert caught.value.kwargs == {"limit": "max_ephemeral_bytes_per_project",
                                   "allowed": 128 * KIB}
    assert len(held) == 7
    assert [api.secret_get_value(other, u, server="agent-1") for u in theirs] == [value] * 7


# -- vendordata targets -----------------------------------------------------------

CONNECT, READ = 0.5, 1.5
EXCHANGE = CONNECT + READ


def slow_target_config(server: StubServer, **extra: Any) -> dict[str, Any]:
    return {**vendordata(server, good="/good", drip="/drip"),
            "connect_timeout": CONNECT, "read_timeout": READ, "deadline": 15,
            "max_concurrent_per_target": 2, **extra}


def test_trickling_target_is_cut_at_its_deadline_beside_a_good_one(
        start_agent, api, server, notifications):  # noqa: F811
    server.route("/good", json_reply({"fine": True}))
    # A byte every 50 ms: the read timeout (1.5 s) is never what ends the
    # exchange, even when three test workers slow the stub server down.
    server.route("/drip", trickle(0.05))
    start_agent(vendordata=slow_target_config(server))
    vms = [instance() for _ in range(6)]

    def lookup(vm: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
        started = time.monotonic()
        result = api.vendordata_get(service_only(), vm)
        return started, time.monotonic() - started, result

    # Three times as many lookups at once as the trickler's lane has threads.
    with concurrent.futures.ThreadPoolExecutor(len(vms)) as pool:
        outcomes = list(pool.map(lookup, vms))

    arrivals = {s.json()["instance-id"]: s.at for s in server.seen("/good")}
    for vm, (started, elapsed, result) in zip(vms, outcomes):
        assert result == {"good": {"fine": True}}
        # The lookup answers when the trickler is cut off, not later...
        assert elapsed < EXCHANGE + 1.0, f"took {elapsed:.2f} s"
        # ...and the good target was asked at once, not after the trickler.
        assert arrivals[vm["uuid"]] - started < 0.5
    for vm in vms:
        assert eventually(lambda: notifications.of(
            "vendordata.fetch.error", instance_uuid=vm["uuid"], target="drip"))
        [report] = notifications.of("vendordata.fetch.error", instance_uuid=vm["uuid"])
        assert report["payload"]["reason"] == "deadline exceeded"


def test_sigterm_with_fetches_in_flight_exits_within_the_graceful_timeout(
        start_agent, api, server):  # noqa: F811
    server.route("/good", json_reply({}))
    server.route("/drip", hang(limit=40))
    # Exchanges may last 30 s; the agent has 6 s to stop.
    proc = start_agent(DEFAULT={"graceful_shutdown_timeout": 6},
                       vendordata=slow_target_config(server, read_timeout=30, deadline=28))
    pool = concurrent.futures.ThreadPoolExecutor(4)
    calls = [pool.submit(api.vendordata_get, service_only(), instance()) for _ in range(4)]
    assert eventually(lambda: len(server.seen("/drip")) >= 2, timeout=10)

    status, took = proc.terminate_timed()

    assert status == 0
    assert took < 6 + 0.5, f"took {took:.2f} s"
    assert "Cutting vendordata fetches still in flight" in proc.log()
    assert "custos-agent stopped" in proc.log()
    pool.shutdown(wait=False, cancel_futures=True)


def test_a_lookup_for_another_project_or_hostname_is_not_served_a_cached_answer(
        start_agent, api, server):  # noqa: F811
    def echo(h: Any) -> None:
        seen = h.server.requests[-1].json()
        h.reply(200, json.dumps({"project": seen["project-id"],
                                 "hostname": seen["hostname"]}).encode(),
                {"Content-Type": "application/json"})

    server.route("/echo", echo)
    start_agent(vendordata={**vendordata(server, echo="/echo"), "cache_ttl": 300,
                            "cache_max_bytes": 4096})
    vm = instance()

    first = api.vendordata_get(service_only(), vm)
    cached = api.vendordata_get(service_only(), vm)
    other_project = api.vendordata_get(service_only(), {**vm, "project_id": OTHER_PROJECT})
    other_host = api.vendordata_get(service_only(), {**vm, "hostname": "vm-2"})

    assert first == cached == {"echo": {"project": vm["project_id"], "hostname": "vm-1"}}
    assert other_project == {"echo": {"project": OTHER_PROJECT, "hostname": "vm-1"}}
    assert other_host == {"echo": {"project": vm["project_id"], "hostname": "vm-2"}}
    assert len(server.seen("/echo")) == 3
