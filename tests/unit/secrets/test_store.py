"""The secret store's in-process API, its storage and its transaction rules."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from agent import exception
from agent.keystore import masterkey
from agent.secrets.definition import SecretDefinition
from agent.secrets.store import Scope, SecretStore
from db import api as db_api
from db import models
from tests.common import PROJECT

MINE = Scope(PROJECT)


@pytest.fixture
def store(migrated, master_key) -> SecretStore:
    return SecretStore(masterkey.get_ring())


def _create(store: SecretStore, usage_id: str = "iqn.1993-08.org.debian:01:abc",
            value: bytes = b"chap-secret", namespace: str = "lvm") -> str:
    with db_api.transaction() as session:
        return store.create_driver_secret(session, namespace=namespace, usage_type="iscsi",
                                          usage_id=usage_id, value=value)


def _driver_value(store: SecretStore, session, usage_id: str = "iqn.1993-08.org.debian:01:abc",
                  namespace: str = "lvm") -> bytes | None:
    found = store.driver_secret(session, namespace=namespace, usage_type="iscsi",
                                usage_id=usage_id)
    return None if found is None else found[1]


def test_a_driver_secret_is_private_generated_and_of_no_project(store):
    uuid = _create(store)

    with db_api.transaction() as session:
        row = session.scalars(sa.select(models.Secret)).one()
        assert (row.uuid, row.private, row.generated) == (uuid, True, True)
        assert (row.project_id, row.driver_namespace) == (None, "lvm")
        assert _driver_value(store, session) == b"chap-secret"
        assert _driver_value(store, session, "iqn.other") is None
        assert _driver_value(store, session, namespace="other") is None


def test_a_usage_conflict_leaves_the_callers_transaction_usable(store):
    holder = _create(store)

    with db_api.transaction() as session:
        session.add(models.DriverInitiatorData(initiator="i", namespace="n", key="k",
                                               value="v"))
        session.flush()
        with pytest.raises(exception.SecretUsageConflict) as caught:
            store.create_driver_secret(session, namespace="lvm", usage_type="iscsi",
                                       usage_id="iqn.1993-08.org.debian:01:abc", value=b"x")
        store.create_driver_secret(session, namespace="lvm", usage_type="iscsi",
                                   usage_id="iqn.other", value=b"y")

    assert caught.value.kwargs["holder"] == holder
    with db_api.transaction() as session:
        assert session.scalars(sa.select(models.DriverInitiatorData.key)).all() == ["k"]
        assert _driver_value(store, session, "iqn.other") == b"y"


def test_concurrent_creators_of_one_usage_one_wins(store):
    outcomes: list[object] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        try:
            outcomes.append(_create(store, value=b"v"))
        except exception.SecretUsageConflict as error:
            outcomes.append(error)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1 and len(outcomes) == 8
    with db_api.transaction() as session:
        assert session.scalars(sa.select(models.Secret.uuid)).all() == winners


def test_an_ephemeral_definition_cannot_take_a_usage_being_inserted(store):
    with db_api.transaction() as session:
        uuid = store.define(session, MINE, SecretDefinition(
            uuid=None, usage_type="ceph", usage_id="c"))[0].uuid
        # Another request of this agent, before the insert commits. It
        # only reads: on SQLite a second write transaction would wait for
        # the first one's lock (BEGIN IMMEDIATE), here in the same thread.
        with db_api.transaction(read_only=True) as other:
            with pytest.raises(exception.SecretUsageConflict) as caught:
                store.define(other, MINE, SecretDefinition(uuid=None, ephemeral=True,
                                                           usage_type="ceph", usage_id="c"))
    assert caught.value.kwargs["holder"] == uuid


def test_a_rolled_back_insert_releases_its_usage(store):
    with pytest.raises(RuntimeError):
        with db_api.transaction() as session:
            store.define(session, MINE, SecretDefinition(uuid=None, usage_type="ceph",
                                                         usage_id="c"))
            raise RuntimeError("the caller fails later")

    with db_api.transaction() as session:
        info, _ = store.define(session, MINE, SecretDefinition(
            uuid=None, ephemeral=True, usage_type="ceph", usage_id="c"))
        assert store.lookup_by_usage(session, MINE, "ceph", "c").uuid == info.uuid


def test_a_rolled_back_move_to_memory_leaves_the_secret_in_the_database(store):
    with db_api.transaction() as session:
        uuid = store.define(session, MINE, SecretDefinition(
            uuid=None, usage_type="ceph", usage_id="c"))[0].uuid
        store.set_value(session, MINE, uuid, b"v")

    with pytest.raises(RuntimeError):
        with db_api.transaction() as session:
            store.define(session, MINE, SecretDefinition(
                uuid=uuid, ephemeral=True, usage_type="ceph", usage_id="c"))
            raise RuntimeError("commit never happens")

    assert uuid not in store.ephemeral
    with db_api.transaction() as session:
        assert store.describe(session, MINE, uuid).ephemeral is False
        assert store.get_value(session, MINE, uuid)[1] == b"v"


def test_a_rolled_back_move_to_the_database_keeps_the_secret_in_memory(store):
    with db_api.transaction() as session:
        uuid = store.define(session, MINE, SecretDefinition(
            uuid=None, ephemeral=True, usage_type="ceph", usage_id="c"))[0].uuid
        store.set_value(session, MINE, uuid, b"v")

    with pytest.raises(RuntimeError):
        with db_api.transaction() as session:
            store.define(session, MINE, SecretDefinition(uuid=uuid, usage_type="ceph",
                                                         usage_id="c"))
            raise RuntimeError("commit never happens")

    with db_api.transaction() as session:
        assert session.scalars(sa.select(models.Secret)).all() == []
        assert store.describe(session, MINE, uuid).ephemeral is True
        assert store.get_value(session, MINE, uuid)[1] == b"v"


def test_a_value_copied_onto_another_row_does_not_decrypt(store):
    first = _create(store, "iqn.a", b"first value")
    second = _create(store, "iqn.b", b"second value")

    with db_api.transaction() as session:
        source = session.scalars(sa.select(models.Secret)
                                 .where(models.Secret.uuid == first)).one()
        session.execute(sa.update(models.Secret).where(models.Secret.uuid == second)
                        .values(value=source.value, wrapped_key=source.wrapped_key,
                                master_key_id=source.master_key_id))

    with db_api.transaction() as session:
        assert _driver_value(store, session, "iqn.a") == b"first value"
        with pytest.raises(exception.DecryptionFailed) as caught:
            _driver_value(store, session, "iqn.b")
    assert "first value" not in caught.value.msg


def test_delete_is_idempotent_and_the_driver_then_finds_nothing(store):
    uuid = _create(store)

    for _ in range(2):
        with db_api.transaction() as session:
            store.delete_driver_secret(session, namespace="other", uuid=uuid)
    with db_api.transaction() as session:
        assert _driver_value(store, session) == b"chap-secret"
    for _ in range(2):
        with db_api.transaction() as session:
            store.delete_driver_secret(session, namespace="lvm", uuid=uuid)

    with db_api.transaction() as session:
        assert _driver_value(store, session) is None
        assert session.scalars(sa.select(models.Secret)).all() == []


def test_lookup_and_undefine_reach_ephemeral_secrets_too(store):
    with db_api.transaction() as session:
        uuid = store.define(session, MINE, SecretDefinition(
            uuid=None, ephemeral=True, private=True, usage_type="tls", usage_id="t"))[0].uuid
        store.set_value(session, MINE, uuid, b"in memory")

        assert store.lookup_by_usage(session, MINE, "tls", "t").uuid == uuid
        store.undefine(session, MINE, uuid)
        with pytest.raises(exception.SecretNotFound):
            store.lookup_by_usage(session, MINE, "tls", "t")
    assert uuid not in store.ephemeral
