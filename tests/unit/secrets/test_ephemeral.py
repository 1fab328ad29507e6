"""Tests for agent.secrets.ephemeral: the in-memory secret store."""

from __future__ import annotations

import threading
import time
import uuid as uuid_lib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent import exception
from agent.secrets import definition
from agent.secrets.definition import SecretDefinition
from agent.secrets.ephemeral import EphemeralSecretStore

CORPUS = (Path(__file__).resolve().parents[3].parent
          / "shared" / "corpus" / "libvirt-secretxml")

UUID_A = "f52a81b2-424e-490c-823d-6bd4235bc572"
UUID_B = "27f25d34-aea6-4e2a-be85-fa2c18380be8"
VALUE = b"\x00s3cr3t-value\xff"


def ceph(uuid: str | None = UUID_A, name: str = "client.admin", **fields) -> SecretDefinition:
    fields.setdefault("ephemeral", True)
    return SecretDefinition(uuid=uuid, usage_type="ceph", usage_id=name, **fields)


@pytest.fixture
def store() -> EphemeralSecretStore:
    return EphemeralSecretStore()


def test_define_then_get_returns_the_definition_and_owner(store):
    record = store.define(ceph(description="d"), "project-1")

    assert record.uuid == UUID_A
    assert store.get(UUID_A) == record
    assert record.definition.description == "d"
    assert record.project_id == "project-1"
    assert record.has_value is False


def test_define_without_uuid_generates_one(store):
    record = store.define(ceph(uuid=None), "p")

    assert str(uuid_lib.UUID(record.uuid)) == record.uuid
    assert store.get(record.uuid).definition.usage_id == "client.admin"


def test_lookup_by_usage_and_usage_holder(store):
    store.define(ceph(), "p")

    assert store.lookup_by_usage("p", "ceph", "client.admin").uuid == UUID_A
    assert store.usage_holder("p", "ceph", "client.admin") == UUID_A
    assert store.usage_holder("p", "tls", "client.admin") is None
    with pytest.raises(exception.SecretNotFound):
        store.lookup_by_usage("p", "ceph", "other")


def test_unknown_uuid_is_not_found_everywhere(store):
    for operation in (store.get, store.get_value, store.undefine,
                      lambda uuid: store.set_value(uuid, VALUE)):
        with pytest.raises(exception.SecretNotFound) as info:
            operation(UUID_B)
        assert info.value.code == "secret_not_found"
    assert UUID_B not in store


def test_value_round_trips_and_survives_redefinition(store):
    store.define(ceph(description="old"), "p")
    store.set_value(UUID_A, VALUE)

    store.define(ceph(description="new"), "p")

    assert store.get_value(UUID_A) == VALUE
    assert store.get(UUID_A).has_value is True
    assert store.get(UUID_A).definition.description == "new"


def test_get_value_without_value_raises_no_value(store):
    store.define(ceph(), "p")

    with pytest.raises(exception.SecretNoValue) as info:
        store.get_value(UUID_A)

    assert info.value.kwargs == {"uuid": UUID_A}


def test_set_value_refuses_text(store):
    store.define(ceph(), "p")

    with pytest.raises(TypeError):
        store.set_value(UUID_A, "not bytes")  # type: ignore[arg-type]


def test_set_value_keeps_its_own_copy(store):
    store.define(ceph(), "p")
    buffer = bytearray(b"abc")

    store.set_value(UUID_A, buffer)
    buffer[:] = b"xyz"

    assert store.get_value(UUID_A) == b"abc"


def test_record_repr_never_shows_the_value(store):
    store.define(ceph(), "p")
    store.set_value(UUID_A, VALUE)

    text = repr(store.get(UUID_A)) + repr(store.list()) + str(store.get(UUID_A))

    assert "s3cr3t" not in text
    assert repr(VALUE) not in text


def test_redefinition_with_same_usage_replaces_description_and_ephemeral(store):
    store.define(ceph(description="one"), "p")

    record = store.define(ceph(description=None, ephemeral=False, private=True), "p")

    assert record.definition == SecretDefinition(
        uuid=UUID_A, ephemeral=False, private=True, description=None,
        usage_type="ceph", usage_id="client.admin")
    assert store.get(UUID_A) == record


def test_redefinition_with_other_usage_is_a_conflict(store):
    store.define(ceph(), "p")

    with pytest.raises(exception.SecretUsageConflict) as info:
        store.define(ceph(name="client.other"), "p")

    assert info.value.kwargs["holder"] == UUID_A
    assert store.get(UUID_A).definition.usage_id == "client.admin"
    assert store.usage_holder("p", "ceph", "client.other") is None


def test_redefinition_dropping_the_usage_is_a_conflict(store):
    store.define(ceph(), "p")

    with pytest.raises(exception.SecretUsageConflict):
        store.define(SecretDefinition(uuid=UUID_A, ephemeral=True), "p")


def test_private_cannot_become_public(store):
    store.define(ceph(private=True), "p")

    with pytest.raises(exception.SecretPrivateChange) as info:
        store.define(ceph(private=False), "p")

    assert info.value.kwargs == {"uuid": UUID_A}
    assert store.get(UUID_A).definition.private is True


