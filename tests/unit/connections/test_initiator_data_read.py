"""An attach's one read: the initiator's data and the driver secret of its usage."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from agent.connections import initiator_data
from db import api as db_api
from db.models import Secret

INITIATOR = "iqn.1993-08.org.debian:01:reader"


@pytest.fixture
def store(harness):
    return harness.runtime.secrets


def _secret(store, value: bytes, *, namespace: str = "lvm", usage_type: str = "iscsi",
            usage_id: str = INITIATOR) -> str:
    return db_api.run_in_transaction(lambda session: store.create_driver_secret(
        session, namespace=namespace, usage_type=usage_type, usage_id=usage_id, value=value))


def _data(values: dict[str, str], namespace: str = "lvm") -> None:
    db_api.run_in_transaction(lambda session: initiator_data.set_values(
        session, INITIATOR, namespace, values))


def _read(namespace: str = "lvm"):
    return db_api.run_in_transaction(lambda session: initiator_data.read_with_driver_secret(
        session, INITIATOR, namespace, "iscsi"), read_only=True)


def test_nothing_stored_reads_as_no_data_and_no_secret(store):
    assert _read() == ({}, None)


def test_data_without_a_secret(store):
    _data({"a": "1", "b": ""})
    assert _read() == ({"a": "1", "b": ""}, None)


def test_a_secret_without_data_opens_to_its_value(store):
    uuid = _secret(store, b"user\x00pass")
    data, row = _read()
    assert data == {}
    assert store.open_driver_secret(row) == (uuid, b"user\x00pass")


def test_several_keys_beside_one_secret_read_as_the_two_reads_would(store):
    uuid = _secret(store, b"value")
    _data({"a": "1", "b": "2", "c": "3"})
    data, row = _read()
    assert data == db_api.run_in_transaction(
        lambda session: initiator_data.read(session, INITIATOR, "lvm"), read_only=True)
    assert data == {"a": "1", "b": "2", "c": "3"}
    assert store.open_driver_secret(row) == (uuid, b"value")


def test_other_namespaces_usages_and_deleted_secrets_are_not_read(store):
    _secret(store, b"other-namespace", namespace="other")
    _secret(store, b"other-type", usage_type="rbd")
    _data({"a": "1"}, namespace="other")
    assert _read() == ({}, None)
    deleted = _secret(store, b"deleted")
    db_api.run_in_transaction(lambda session: session.execute(
        sa.update(Secret).where(Secret.uuid == deleted)
        .values(deleted_at=datetime.datetime(2026, 1, 1))))
    assert _read() == ({}, None)
