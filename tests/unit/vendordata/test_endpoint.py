"""instance_boot_roles_set and vendordata_get through the agent's RPC boundary.

The agent runs on the fake transport with SQLite; its targets are real
HTTP servers on 127.0.0.1 (the ``server`` fixture).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from keystoneauth1 import loading as ks_loading

from agent import exception
from agent import rpc
from agent.service import AgentService
from agent.vendordata import bootroles
from db import api as db_api
from tests.common import PROJECT, admin, make_context, member, service_only
from tests.stub_server import (
    accept_only, after, close_connection, gzip_reply, json_reply, keystone_issuing,
    keystone_tokens, raw_reply)

SERVICE_TOKEN = "gAAAAAB-agent-service-token-3f9c"
USER_TOKEN = "gAAAAAB-user-token-must-not-travel"
KEYSTONE_PASSWORD = "keystone-password-7d1e"


def instance(**fields: Any) -> dict[str, Any]:
    values = {"uuid": str(uuid.uuid4()), "project_id": PROJECT, "image_id": "img-1",
              "hostname": "vm-1", "user_data": "I2Nsb3VkLWNvbmZpZw==",
              "metadata": {"tier": "web"}}
    values.update(fields)
    return values


@pytest.fixture
def targets(migrated, server):
    """Two targets, a and b, on the stub server; a short deadline."""
    server.route("/a", json_reply({"from": "a"}))
    server.route("/b", json_reply({"from": "b"}))
    migrated.set_override("targets", [f"a@{server.url('/a')}", f"b@{server.url('/b')}"],
                          group="vendordata")
    migrated.set_override("read_timeout", 1, group="vendordata")
    migrated.set_override("deadline", 3, group="vendordata")
    return server


@pytest.fixture
def fatal(targets, migrated):
    migrated.set_override("failure_fatal", True, group="vendordata")
    return targets


@pytest.fixture
def keystone(targets, migrated):
    """[vendordata_auth] pointing at a Keystone stand-in on the stub server."""
    targets.route("/v3/auth/tokens", keystone_tokens(SERVICE_TOKEN))
    # The plugin's options exist once keystoneauth1 loads the plugin; they
    # are registered here to be set, and removed afterwards because some
    # are required and would break the next test's empty configuration.
    plugin_opts = ks_loading.get_auth_plugin_conf_options("v3password")
    migrated.register_opts(plugin_opts, group="vendordata_auth")
    for name, value in {"auth_type": "v3password", "auth_url": targets.url("/v3"),
                        "username": "custos", "password": KEYSTONE_PASSWORD,
                        "user_domain_name": "Default", "project_name": "service",
                        "project_domain_name": "Default"}.items():
        migrated.set_override(name, value, group="vendordata_auth")
    yield targets
    migrated.reset()
    migrated.unregister_opts(plugin_opts, group="vendordata_auth")


# -- boot roles ---------------------------------------------------------------

def test_body_carries_the_first_roles_stored(targets, harness):
    vm = instance()
    harness.api.instance_boot_roles_set(service_only(), vm["uuid"], ["member", "reader"],
                                        wait=True)
    harness.api.instance_boot_roles_set(service_only(), vm["uuid"], ["admin"], wait=True)

    harness.api.vendordata_get(service_only(), vm)

    sent = targets.seen("/a")[0].json()
    assert sent == {"project-id": PROJECT, "instance-id": vm["uuid"], "image-id": "img-1",
                    "user-data": "I2Nsb3VkLWNvbmZpZw==", "hostname": "vm-1",
                    "metadata": {"tier": "web"}, "boot-roles": "member,reader"}
    assert targets.seen("/b")[0].json()["boot-roles"] == "member,reader"


def test_roles_default_to_the_user_roles_of_the_request(targets, harness):
    vm = instance()
    booting = make_context(PROJECT, ["member", "creator"], ["service"])

    harness.api.instance_boot_roles_set(booting, vm["uuid"], wait=True)
    harness.api.vendordata_get(service_only(), vm)

    assert targets.seen("/a")[0].json()["boot-roles"] == "member,creator"


def stored_roles(instance_uuid: str, timeout: float = 5.0) -> list[str] | None:
    """The roles in the database, waiting up to ``timeout`` for a cast to land."""
    deadline = time.monotonic() + timeout
    while True:
        roles = db_api.run_in_transaction(lambda s: bootroles.load(s, instance_uuid))
        if roles is not None or time.monotonic() > deadline:
            return roles
        time.sleep(0.02)


def test_a_plain_cast_stores_the_roles(harness):
    vm = instance()

    harness.api.instance_boot_roles_set(service_only(), vm["uuid"], ["reader"])

    assert stored_roles(vm["uuid"]) == ["reader"]


def test_an_empty_list_is_kept_as_no_roles(harness):
    vm = instance()
    harness.api.instance_boot_roles_set(service_only(), vm["uuid"], [], wait=True)
    harness.api.instance_boot_roles_set(service_only(), vm["uuid"], ["admin"], wait=True)

    assert stored_roles(vm["uuid"]) == []


def test_no_stored_roles_send_an_empty_string(targets, harness):
    harness.api.vendordata_get(service_only(), instance())

    assert targets.seen("/a")[0].json()["boot-roles"] == ""


def test_instance_uuid_is_stored_in_canonical_form(targets, harness):
    vm = instance()
    harness.api.instance_boot_roles_set(service_only(), vm["uuid"].upper(), ["reader"],
                                        wait=True)

    harness.api.vendordata_get(service_only(), vm)

    assert targets.seen("/a")[0].json()["boot-roles"] == "reader"


@pytest.mark.parametrize("arguments, field", [
    ({"instance_uuid": "not-a-uuid"}, "instance_uuid"),
    ({"instance_uuid": 7}, "instance_uuid"),
    ({"roles": "member"}, "roles"),
    ({"roles": ["member", 3]}, "roles[1]"),
    ({"roles": ["x" * 256]}, "roles[0]"),
    ({"roles": [""]}, "roles[0]"),
])
def test_bad_boot_roles_arguments_are_named(harness, arguments, field):
    values = {"instance_uuid": str(uuid.uuid4()), "roles": ["member"], **arguments}

    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.instance_boot_roles_set(service_only(), wait=True, **values)

    assert caught.value.kwargs["field"] == field


def test_boot_roles_need_service_or_admin(harness):
    with pytest.raises(exception.Forbidden):
        harness.api.instance_boot_roles_set(member(), str(uuid.uuid4()), wait=True)
    assert harness.api.instance_boot_roles_set(admin(), str(uuid.uuid4()), wait=True) is None


# -- vendordata_get -----------------------------------------------------------

def test_answers_of_every_target_come_back_by_name(targets, harness):
    result = harness.api.vendordata_get(service_only(), instance())

    assert result == {"a": {"from": "a"}, "b": {"from": "b"}}
    assert not harness.notifications("vendordata.fetch.error")


def test_no_targets_means_no_vendordata(harness):
    assert harness.api.vendordata_get(service_only(), instance()) == {}


def test_second_lookup_inside_the_ttl_asks_nobody(targets, harness):
    vm = instance()
    first = harness.api.vendordata_get(service_only(), vm)

    second = harness.api.vendordata_get(service_only(), vm)

    assert second == first
    assert len(targets.seen("/a")) == 1 and len(targets.seen("/b")) == 1


def test_any_json_answer_comes_back_as_it_came_and_is_cached(targets, harness):
    # Targets written for Nova may answer a list, a string or null.
    targets.route("/a", json_reply(None))
    targets.route("/b", gzip_reply(["x", 1, None]))
    vm = instance()

    first = harness.api.vendordata_get(service_only(), vm)
    second = harness.api.vendordata_get(service_only(), vm)

    assert first == second == {"a": None, "b": ["x", 1, None]}
    assert len(targets.seen("/a")) == 1 and len(targets.seen("/b")) == 1
    assert not harness.notifications("vendordata.fetch.error")


def test_cache_is_per_instance(targets, harness):
    harness.api.vendordata_get(service_only(), instance())
    harness.api.vendordata_get(service_only(), instance())

    assert len(targets.seen("/a")) == 2


@pytest.fixture
def no_cache(targets, migrated):
    migrated.set_override("cache_ttl", 0, group="vendordata")
    return targets


def test_zero_ttl_caches_nothing(no_cache, harness):
    targets = no_cache
    vm = instance()

    harness.api.vendordata_get(service_only(), vm)
    harness.api.vendordata_get(service_only(), vm)

    assert len(targets.seen("/a")) == 2


def test_no_store_is_honoured_per_target(targets, harness):
    targets.route("/a", json_reply({"from": "a"}, headers={"Cache-Control": "no-store"}))
    vm = instance()

    harness.api.vendordata_get(service_only(), vm)
    harness.api.vendordata_get(service_only(), vm)

    assert len(targets.seen("/a")) == 2
    assert len(targets.seen("/b")) == 1


def test_cached_hit_reads_no_boot_roles(targets, harness, monkeypatch):
    vm = instance()
    harness.api.vendordata_get(service_only(), vm)

    def no_database(*args, **kwargs):
        raise AssertionError("a cached lookup touched the database")

    monkeypatch.setattr("db.api.run_in_transaction", no_database)
    monkeypatch.setattr("db.api.transaction", no_database)

    assert harness.api.vendordata_get(service_only(), vm) == {
        "a": {"from": "a"}, "b": {"from": "b"}}


def test_failed_target_is_left_out_and_reported(targets, harness):
    targets.route("/b", raw_reply(500, b"oops"))
    vm = instance()

    result = harness.api.vendordata_get(service_only(), vm)

    assert result == {"a": {"from": "a"}}
    [note] = harness.notifications("vendordata.fetch.error")
    assert note["priority"] == "error"
    assert note["payload"] == {"instance_uuid": vm["uuid"], "project_id": PROJECT,
                               "target": "b", "reason": "HTTP 500", "status": 500,
                               "fatal": False}


@pytest.mark.parametrize("behaviour, reason", [
    (raw_reply(200, b"<html>hello</html>", {"Content-Type": "text/html"}),
     "answer is not JSON"),
    (after(2, json_reply({})), "read timeout"),
    (close_connection(), "connection closed without an answer"),
    (raw_reply(200, b"{" + b" " * (1024 * 1024) + b"}"), "answer larger than"),
])
def test_each_misbehaviour_gives_its_reason(targets, harness, behaviour, reason):
    targets.route("/b", behaviour)

    result = harness.api.vendordata_get(service_only(), instance())

    assert list(result) == ["a"]
    [note] = harness.notifications("vendordata.fetch.error")
    assert note["payload"]["target"] == "b"
    assert note["payload"]["reason"].startswith(reason)


def test_failures_are_not_cached(targets, harness):
    targets.route("/b", raw_reply(503, b""))
    vm = instance()
    harness.api.vendordata_get(service_only(), vm)
    targets.route("/b", json_reply({"from": "b", "healed": True}))

    result = harness.api.vendordata_get(service_only(), vm)

    assert result["b"] == {"from": "b", "healed": True}
    assert len(targets.seen("/a")) == 1  # a stayed cached
    assert len(targets.seen("/b")) == 2


def test_fatal_mode_fails_the_call_and_still_reports(fatal, harness):
    fatal.route("/a", raw_reply(500, b""))
    vm = instance()

    with pytest.raises(exception.VendordataFetchFailed) as caught:
        harness.api.vendordata_get(service_only(), vm)

    assert caught.value.code == "vendordata_fetch_failed"
    assert caught.value.kwargs == {"target": "a", "reason": "HTTP 500"}
    [note] = harness.notifications("vendordata.fetch.error")
    assert note["payload"]["target"] == "a" and note["payload"]["fatal"] is True


def test_fatal_mode_names_every_failed_target(fatal, harness):
    fatal.route("/a", raw_reply(500, b""))
    fatal.route("/b", raw_reply(200, b"nope"))

    with pytest.raises(exception.VendordataFetchFailed) as caught:
        harness.api.vendordata_get(service_only(), instance())

    assert caught.value.kwargs["target"] == "a"
    assert "also failed: b" in caught.value.kwargs["reason"]
    assert len(harness.notifications("vendordata.fetch.error")) == 2


def test_fatal_mode_with_good_targets_answers(fatal, harness):
    assert harness.api.vendordata_get(service_only(), instance()) == {
        "a": {"from": "a"}, "b": {"from": "b"}}


@pytest.mark.parametrize("change, field", [
    ({"uuid": "nope"}, "instance.uuid"),
    ({"uuid": None}, "instance.uuid"),
    ({"project_id": ""}, "instance.project_id"),
    ({"project_id": "p" * 256}, "instance.project_id"),
    ({"hostname": 12}, "instance.hostname"),
    ({"image_id": ["x"]}, "instance.image_id"),
    ({"user_data": "A" * 65536}, "instance.user_data"),
    ({"metadata": ["x"]}, "instance.metadata"),
    ({"metadata": {"k": 1}}, "instance.metadata[k]"),
    ({"flavor": "m1.small"}, "instance.flavor"),
])
def test_bad_instance_fields_are_named_and_ask_nobody(targets, harness, change, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.vendordata_get(service_only(), instance(**change))

    assert caught.value.kwargs["field"] == field
    assert targets.requests == []


@pytest.mark.parametrize("missing", ["uuid", "project_id"])
def test_missing_instance_fields_are_named(harness, missing):
    vm = instance()
    del vm[missing]

    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.vendordata_get(service_only(), vm)

    assert caught.value.kwargs["field"] == f"instance.{missing}"


def test_instance_must_be_an_object(harness):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.vendordata_get(service_only(), "uuid")

    assert caught.value.kwargs["field"] == "instance"


def test_optional_fields_may_be_left_out(targets, harness):
    vm = {"uuid": str(uuid.uuid4()), "project_id": PROJECT}

    harness.api.vendordata_get(service_only(), vm)

    sent = targets.seen("/a")[0].json()
    assert sent["image-id"] is None and sent["metadata"] == {}


def test_vendordata_needs_service_or_admin(targets, harness):
    with pytest.raises(exception.Forbidden):
        harness.api.vendordata_get(member(), instance())
    assert targets.requests == []


# -- the service token --------------------------------------------------------

def test_targets_get_the_agents_token_never_the_users(keystone, harness, captured_logs):
    ctxt = make_context(None, [], ["service"], auth_token=USER_TOKEN)

    harness.api.vendordata_get(ctxt, instance())
    harness.api.vendordata_get(ctxt, instance())

    for path in ("/a", "/b"):
        tokens = [seen.headers.get("X-Auth-Token") for seen in keystone.seen(path)]
        assert tokens == [SERVICE_TOKEN, SERVICE_TOKEN]
    # The token is reused, not fetched again for every lookup.
    assert len(keystone.seen("/v3/auth/tokens")) == 1
    text = "\n".join(r.getMessage() for r in captured_logs.records)
    assert SERVICE_TOKEN not in text and KEYSTONE_PASSWORD not in text


def test_a_refused_service_token_is_renewed_and_the_target_asked_again(
        keystone, harness, captured_logs):
    keystone.route("/v3/auth/tokens", keystone_issuing("svc"))
    keystone.route("/a", accept_only("svc-2", {"from": "a"}))

    result = harness.api.vendordata_get(service_only(), instance())

    assert result == {"a": {"from": "a"}, "b": {"from": "b"}}
    assert [s.headers.get("X-Auth-Token") for s in keystone.seen("/a")] == ["svc-1", "svc-2"]
    assert not harness.notifications("vendordata.fetch.error")
    text = "\n".join(r.getMessage() for r in captured_logs.records)
    assert "svc-1" not in text and "svc-2" not in text and KEYSTONE_PASSWORD not in text


def test_failures_never_carry_the_token(keystone, harness, captured_logs):
    keystone.route("/a", raw_reply(401, SERVICE_TOKEN.encode()))

    harness.api.vendordata_get(service_only(), instance())

    notes = repr(harness.notifications())
    logs = "\n".join(r.getMessage() for r in captured_logs.records)
    for text in (notes, logs):
        assert SERVICE_TOKEN not in text and KEYSTONE_PASSWORD not in text
        assert keystone.url("/a") not in text


def test_keystone_down_reports_every_target(keystone, harness):
    keystone.route("/v3/auth/tokens", raw_reply(500, b""))

    assert harness.api.vendordata_get(service_only(), instance()) == {}

    reasons = {n["payload"]["target"]: n["payload"]["reason"]
               for n in harness.notifications("vendordata.fetch.error")}
    assert reasons == {"a": "could not obtain request headers",
                       "b": "could not obtain request headers"}
    assert keystone.seen("/a") == []


def test_without_auth_targets_get_no_token_and_startup_warns_once(targets, migrated,
                                                                  master_key, captured_logs):
    service = AgentService(migrated)
    migrated.set_override("transport_url", "fake:/")
    service.start()
    try:
        warnings = [r for r in captured_logs.records
                    if r.levelname == "WARNING" and "without a service token" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        service.stop()
        service.wait()


def test_repeated_target_name_stops_start_up(migrated, master_key, server):
    migrated.set_override("transport_url", "fake:/")
    migrated.set_override("targets", [f"a@{server.url('/a')}", f"a@{server.url('/b')}"],
                          group="vendordata")

    try:
        with pytest.raises(exception.ConfigurationError) as caught:
            AgentService(migrated).start()
    finally:
        rpc.cleanup()

    assert "'a' is used more than once" in caught.value.msg
