"""The agent's RPC boundary on the fake transport: health, bad calls, errors."""

from __future__ import annotations

import logging
import threading

import pytest

import agent
from agent import exception, rpc
from agent.service import AgentService
from rpcapi import RPC_API_VERSION
from tests.common import make_context, member, nobody
from tests.functional.private_services import free_port


def test_health_reports_version_database_and_key(harness):
    result = harness.api.health(nobody())

    assert result["version"] == agent.__version__
    assert result["rpc_api_version"] == RPC_API_VERSION == "1.1"
    assert result["database"] == "ok"
    assert result["master_key"] == "ok"
    assert result["host"] == "unit-agent"
    assert 0 <= result["uptime_s"] < 60


def test_unexpected_argument_is_invalid_input_naming_it(harness):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api._call(member(), "health", verbose=True)

    assert caught.value.code == "invalid_input"
    assert caught.value.kwargs["field"] == "verbose"


def test_unknown_method_is_a_named_error(harness):
    with pytest.raises(exception.UnknownMethod) as caught:
        harness.api._call(member(), "drop_all_tables")

    assert caught.value.code == "unknown_method"
    assert "drop_all_tables" in caught.value.msg


def test_agent_keeps_serving_after_refusals(harness):
    for _ in range(3):
        with pytest.raises(exception.CustosException):
            harness.api._call(member(), "health", x=1)
        with pytest.raises(exception.UnknownMethod):
            harness.api._call(member(), "nope")

    assert harness.api.health(member())["database"] == "ok"


def test_expected_errors_leave_no_traceback_in_the_log(harness, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(exception.InvalidInput):
        harness.api._call(member(), "health", x=1)

    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_context_without_project_or_roles_still_gets_health(harness):
    assert harness.api.health(make_context(None, [], []))["database"] == "ok"


def test_deleting_its_event_queue_gives_up_on_a_broker_that_is_gone(conf, caplog):
    conf.set_override("transport_url", f"rabbit://guest:guest@127.0.0.1:{free_port()}/")
    rpc.init(conf)  # loads the rabbit driver, which registers its options
    conf.set_override("rabbit_retry_interval", 1, group="oslo_messaging_rabbit")
    outcome: list[bool] = []
    try:
        attempt = threading.Thread(target=lambda: outcome.append(
            rpc.delete_own_event_queue("retired-host")), daemon=True)
        attempt.start()
        attempt.join(30)
    finally:
        rpc.cleanup()

    assert outcome == [False], "still reconnecting after 30 s"
    assert "Could not delete event queue custos-agent-events.retired-host" in caplog.text


class _SlowToStop:
    """A server or listener whose stop returns only once all of them are stopping.

    As a real one's stop waits for a broker read to end: stopped one after
    the other, the first waits for the others until the barrier gives up.
    """

    def __init__(self, everyone: threading.Barrier, stopped: list[str], name: str) -> None:
        self.everyone = everyone
        self.stopped = stopped
        self.name = name

    def stop(self) -> None:
        self.everyone.wait()
        self.stopped.append(self.name)


def test_the_server_and_listeners_stop_together(conf):
    everyone = threading.Barrier(3, timeout=10)
    stopped: list[str] = []
    service = AgentService(conf)
    service.server = _SlowToStop(everyone, stopped, "server")
    service.listeners = [_SlowToStop(everyone, stopped, "shared events"),
                         _SlowToStop(everyone, stopped, "own events")]

    service.stop()

    assert sorted(stopped) == ["own events", "server", "shared events"]


def test_a_part_that_fails_to_stop_is_reported_after_the_others_stopped(conf):
    stopped: list[str] = []

    class Broken:
        def stop(self) -> None:
            raise RuntimeError("listener gone")

    service = AgentService(conf)
    service.server = Broken()
    service.listeners = [_SlowToStop(threading.Barrier(1), stopped, "events")]

    with pytest.raises(RuntimeError, match="listener gone"):
        service.stop()
    assert stopped == ["events"]


class _Part:
    """A server or listener that records when it starts."""

    def __init__(self, started: list[str], name: str) -> None:
        self.started = started
        self.name = name

    def start(self) -> None:
        self.started.append(self.name)

    def stop(self) -> None:
        pass

    def wait(self) -> None:
        pass


def test_the_event_listeners_start_before_the_rpc_server(migrated, master_key, monkeypatch):
    """The own event queue exists before any request can put something in memory."""
    started: list[str] = []
    monkeypatch.setattr(rpc, "get_rpc_server",
                        lambda host, endpoints, **kwargs: _Part(started, "rpc server"))
    monkeypatch.setattr(rpc, "get_event_listeners", lambda *args: [
        _Part(started, "shared events"), _Part(started, "own events")])
    migrated.set_override("transport_url", "fake:/")
    service = AgentService(migrated)

    service.start()
    try:
        assert started == ["shared events", "own events", "rpc server"]
    finally:
        service.stop()
        service.wait()


def test_a_stopping_agent_commits_the_casts_it_has_taken_before_it_ends(
        migrated, master_key, monkeypatch):
    """Casts waiting for their committer when the agent stops are committed, not dropped."""
    import uuid

    from agent.handlers.vendordata import VendordataEndpoint
    from agent.vendordata import bootroles
    from db import api as db_api
    from rpcapi import CustosAPI
    from tests.common import eventually

    committer = VendordataEndpoint.instance_boot_roles_set.rpc_mode.committer
    monkeypatch.setattr(committer, "linger", 2.0)
    migrated.set_override("transport_url", "fake:/")
    service = AgentService(migrated)
    service.start()
    api = CustosAPI(transport=rpc.TRANSPORT, timeout=10)
    instances = [str(uuid.uuid4()) for _ in range(20)]
    try:
        for instance in instances:
            api.instance_boot_roles_set(make_context(service_roles=["service"]), instance,
                                        roles=["member"])
        assert eventually(lambda: committer.pending() == len(instances), 10)
    finally:
        service.stop()
        service.wait()

    db_api.configure()
    stored = db_api.run_in_transaction(
        lambda session: [bootroles.load(session, i) for i in instances], read_only=True)
    assert stored == [["member"]] * len(instances)
    assert committer.pending() == 0
