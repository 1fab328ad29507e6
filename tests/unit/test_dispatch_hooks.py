"""The boundary's hooks: a driver's retry request, events sent although a call fails."""

from __future__ import annotations

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_policy import policy as oslo_policy

from agent import exception, policy, transactions
from agent.dispatch import Endpoint, rpc_method
from agent.drivers.base import RetryRequest
from db import api as db_api
from db import models
from tests.common import OTHER_PROJECT, PROJECT, RecordingRuntime, admin, make_context, member


class Racer(Endpoint):
    """Handlers that lose races and fail, as drivers and domains do."""

    losses = 0
    runs = 0

    def _write(self, request, instance):
        Racer.runs += 1
        request.session.add(models.InstanceSystemMetadata(
            instance_uuid=f"{instance}-{Racer.runs}", key="k", value="v"))
        request.session.flush()
        request.notify("race.run", {"run": Racer.runs})

    def _maybe_lose(self):
        if Racer.runs <= Racer.losses:
            retry = RetryRequest()
            retry.give_up = exception.VolumeDriverError(backend="b", reason="kept losing")
            raise retry

    @rpc_method(transactions.Write(retry_deadline=5.0))
    def race(self, request, instance):
        self._write(request, instance)
        self._maybe_lose()
        return Racer.runs

    @rpc_method(transactions.Write(retry_deadline=0.05))
    def race_briefly(self, request, instance):
        self._write(request, instance)
        self._maybe_lose()
        return Racer.runs

    @rpc_method()
    def race_without_deadline(self, request, instance):
        self._write(request, instance)
        self._maybe_lose()
        return Racer.runs

    @rpc_method()
    def refuse_loudly(self, request, instance, refuse=True):
        self._write(request, instance)
        request.notify("refusal", {"instance": instance}, "error", even_on_failure=True)
        if refuse:
            raise exception.InvalidInput(field="instance", reason="refused")
        return "kept"

    @rpc_method(transactions.NO_TRANSACTION)
    def refuse_without_transaction(self, request):
        count = request.run_in_transaction(
            lambda s: s.scalar(sa.select(sa.func.count()).select_from(
                models.InstanceSystemMetadata)))
        request.notify("counted", {"rows": count}, even_on_failure=True)
        raise exception.InvalidInput(field="rows", reason="refused")

    @rpc_method()
    def scope_of(self, request):
        scope = request.scope
        return {"project_id": scope.project_id, "all_projects": scope.all_projects,
                "filter": scope.project_filter,
                "sees_other": scope.sees(OTHER_PROJECT)}


@pytest.fixture
def racer(migrated):
    enforcer = policy.get_enforcer()
    for name in ("race", "race_briefly", "race_without_deadline", "refuse_loudly",
                 "refuse_without_transaction", "scope_of"):
        enforcer.register_default(oslo_policy.RuleDefault(f"custos:{name}", "@"))
    Racer.losses = 0
    Racer.runs = 0
    return Racer(RecordingRuntime())


def rows():
    return db_api.run_in_transaction(
        lambda s: sorted(s.scalars(sa.select(models.InstanceSystemMetadata.instance_uuid))))


def unwrap(call):
    with pytest.raises(messaging.ExpectedException) as caught:
        call()
    return caught.value.exc_info[1]


def test_a_lost_race_runs_again_in_a_fresh_transaction(racer):
    Racer.losses = 2

    assert racer.race(member(), instance="i") == 3

    assert rows() == ["i-3"]
    assert racer.runtime.sent == [("race.run", {"run": 3}, "info")]


def test_a_race_lost_until_the_deadline_is_the_named_give_up_error(racer):
    Racer.losses = 10_000

    error = unwrap(lambda: racer.race_briefly(member(), instance="i"))

    assert isinstance(error, exception.VolumeDriverError)
    assert error.kwargs == {"backend": "b", "reason": "kept losing"}
    assert 1 < Racer.runs < 10_000
    assert rows() == []
    assert racer.runtime.sent == []


def test_a_method_without_a_deadline_does_not_run_again(racer):
    Racer.losses = 1

    with pytest.raises(RetryRequest):
        racer.race_without_deadline(member(), instance="i")

    assert Racer.runs == 1
    assert rows() == []
    assert racer.runtime.sent == []


def test_an_event_marked_even_on_failure_goes_out_after_the_rollback(racer):
    error = unwrap(lambda: racer.refuse_loudly(member(), instance="i"))

    assert isinstance(error, exception.InvalidInput)
    assert rows() == []
    assert racer.runtime.sent == [("refusal", {"instance": "i"}, "error")]


def test_an_event_marked_even_on_failure_goes_out_once_on_success(racer):
    assert racer.refuse_loudly(member(), instance="i", refuse=False) == "kept"

    assert rows() == ["i-1"]
    assert racer.runtime.sent == [("race.run", {"run": 1}, "info"),
                                  ("refusal", {"instance": "i"}, "error")]


def test_a_method_without_a_request_transaction_gets_one_from_the_boundary(racer):
    racer.refuse_loudly(member(), instance="i", refuse=False)
    racer.runtime.sent.clear()

    error = unwrap(lambda: racer.refuse_without_transaction(member()))

    assert error.kwargs["field"] == "rows"
    assert racer.runtime.sent == [("counted", {"rows": 1}, "info")]


def test_the_scope_of_a_member_is_its_own_project(racer):
    assert racer.scope_of(member()) == {"project_id": PROJECT, "all_projects": False,
                                        "filter": PROJECT, "sees_other": False}


def test_the_scope_of_the_administrator_is_every_project(racer):
    assert racer.scope_of(admin()) == {"project_id": PROJECT, "all_projects": True,
                                       "filter": None, "sees_other": True}


def test_a_scope_without_a_project_owns_nothing(conf):
    scope = policy.scope(make_context(project_id=None, roles=["member"]))

    assert scope.sees(None) is False
    with pytest.raises(exception.Forbidden):
        scope.require_project("secrets without a project")
