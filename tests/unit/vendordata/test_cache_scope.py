"""The vendordata cache answers only the very request it stored, within its byte bound."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from agent.vendordata.cache import MISSING, VendordataCache
from tests.common import OTHER_PROJECT, PROJECT, service_only
from tests.stub_server import _Handler

CACHE_BYTES = 64 * 1024


def echo(h: _Handler) -> None:
    """Answer with what the target was told, so each answer shows its request."""
    seen = h.server.requests[-1].json()
    body = json.dumps({"saw": seen, "pad": "x" * 4000}).encode()
    h.reply(200, body, {"Content-Type": "application/json"})


@pytest.fixture
def harness_overrides(migrated, server):
    server.route("/echo", echo)
    migrated.set_override("targets", [f"echo@{server.url('/echo')}"], group="vendordata")
    migrated.set_override("cache_ttl", 300, group="vendordata")
    migrated.set_override("cache_max_bytes", CACHE_BYTES, group="vendordata")
    return server


def instance(uuid_: str, **fields: Any) -> dict[str, Any]:
    values = {"uuid": uuid_, "project_id": PROJECT, "image_id": "img-1",
              "hostname": "vm-1", "user_data": None, "metadata": {"tier": "web"}}
    values.update(fields)
    return values


@pytest.mark.parametrize("change", [
    {"project_id": OTHER_PROJECT}, {"hostname": "vm-2"}, {"image_id": "img-2"},
    {"user_data": "I2Nsb3VkLWNvbmZpZw=="}, {"metadata": {"tier": "db"}},
], ids=["project", "hostname", "image", "user_data", "metadata"])
def test_a_lookup_that_differs_is_not_served_the_first_callers_answer(
        harness_overrides, harness, change):
    vm = str(uuid.uuid4())
    first = harness.api.vendordata_get(service_only(), instance(vm))
    again = harness.api.vendordata_get(service_only(), instance(vm))

    other = harness.api.vendordata_get(service_only(), instance(vm, **change))

    assert again == first
    assert len(harness_overrides.seen("/echo")) == 2
    for field, value in change.items():
        key = field.replace("_", "-")
        assert other["echo"]["saw"][key] == value
        assert first["echo"]["saw"][key] != value


def test_the_stored_boot_roles_are_part_of_what_the_target_sees(harness_overrides, harness):
    vm = str(uuid.uuid4())
    harness.api.instance_boot_roles_set(service_only(), vm, ["member"], wait=True)

    answer = harness.api.vendordata_get(service_only(), instance(vm))

    assert answer["echo"]["saw"]["boot-roles"] == "member"


def test_the_cache_stays_under_its_byte_bound(harness_overrides, harness):
    for _ in range(40):
        harness.api.vendordata_get(service_only(), instance(str(uuid.uuid4())))

    cache = harness.runtime.vendordata.cache
    assert 0 < cache.size_bytes <= CACHE_BYTES
    assert len(cache) < 40


def test_an_answer_larger_than_the_bound_is_not_kept():
    cache = VendordataCache(default_ttl=60, max_bytes=1000)
    cache.put("t", "i1", {"small": 1}, None)

    cache.put("t", "i2", {"big": "x" * 2000}, None)

    assert cache.get("t", "i2") is MISSING
    assert cache.get("t", "i1") == {"small": 1}
    assert cache.size_bytes <= 1000


def test_purging_an_instance_gives_its_bytes_back():
    cache = VendordataCache(default_ttl=60)
    cache.put("t", "i1", {"a": "x" * 100}, None, "k1")
    cache.put("t", "i1", {"a": "y" * 100}, None, "k2")
    cache.put_roles("i1", ["member"])

    assert cache.purge_instance("i1") == 2
    assert cache.size_bytes == 0 and len(cache) == 0
