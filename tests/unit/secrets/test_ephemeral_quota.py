"""Ephemeral secrets are bounded per project and per agent, over RPC."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from agent import exception
from agent.secrets.definition import SecretDefinition
from agent.secrets.ephemeral import EphemeralSecretStore
from tests.common import OTHER_PROJECT, member

VALUE = b"v" * 1000


@pytest.fixture
def small_limits(migrated):
    migrated.set_override("max_ephemeral_per_project", 3, group="secrets")
    migrated.set_override("max_ephemeral_bytes", 4000, group="secrets")
    # No share of its own: these tests push one project against the agent's bytes.
    migrated.set_override("max_ephemeral_bytes_per_project", 10**9, group="secrets")
    return migrated


@pytest.fixture
def agent(small_limits, harness):
    return harness


def _xml(usage_id: str) -> str:
    return ("<secret ephemeral='yes' private='no'><usage type='ceph'>"
            f"<name>{usage_id}</name></usage></secret>")


def _generate(api, ctxt, usage_id: str, length: int = 32) -> str:
    return api.secret_generate(ctxt, "ceph", usage_id, length=length, ephemeral=True)


def test_a_project_past_its_count_gets_quota_exceeded_and_nothing_changes(agent):
    ctxt = member()
    held = [_generate(agent.api, ctxt, f"client.{n}") for n in range(3)]

    with pytest.raises(exception.QuotaExceeded) as caught:
        _generate(agent.api, ctxt, "client.over")
    with pytest.raises(exception.QuotaExceeded):
        agent.api.secret_define_xml(ctxt, _xml("client.over"))

    assert caught.value.code == "quota_exceeded"
    assert caught.value.kwargs["limit"] == "max_ephemeral_per_project"
    listed = agent.api.secret_list(ctxt, ephemeral=True)
    assert sorted(s["uuid"] for s in listed) == sorted(held)
    with pytest.raises(exception.SecretNotFound):
        agent.api.secret_lookup_by_usage(ctxt, "ceph", "client.over")


def test_another_project_has_its_own_count(agent):
    for n in range(3):
        _generate(agent.api, member(), f"client.{n}")

    assert _generate(agent.api, member(OTHER_PROJECT), "client.other")


def test_values_past_the_agents_bytes_are_refused_and_the_old_value_stays(agent):
    ctxt = member()
    first = agent.api.secret_define_xml(ctxt, _xml("client.a"))
    second = agent.api.secret_define_xml(ctxt, _xml("client.b"))
    agent.api.secret_set_value(ctxt, first, VALUE * 2)

    with pytest.raises(exception.QuotaExceeded) as caught:
        agent.api.secret_set_value(ctxt, second, VALUE * 2)
    with pytest.raises(exception.QuotaExceeded):
        agent.api.secret_set_value(ctxt, first, VALUE * 4)

    assert caught.value.kwargs["limit"] == "max_ephemeral_bytes"
    assert agent.api.secret_get_value(ctxt, first) == VALUE * 2
    with pytest.raises(exception.SecretNoValue):
        agent.api.secret_get_value(ctxt, second)


def test_undefine_gives_the_room_back(agent):
    ctxt = member()
    held = [_generate(agent.api, ctxt, f"client.{n}") for n in range(3)]
    with pytest.raises(exception.QuotaExceeded):
        _generate(agent.api, ctxt, "client.3")

    agent.api.secret_undefine(ctxt, held[0])

    assert _generate(agent.api, ctxt, "client.3")


def test_a_generated_secret_past_the_bytes_leaves_no_definition_behind(agent):
    for n in range(3):
        _generate(agent.api, member(), f"client.{n}", length=1024)
    other = member(OTHER_PROJECT)

    with pytest.raises(exception.QuotaExceeded) as caught:
        _generate(agent.api, other, "client.big", length=1024)

    assert caught.value.kwargs["limit"] == "max_ephemeral_bytes"
    assert agent.api.secret_list(other, ephemeral=True) == []
    with pytest.raises(exception.SecretNotFound):
        agent.api.secret_lookup_by_usage(other, "ceph", "client.big")


@pytest.fixture
def shared_bytes(migrated):
    migrated.set_override("max_ephemeral_bytes", 4000, group="secrets")
    migrated.set_override("max_ephemeral_bytes_per_project", 1500, group="secrets")
    return migrated


def test_a_project_past_its_byte_share_is_refused_and_another_is_served(shared_bytes,
                                                                        harness):
    api, greedy, other = harness.api, member(), member(OTHER_PROJECT)
    first = api.secret_define_xml(greedy, _xml("client.a"))
    second = api.secret_define_xml(greedy, _xml("client.b"))
    api.secret_set_value(greedy, first, VALUE)

    with pytest.raises(exception.QuotaExceeded) as on_set:
        api.secret_set_value(greedy, second, VALUE)
    with pytest.raises(exception.QuotaExceeded) as on_generate:
        _generate(api, greedy, "client.c", length=1000)
    theirs = api.secret_define_xml(other, _xml("client.a"))
    api.secret_set_value(other, theirs, VALUE)

    assert on_set.value.kwargs == {"limit": "max_ephemeral_bytes_per_project",
                                   "allowed": 1500}
    assert on_generate.value.kwargs["limit"] == "max_ephemeral_bytes_per_project"
    assert api.secret_get_value(greedy, first) == VALUE
    with pytest.raises(exception.SecretNoValue):
        api.secret_get_value(greedy, second)
    assert api.secret_get_value(other, theirs) == VALUE
    # Undefining gives the project its room back.
    api.secret_undefine(greedy, first)
    api.secret_set_value(greedy, second, VALUE)


def test_a_projects_share_is_a_sixteenth_of_the_agents_bytes_unless_set(migrated):
    migrated.set_override("max_ephemeral_bytes", 64 * 1024 * 1024, group="secrets")
    derived = EphemeralSecretStore.from_conf(migrated)
    migrated.set_override("max_ephemeral_bytes_per_project", 12345, group="secrets")
    explicit = EphemeralSecretStore.from_conf(migrated)

    assert derived.max_bytes_per_project == 4 * 1024 * 1024
    assert explicit.max_bytes_per_project == 12345
    assert explicit.max_bytes == 64 * 1024 * 1024


def test_a_redefinition_counts_against_the_owners_share():
    store = EphemeralSecretStore(max_bytes=1000, max_bytes_per_project=300)
    defn = SecretDefinition(uuid="0c9a5f3e-8d1b-4c55-9a57-2f1a3f5d9e10", ephemeral=True,
                            usage_type="ceph", usage_id="client.a")
    store.define(defn, "owner", b"x" * 200)

    # Another project's redefinition keeps the owner, and the owner's bytes.
    with pytest.raises(exception.QuotaExceeded):
        store.define(dataclasses.replace(defn, description="d" * 100), "intruder")
    store.define(SecretDefinition(uuid=None, ephemeral=True, usage_type="ceph",
                                  usage_id="client.a"), "intruder", b"y" * 250)
    store.undefine(defn.uuid)
    store.define(defn, "owner", b"x" * 250)

    assert store.used_bytes == 2 * (250 + 36 + 4 + 8)


def test_the_store_counts_redefinitions_and_values_once():
    store = EphemeralSecretStore(max_per_project=2, max_bytes=200)
    defn = SecretDefinition(uuid="f52a81b2-424e-490c-823d-6bd4235bc572", ephemeral=True,
                            usage_type="ceph", usage_id="client.a")
    store.define(defn, "p")
    store.define(defn, "p")
    store.set_value(defn.uuid, b"x" * 100)
    store.set_value(defn.uuid, b"x" * 100)
    used = store.used_bytes

    store.undefine(defn.uuid)

    assert used == 100 + len(defn.uuid) + len("ceph") + len("client.a")
    assert store.used_bytes == 0 and len(store) == 0


def test_quota_messages_name_the_limit_only(agent):
    ctxt = member()
    for n in range(3):
        _generate(agent.api, ctxt, f"client.{n}")
    with pytest.raises(exception.QuotaExceeded) as caught:
        _generate(agent.api, ctxt, "client.secretive-usage")

    assert "client.secretive-usage" not in caught.value.msg
    assert base64.b64encode(b"client").decode() not in caught.value.msg
    assert ctxt.project_id not in caught.value.msg
