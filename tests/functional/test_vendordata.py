"""Boot roles, dynamic vendordata and the delete events, over RabbitMQ.

The agent runs in the test process (tests/functional/inprocess.py) on the
real RabbitMQ and database, as a custos-agent process where its log is
the point; its vendordata targets are real HTTP servers on 127.0.0.1
(the standard library's, from tests/stub_server.py) that record what
they received and stop on their own.  Keystone is played by the same kind of server,
issuing one token to whoever asks: a real Keystone cannot run here.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from agent import exception
from db import models
from tests import common, services
from tests.common import PROJECT, log_lines, make_context, service_only
from tests.functional.agentproc import run_script
from tests.stub_server import (
    StreamLog, StubServer, accept_only, after, close_connection, gzip_reply, hang, json_reply,
    keystone_issuing, keystone_tokens, raw_reply, stream, trickle_framed)

MB = 1024 * 1024
SERVICE_TOKEN = "gAAAAAB-functional-service-token-81c2"
USER_TOKEN = "gAAAAAB-functional-user-token-never-sent"
KEYSTONE_PASSWORD = "functional-keystone-password-5e0a"
# Agents these tests start take the caller's identity as the context gives it.
TRUSTED = {"strategy": "trusted"}


def instance(**fields: Any) -> dict[str, Any]:
    values = {"uuid": str(uuid.uuid4()), "project_id": PROJECT, "image_id": "img-1",
              "hostname": "vm-1", "user_data": None, "metadata": {"tier": "web"}}
    values.update(fields)
    return values


# How long a test waits for what agents do in the background.
eventually = functools.partial(common.eventually, timeout=20.0)


def vendordata(server: StubServer, **targets: str) -> dict[str, Any]:
    """The [vendordata] section naming ``targets`` (name -> path) on ``server``."""
    return {"targets": ",".join(f"{name}@{server.url(path)}" for name, path in targets.items())}


# -- concurrency and the cache ------------------------------------------------

def test_two_slow_targets_answer_in_the_time_of_one(in_process_agent, api, server):
    server.route("/a", after(1.0, json_reply({"from": "a"})))
    server.route("/b", after(1.0, json_reply({"from": "b"})))
    in_process_agent(vendordata=vendordata(server, a="/a", b="/b"))

    started = time.monotonic()
    result = api.vendordata_get(service_only(), instance())
    elapsed = time.monotonic() - started

    assert result == {"a": {"from": "a"}, "b": {"from": "b"}}
    assert 1.0 <= elapsed < 1.8, f"took {elapsed:.2f} s"


def test_second_lookup_inside_the_ttl_makes_no_request(in_process_agent, api, server):
    server.route("/a", json_reply({"n": 1}))
    in_process_agent(vendordata={**vendordata(server, a="/a"), "cache_ttl": 300})
    vm = instance()

    first = api.vendordata_get(service_only(), vm)
    second = api.vendordata_get(service_only(), vm)

    assert first == second == {"a": {"n": 1}}
    assert len(server.seen("/a")) == 1


def test_max_age_zero_and_no_store_are_honoured(in_process_agent, api, server):
    server.route("/a", json_reply({}, headers={"Cache-Control": "max-age=0"}))
    server.route("/b", json_reply({}, headers={"Cache-Control": "no-store"}))
    in_process_agent(vendordata=vendordata(server, a="/a", b="/b"))
    vm = instance()

    api.vendordata_get(service_only(), vm)
    api.vendordata_get(service_only(), vm)

    assert len(server.seen("/a")) == len(server.seen("/b")) == 2


# -- boot roles ---------------------------------------------------------------

def test_body_carries_roles_stored_at_boot_after_a_second_cast(in_process_agent, api, server,
                                                               database_url):
    server.route("/a", json_reply({}))
    proc = in_process_agent(database_url=database_url, vendordata=vendordata(server, a="/a"))
    vm = instance()

    api.instance_boot_roles_set(service_only(), vm["uuid"], ["member", "reader"], wait=True)
    api.instance_boot_roles_set(service_only(), vm["uuid"], ["admin"])
    # The plain cast has been handled once the agent logged it a second time.
    assert eventually(lambda: len(log_lines(proc, f"instance {vm['uuid']} recorded")) == 2)
    api.vendordata_get(service_only(), vm)

    assert server.seen("/a")[0].json() == {
        "project-id": PROJECT, "instance-id": vm["uuid"], "image-id": "img-1",
        "user-data": None, "hostname": "vm-1", "metadata": {"tier": "web"},
        "boot-roles": "member,reader"}


def test_concurrent_first_casts_store_one_set_of_roles(in_process_agent, api, server,
                                                       postgresql_url):
    server.route("/a", json_reply({}))
    proc = in_process_agent(database_url=postgresql_url, vendordata=vendordata(server, a="/a"))
    vm = instance()

    for n in range(10):
        api.instance_boot_roles_set(service_only(), vm["uuid"], [f"role{n}"])
    assert eventually(lambda: len(log_lines(proc, f"instance {vm['uuid']} recorded")) == 10)
    api.vendordata_get(service_only(), vm)

    assert server.seen("/a")[0].json()["boot-roles"] in {f"role{n}" for n in range(10)}
    assert "Traceback" not in proc.log()


def test_a_burst_of_boot_roles_casts_is_stored_whole_beside_bad_ones(start_agent, api,
                                                                    database_url):
    proc = start_agent(database_url=database_url)
    instances = [str(uuid.uuid4()) for _ in range(300)]

    for n, vm_uuid in enumerate(instances):
        api.instance_boot_roles_set(service_only(), vm_uuid, ["member", f"r{n % 7}"])
        if n % 60 == 0:
            # Casts that commit together must not lose a good cast to a bad one.
            api._cast(service_only(), "instance_boot_roles_set", instance_uuid="vm-7",
                      roles=["member"])
    engine = sa.create_engine(database_url)
    try:
        def stored() -> dict[str, str]:
            with engine.connect() as conn:
                return dict(conn.execute(sa.select(
                    models.InstanceSystemMetadata.instance_uuid,
                    models.InstanceSystemMetadata.value)).all())

        assert eventually(lambda: len(stored()) >= len(instances))
        rows = stored()
    finally:
        engine.dispose()

    assert rows == {vm_uuid: json.dumps(["member", f"r{n % 7}"])
                    for n, vm_uuid in enumerate(instances)}
    assert eventually(lambda: len(log_lines(proc, "instance_boot_roles_set refused: "
                                                  "invalid_input")) == 5)
    assert "Traceback" not in proc.log()
    assert api.health(service_only())["database"] == "ok"


# -- misbehaving targets ------------------------------------------------------

MISBEHAVING = {
    "slow": (after(3.0, json_reply({})), "read timeout"),
    "hangs": (hang(), "read timeout"),
    "e500": (raw_reply(500, b"Internal Server Error"), "HTTP 500"),
    "html": (raw_reply(200, b"<html><body>hi</body></html>", {"Content-Type": "text/html"}),
             "answer is not JSON"),
    "huge": (None, f"answer larger than {MB} bytes"),
    "closes": (close_connection(), "connection closed without an answer"),
}


def misbehaving_config(server: StubServer, **extra: Any) -> dict[str, Any]:
    huge = StreamLog()
    server.route("/good", json_reply({"fine": True}))
    names = {"good": "/good"}
    for name, (behaviour, _reason) in MISBEHAVING.items():
        server.route(f"/{name}", behaviour or stream(10 * MB, huge))
        names[name] = f"/{name}"
    return {**vendordata(server, **names), "connect_timeout": 1, "read_timeout": 1,
            "deadline": 4, "retries": 1, **extra}


def test_each_misbehaving_target_is_left_out_and_reported(in_process_agent, api, server,
                                                          notifications):
    proc = in_process_agent(vendordata=misbehaving_config(server))
    vm = instance()

    result = api.vendordata_get(service_only(), vm, server="agent-1")

    assert result == {"good": {"fine": True}}
    found = eventually(lambda: len(notifications.of(
        "vendordata.fetch.error", instance_uuid=vm["uuid"])) == len(MISBEHAVING))
    reports = {n["payload"]["target"]: n for n in notifications.of(
        "vendordata.fetch.error", instance_uuid=vm["uuid"])}
    assert found, reports
    for name, (_behaviour, reason) in MISBEHAVING.items():
        assert reports[name]["priority"] == "error"
        assert reports[name]["publisher_id"] == "custos-agent.agent-1"
        assert reports[name]["payload"]["reason"] == reason, name
    # The target that read the request and closed got it once, retries or not.
    assert len(server.seen("/closes")) == 1
    # The agent keeps serving, and asks the failed targets again next time.
    api.vendordata_get(service_only(), vm, server="agent-1")
    assert len(server.seen("/e500")) == 2 and len(server.seen("/good")) == 1
    assert len(log_lines(proc, "without a service token")) == 1


def test_answers_of_targets_written_for_nova_come_back_as_they_came(in_process_agent, api,
                                                                   server):
    server.route("/list", json_reply(["a", 1]))
    server.route("/null", json_reply(None))
    server.route("/text", json_reply("plain"))
    server.route("/gz", gzip_reply({"zipped": True}))
    in_process_agent(auth=TRUSTED, vendordata=vendordata(server, list="/list", null="/null",
                                                         text="/text", gz="/gz"))

    result = api.vendordata_get(service_only(), instance())

    assert result == {"list": ["a", 1], "null": None, "text": "plain", "gz": {"zipped": True}}


def test_fatal_mode_fails_the_call_and_still_reports(in_process_agent, api, server,
                                                     notifications):
    in_process_agent(host="agent-fatal",
                vendordata=misbehaving_config(server, failure_fatal="true"))
    vm = instance()

    with pytest.raises(exception.VendordataFetchFailed) as caught:
        api.vendordata_get(service_only(), vm, server="agent-fatal")

    assert caught.value.code == "vendordata_fetch_failed"
    assert caught.value.kwargs["target"] in MISBEHAVING
    assert eventually(lambda: len(notifications.of(
        "vendordata.fetch.error", instance_uuid=vm["uuid"], fatal=True)) == len(MISBEHAVING))


# -- the service token --------------------------------------------------------

def test_targets_get_the_agents_service_token_never_the_users(start_agent, api, server):
    server.route("/a", json_reply({}))
    server.route("/v3/auth/tokens", keystone_tokens(SERVICE_TOKEN))
    # A real process: its log, as an operator reads it, must hold no token.
    proc = start_agent(
        vendordata=vendordata(server, a="/a"),
        vendordata_auth={"auth_type": "v3password", "auth_url": server.url("/v3"),
                         "username": "custos", "password": KEYSTONE_PASSWORD,
                         "user_domain_name": "Default", "project_name": "service",
                         "project_domain_name": "Default"})
    ctxt = make_context(PROJECT, ["member"], ["service"], auth_token=USER_TOKEN)

    api.vendordata_get(ctxt, instance())
    api.vendordata_get(ctxt, instance())

    assert [s.headers.get("X-Auth-Token") for s in server.seen("/a")] == [SERVICE_TOKEN] * 2
    assert server.seen("/v3/auth/tokens")[0].json()["auth"]["identity"]["password"][
        "user"]["name"] == "custos"
    log = proc.log()
    assert "without a service token" not in log
    for secret in (SERVICE_TOKEN, USER_TOKEN, KEYSTONE_PASSWORD):
        assert secret not in log


def test_a_refused_service_token_is_renewed_by_a_real_agent(start_agent, api, server):
    # Keystone issues svc-1, svc-2, ...; the target takes only the second,
    # as after svc-1 was revoked.
    server.route("/v3/auth/tokens", keystone_issuing("svc"))
    server.route("/a", accept_only("svc-2", {"from": "a"}))
    proc = start_agent(
        auth=TRUSTED, vendordata={**vendordata(server, a="/a"), "failure_fatal": "true"},
        vendordata_auth={"auth_type": "v3password", "auth_url": server.url("/v3"),
                         "username": "custos", "password": KEYSTONE_PASSWORD,
                         "user_domain_name": "Default", "project_name": "service",
                         "project_domain_name": "Default"})

    first = api.vendordata_get(service_only(), instance())
    second = api.vendordata_get(service_only(), instance())

    assert first == second == {"a": {"from": "a"}}
    assert [s.headers.get("X-Auth-Token") for s in server.seen("/a")] == [
        "svc-1", "svc-2", "svc-2"]
    assert len(server.seen("/v3/auth/tokens")) == 2
    assert "svc-1" not in proc.log() and "svc-2" not in proc.log()


# -- a target that trickles an HTTP/1.0 answer -----------------------------------

CONNECT, READ = 0.5, 1.5
EXCHANGE = CONNECT + READ


def test_eight_http10_tricklers_hold_neither_other_lookups_nor_their_lane(
        start_agent, api, server):
    # HTTP/1.0, Content-Length 100000, then a byte a second.
    server.route("/drip", trickle_framed(1.0, "http10"))
    server.route("/good", json_reply({"fine": True}))
    start_agent(auth=TRUSTED, vendordata={
        **vendordata(server, good="/good", drip="/drip"), "connect_timeout": CONNECT,
        "read_timeout": READ, "deadline": 15, "max_concurrent_per_target": 8})

    def lookup(vm: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
        started = time.monotonic()
        result = api.vendordata_get(service_only(), vm)
        return started, time.monotonic() - started, result

    first, others = [instance() for _ in range(8)], [instance() for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        # Eight lookups fill the trickler's lane; eight more come a moment later.
        held = [pool.submit(lookup, vm) for vm in first]
        time.sleep(0.3)
        later = [pool.submit(lookup, vm) for vm in others]
        outcomes = [future.result() for future in held + later]

    good = {s.json()["instance-id"]: s.at for s in server.seen("/good")}
    drip = {s.json()["instance-id"]: s.at for s in server.seen("/drip")}
    for vm, (started, elapsed, result) in zip(first + others, outcomes):
        assert result == {"good": {"fine": True}}
        # The good target was asked at once, and the lookup ended at the
        # trickler's exchange deadline, not at the overall one.
        assert good[vm["uuid"]] - started < 0.5
        assert elapsed < EXCHANGE + 1.0, f"took {elapsed:.2f} s"
    # The first eight left the lane at their deadline, so the later eight
    # still reached the target inside theirs.
    assert set(drip) == {vm["uuid"] for vm in first + others}


def test_sigterm_with_an_http10_trickler_in_flight_exits_within_the_graceful_timeout(
        start_agent, api, server):
    server.route("/drip", trickle_framed(1.0, "http10", limit=40))
    # The exchange may last 30 s and the lookup 28 s; the agent has 6 s to stop.
    proc = start_agent(auth=TRUSTED, DEFAULT={"graceful_shutdown_timeout": 6}, vendordata={
        **vendordata(server, drip="/drip"), "connect_timeout": 1, "read_timeout": 29,
        "deadline": 28})
    pool = concurrent.futures.ThreadPoolExecutor(4)
    calls = [pool.submit(api.vendordata_get, service_only(), instance()) for _ in range(4)]
    assert eventually(lambda: len(server.seen("/drip")) == 4, timeout=10)
    time.sleep(1.5)

    status, took = proc.terminate_timed()

    assert status == 0
    assert took < 6 + 0.5, f"took {took:.2f} s"
    assert "custos-agent stopped" in proc.log()
    pool.shutdown(wait=False, cancel_futures=True)
    for call in calls:
        call.cancel()


# -- events -------------------------------------------------------------------

def test_instance_delete_end_empties_cache_and_roles(in_process_agent, api, server, nova):
    server.route("/a", json_reply({"x": 1}))
    proc = in_process_agent(vendordata={**vendordata(server, a="/a"), "cache_ttl": 300})
    vm = instance()
    api.instance_boot_roles_set(service_only(), vm["uuid"], ["member"], wait=True)
    api.vendordata_get(service_only(), vm)

    services.delete_instance(nova, vm["uuid"], "versioned")
    assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: purged 1 "
                                              "boot roles row(s)"))
    assert eventually(lambda: log_lines(proc, f"Instance {vm['uuid']} deleted: dropped 1 "
                                              "cached vendordata answer(s)"))
    api.vendordata_get(service_only(), vm)

    bodies = [s.json() for s in server.seen("/a")]
    assert [b["boot-roles"] for b in bodies] == ["member", ""]


def test_volume_delete_end_purges_glance_metadata_and_generated_secrets(
        in_process_agent, api, cinder, notifications, tmp_path):
    proc = in_process_agent()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state' / 'custos.sqlite'}")
    volume, secret_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(sa.insert(models.VolumeGlanceMetadata.__table__), [
            {"volume_id": volume, "key": "image_id", "value": "img", "project_id": PROJECT,
             "created_at": models.utcnow()}])
        conn.execute(sa.insert(models.Secret.__table__), [
            {"uuid": secret_uuid, "project_id": PROJECT, "usage_type": "volume",
             "usage_id": volume, "generated": True, "private": False,
             "created_at": models.utcnow()}])

    services.delete_volume(cinder, volume, "legacy")

    assert eventually(lambda: notifications.of("secret.undefine", uuid=secret_uuid))
    with engine.connect() as conn:
        for table in (models.VolumeGlanceMetadata.__table__, models.Secret.__table__):
            column = table.c.volume_id if "volume_id" in table.c else table.c.usage_id
            # Marked as purged: no longer live under the volume's id.
            assert conn.scalar(sa.select(sa.func.count()).select_from(table)
                               .where(column == volume, table.c.deleted_at.is_(None))) == 0
    engine.dispose()
    assert log_lines(proc, f"Volume {volume} deleted")


# -- the command line ---------------------------------------------------------

def test_cli_sets_roles_and_gets_vendordata(in_process_agent, server):
    server.route("/a", json_reply({"hello": "world"}))
    proc = in_process_agent(vendordata=vendordata(server, a="/a"))
    vm = str(uuid.uuid4())

    run_script("custos", proc.config, "--project-id", PROJECT, "--service-roles", "service",
               "vendordata", "roles-set",
               vm, "--boot-roles", "member,reader", "--wait")
    out = run_script("custos", proc.config, "--project-id", PROJECT, "--service-roles", "service",
                     "vendordata", "get",
                     vm, "--hostname", "vm-1", "--meta", "tier=web")
    bad = run_script("custos", proc.config, "--service-roles", "service", "vendordata", "get",
                     "not-a-uuid",
                     "--instance-project", PROJECT, check=False)

    assert json.loads(out.stdout) == {"a": {"hello": "world"}}
    sent = server.seen("/a")[0].json()
    assert sent["boot-roles"] == "member,reader" and sent["metadata"] == {"tier": "web"}
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("custos: invalid_input: Invalid input for field "
                                  "'instance.uuid': is not a valid UUID")
