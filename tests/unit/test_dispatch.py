"""The dispatch boundary: one transaction per request, retried; notify after commit."""

from __future__ import annotations

import logging

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_policy import policy as oslo_policy
from sqlalchemy import exc as sa_exc

from agent import answers, exception, policy, transactions
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

    @rpc_method(transactions.Grouped())
    def probe_grouped(self, request, instance, fail=False):
        request.session.add(models.InstanceSystemMetadata(
            instance_uuid=instance, key="k", value="v"))
        request.notify("probe.grouped", {"instance": instance})
        request.notify("probe.grouped.tried", {"instance": instance}, even_on_failure=True)
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
    for name in ("probe_write", "probe_flaky", "probe_grouped"):
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


@pytest.fixture
def as_cast():
    token = answers.IS_CAST.set(True)
    yield
    answers.IS_CAST.reset(token)


@pytest.fixture
def held_committer(monkeypatch):
    """The grouped probe's committer, waiting a long linger before each batch."""
    committer = Probe.probe_grouped.rpc_mode.committer
    monkeypatch.setattr(committer, "linger", 0.3)
    return committer


def test_a_grouped_cast_returns_at_once_and_is_committed_then_announced(probe, as_cast,
                                                                        held_committer):
    assert probe.probe_grouped(member(), instance="c-1") is None
    assert rows() == [] and probe.runtime.sent == []

    assert transactions.drain_deferred(10)
    assert rows() == ["c-1"]
    assert probe.runtime.sent == [("probe.grouped", {"instance": "c-1"}, "info"),
                                  ("probe.grouped.tried", {"instance": "c-1"}, "info")]


def test_casts_that_arrive_together_share_a_transaction_and_keep_their_own_outcome(
        probe, as_cast, held_committer, caplog):
    caplog.set_level(logging.INFO, logger="agent.dispatch")
    before = held_committer.batches
    for n in range(5):
        probe.probe_grouped(member(), instance=f"c-{n}", fail=(n == 2))

    assert transactions.drain_deferred(10)
    assert sorted(rows()) == ["c-0", "c-1", "c-3", "c-4"]
    announced = [(event, payload["instance"]) for event, payload, _ in probe.runtime.sent]
    assert ("probe.grouped", "c-2") not in announced
    assert ("probe.grouped.tried", "c-2") in announced
    assert {("probe.grouped", f"c-{n}") for n in (0, 1, 3, 4)} <= set(announced)
    assert "probe_grouped refused: invalid_input" in caplog.text
    # The batch of five failed on the bad one and each then ran alone.
    assert held_committer.batches == before


def test_a_grouped_call_still_waits_for_its_commit(probe, held_committer):
    assert probe.probe_grouped(member(), instance="call-1") == "written"

    assert rows() == ["call-1"]
    assert probe.runtime.sent[0] == ("probe.grouped", {"instance": "call-1"}, "info")