def test_public_can_become_private(store):
    store.define(ceph(private=False), "p")

    assert store.define(ceph(private=True), "p").definition.private is True


def test_second_secret_of_a_project_for_a_held_usage_names_the_holder(store):
    store.define(ceph(UUID_A), "p")

    with pytest.raises(exception.SecretUsageConflict) as info:
        store.define(ceph(UUID_B), "p")

    assert info.value.kwargs == {"usage_type": "ceph", "usage_id": "client.admin",
                                 "holder": UUID_A}
    assert UUID_B not in store


def test_another_project_holds_the_same_usage_without_conflict(store):
    store.define(ceph(UUID_A), "p")

    store.define(ceph(UUID_B), "q")

    assert store.usage_holder("p", "ceph", "client.admin") == UUID_A
    assert store.usage_holder("q", "ceph", "client.admin") == UUID_B


def test_same_usage_id_under_another_type_is_no_conflict(store):
    store.define(ceph(UUID_A, name="n"), "p")

    store.define(SecretDefinition(uuid=UUID_B, usage_type="tls", usage_id="n"), "p")

    assert store.usage_holder("p", "tls", "n") == UUID_B
    assert store.usage_holder("p", "ceph", "n") == UUID_A


def test_secrets_without_usage_do_not_collide(store):
    store.define(SecretDefinition(uuid=UUID_A), "p")
    store.define(SecretDefinition(uuid=UUID_B), "p")

    assert [record.uuid for record in store.list()] == sorted([UUID_A, UUID_B])


def test_undefine_frees_the_uuid_the_usage_and_the_value(store):
    store.define(ceph(), "p")
    store.set_value(UUID_A, VALUE)

    removed = store.undefine(UUID_A)

    assert removed.uuid == UUID_A
    assert UUID_A not in store
    assert store.usage_holder("p", "ceph", "client.admin") is None
    assert store.list() == []
    store.define(ceph(UUID_B), "p")
    assert store.usage_holder("p", "ceph", "client.admin") == UUID_B
    store.define(ceph(UUID_A, name="again"), "p")
    with pytest.raises(exception.SecretNoValue):
        store.get_value(UUID_A)


def test_list_returns_every_record_in_uuid_order(store):
    store.define(ceph(UUID_A), "p")
    store.define(ceph(UUID_B, name="other"), "q")

    records = store.list()

    assert [record.uuid for record in records] == [UUID_B, UUID_A]
    assert {record.project_id for record in records} == {"p", "q"}
    assert len(store) == 2


@pytest.mark.skipif(not CORPUS.is_dir(), reason="libvirt secret XML corpus not found at %s"
                    % CORPUS)
def test_corpus_secrets_sharing_a_uuid_follow_libvirt(store):
    # usage-ceph.xml and usage-tls.xml carry one UUID with two usages.
    ceph_defn = definition.parse((CORPUS / "usage-ceph.xml").read_text(encoding="utf-8"))
    tls_defn = definition.parse((CORPUS / "usage-tls.xml").read_text(encoding="utf-8"))
    store.define(ceph_defn, "p")

    with pytest.raises(exception.SecretUsageConflict):
        store.define(tls_defn, "p")
    store.undefine(ceph_defn.uuid)
    store.define(tls_defn, "p")

    assert store.get(tls_defn.uuid).definition == tls_defn


class SlowHashStr(str):
    """A usage id whose hashing lets other threads run.

    Every index lookup hashes the usage id; sleeping there widens any gap
    between "is this usage free?" and "take it" from nanoseconds to
    milliseconds, so a missing lock shows up on every run.
    """

    def __hash__(self) -> int:
        time.sleep(0.001)
        return str.__hash__(self)


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_defines_of_one_usage_leave_exactly_one_holder(store, round_):
    threads = 16
    uuids = [str(uuid_lib.uuid4()) for _ in range(threads)]
    start = threading.Barrier(threads)

    def define(secret_uuid: str) -> str:
        start.wait()
        try:
            store.define(ceph(secret_uuid, name=SlowHashStr("shared")), "p")
        except exception.SecretUsageConflict:
            return "conflict"
        return "defined"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(define, uuids))

    holder = store.usage_holder("p", "ceph", "shared")
    assert outcomes.count("defined") == 1
    assert outcomes.count("conflict") == threads - 1
    assert holder == uuids[outcomes.index("defined")]
    assert [record.uuid for record in store.list()] == [holder]


def test_concurrent_defines_and_undefines_keep_indexes_consistent(store):
    names = ["n%d" % i for i in range(8)]

    def churn(worker: int) -> None:
        for round_ in range(200):
            name = names[(worker + round_) % len(names)]
            secret_uuid = str(uuid_lib.uuid4())
            try:
                store.define(ceph(secret_uuid, name=name), "p")
            except exception.SecretUsageConflict:
                continue
            store.set_value(secret_uuid, b"v")
            store.undefine(secret_uuid)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(churn, range(8)))

    assert store.list() == []
    assert all(store.usage_holder("p", "ceph", name) is None for name in names)
