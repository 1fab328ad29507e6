"""The dispatch boundary: one transaction per request, retried; notify after commit."""

from __future__ import annotations

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_policy import policy as oslo_policy
from sqlalchemy import exc as sa_exc

from agent import exception, policy
from agent.dispatch import Endpoint, rpc_method
from db import api as db_api
from db import models
from tests.common import RecordingRuntime, member


class Probe(Endpoint):
    calls = 0

    @rpc_method()
    def probe_write(self, request, instance, fail=False):
        request.session.add(models.InstanceSystemMetadata(
            instance_uuid=instance, key="k", value="v"))
        request.notify("probe.write", {"instance": instance})
        request.session.flush()
        if fail:
            raise exception.InvalidInput(field="fail", reason="asked to")
        return "written"

    @rpc_method()
    def probe_flaky(self, request):
        Probe.calls += 1
        request.notify("probe.flaky", {"attempt": Probe.calls})
        if Probe.calls == 1:
            raise sa_exc.OperationalError("SELECT 1", {}, Exception("gone"),
                                          connection_invalidated=True)
        return Probe.calls


@pytest.fixture
def probe(migrated):
    enforcer = policy.get_enforcer()
    for name in ("probe_write", "probe_flaky"):
        enforcer.register_default(oslo_policy.RuleDefault(f"custos:{name}", "@"))
    Probe.calls = 0
    return Probe(RecordingRuntime())


def rows():
    return db_api.run_in_transaction(
        lambda s: s.scalars(sa.select(models.InstanceSystemMetadata.instance_uuid)).all())


def unwrap(call):
    with pytest.raises(messaging.ExpectedException) as caught:
        call()
    return caught.value.exc_info[1]


def test_a_committed_request_is_stored_and_then_announced(probe):
    assert probe.probe_write(member(), instance="i-1") == "written"

    assert rows() == ["i-1"]
    assert probe.runtime.sent == [("probe.write", {"instance": "i-1"}, "info")]


def test_a_failed_request_changes_nothing_and_announces_nothing(probe):
    error = unwrap(lambda: probe.probe_write(member(), instance="i-2", fail=True))

    assert isinstance(error, exception.InvalidInput)
    assert rows() == []
    assert probe.runtime.sent == []


def test_a_lost_connection_retries_the_whole_request_once(probe):
    assert probe.probe_flaky(member()) == 2

    assert probe.runtime.sent == [("probe.flaky", {"attempt": 2}, "info")]


def test_missing_and_unexpected_arguments_are_named(probe):
    assert unwrap(lambda: probe.probe_write(member())).kwargs["field"] == "instance"
    assert unwrap(lambda: probe.probe_write(member(), instance="i", x=1)).kwargs["field"] == "x"


def test_a_database_that_stays_down_is_database_unavailable(conf):
    conf.set_override("connection", "postgresql+psycopg2://custos@127.0.0.1:1/custos",
                      group="database")
    conf.set_override("max_retries", 1, group="database")
    conf.set_override("retry_interval", 0, group="database")
    db_api.configure()

    with pytest.raises(exception.DatabaseUnavailable):
        db_api.run_in_transaction(lambda s: s.execute(sa.text("SELECT 1")))
    assert db_api.ping() == "database_unavailable"
