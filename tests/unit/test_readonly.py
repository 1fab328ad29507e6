"""Reads that change nothing run without a write transaction."""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa
from oslo_policy import policy as oslo_policy

from agent import policy
from agent.dispatch import Endpoint, rpc_method
from db import api as db_api
from db import models
from tests.common import admin, make_context, member


class Recorder:
    def __init__(self):
        self.sent = []

    def send_notifications(self, ctxt, notifications):
        self.sent.extend(notifications)


class ReadOnlyProbe(Endpoint):
    @rpc_method(readonly=True)
    def probe_sneaky_write(self, request, instance):
        request.session.add(models.InstanceSystemMetadata(
            instance_uuid=instance, key="k", value="v"))
        request.session.flush()


@pytest.fixture
def statements():
    """SQL the agent's engine sends, as the database receives it."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.strip().split()[0].upper())

    engine = db_api.get_engine()
    sa.event.listen(engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", record)


def test_secret_reads_send_one_select_and_no_begin(harness, statements):
    ctxt = member()
    uuid = harness.api.secret_generate(ctxt, "ceph", "client.reads")
    statements.clear()

    value = harness.api.secret_get_value(ctxt, uuid)
    assert harness.api.secret_lookup_by_usage(ctxt, "ceph", "client.reads") == uuid

    assert len(base64.b64decode(value)) > 0
    assert statements == ["SELECT", "SELECT"]


def test_initiator_data_get_sends_one_select(harness, statements):
    harness.api.initiator_data_update(make_context(roles=["admin"], service_roles=["service"]),
                                      "iqn.2004-10.com.example:host1", "lvm",
                                      set_values={"k": "v"})
    statements.clear()
    assert harness.api.initiator_data_get(admin(),
                                          "iqn.2004-10.com.example:host1", "lvm") == {"k": "v"}
    assert statements == ["SELECT"]


def test_a_write_in_a_read_only_method_fails_and_stores_nothing(migrated):
    policy.get_enforcer().register_default(
        oslo_policy.RuleDefault("custos:probe_sneaky_write", "@"))
    probe = ReadOnlyProbe(Recorder())

    with pytest.raises(RuntimeError, match="read-only"):
        probe.probe_sneaky_write(member(), instance="i-ro")

    assert db_api.run_in_transaction(lambda s: s.scalars(
        sa.select(models.InstanceSystemMetadata.instance_uuid)).all()) == []
