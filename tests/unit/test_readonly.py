"""Reads that change nothing run without a write transaction."""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa
from oslo_policy import policy as oslo_policy

from agent import policy, transactions
from agent.dispatch import Endpoint, rpc_method
from db import api as db_api
from db import models
from tests.common import RecordingRuntime, admin, make_context, member


class ReadOnlyProbe(Endpoint):
    @rpc_method(transactions.READ_ONLY)
    def probe_sneaky_write(self, request, instance):
        request.session.add(models.InstanceSystemMetadata(
            instance_uuid=instance, key="k", value="v"))
        request.session.flush()

    @rpc_method(transactions.READ_ONLY)
    def probe_core_write(self, request, instance):
        request.session.connection().execute(sa.insert(models.InstanceSystemMetadata), {
            "instance_uuid": instance, "key": "k", "value": "v"})

    @rpc_method(transactions.ReadFirst())
    def probe_read_first(self, request, instance, writes):
        self.runs.append(request.session.get_bind().get_execution_options().get(
            db_api.READ_ONLY, False))
        request.notify("probe.ran", {"run": len(self.runs)})
        for n in range(writes):
            request.session.connection().execute(sa.insert(models.InstanceSystemMetadata), {
                "instance_uuid": instance, "key": f"k{n}", "value": "v"})
        return len(self.runs)


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


@pytest.fixture
def probe(migrated):
    for name in ("probe_sneaky_write", "probe_core_write", "probe_read_first"):
        policy.get_enforcer().register_default(oslo_policy.RuleDefault(f"custos:{name}", "@"))
    endpoint = ReadOnlyProbe(RecordingRuntime())
    endpoint.runs = []
    return endpoint


def _metadata_rows():
    return db_api.run_in_transaction(lambda s: s.scalars(
        sa.select(models.InstanceSystemMetadata.key)).all())


def test_a_write_in_a_read_only_method_fails_and_stores_nothing(probe):

    with pytest.raises(RuntimeError, match="read-only"):
        probe.probe_sneaky_write(member(), instance="i-ro")

    assert _metadata_rows() == []


def test_a_core_statement_that_writes_never_reaches_the_database_read_only(probe):
    # Without a transaction it would commit at once, so it must be stopped
    # before the database sees it.
    with pytest.raises(db_api.WriteNeeded):
        probe.probe_core_write(member(), instance="i-ro")

    assert _metadata_rows() == []


def test_a_read_first_method_that_only_reads_runs_once_without_a_transaction(probe, statements):
    assert probe.probe_read_first(member(), instance="i-1", writes=0) == 1

    assert probe.runs == [True]
    assert "BEGIN" not in statements and "COMMIT" not in statements
    assert probe.runtime.sent == [("probe.ran", {"run": 1}, "info")]


def test_a_read_first_method_that_writes_runs_again_in_one_transaction(probe, statements):
    assert probe.probe_read_first(member(), instance="i-1", writes=2) == 2

    assert probe.runs == [True, False]
    assert statements.count("INSERT") == 2 and "BEGIN" in statements
    assert sorted(_metadata_rows()) == ["k0", "k1"]
    # Only what the committed run queued is announced.
    assert probe.runtime.sent == [("probe.ran", {"run": 2}, "info")]
