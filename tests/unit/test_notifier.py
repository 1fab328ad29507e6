"""Notifications leave after the reply, from the agent's own bounded sender."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from agent import notifier
from agent.notifier import NotificationSender
from tests.common import member


class BlockingNotifier:
    """A notifier whose broker publish blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def info(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.entered.set()
        if not self.release.wait(30):
            raise TimeoutError("never released")
        self.sent.append((event_type, payload))


class FlakyNotifier:
    """Fails its first ``failures`` publishes, as while a broker node is lost."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.sent: list[str] = []

    def info(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionRefusedError(111, "Connection refused")
        self.sent.append(event_type)


def test_reply_does_not_wait_for_a_blocked_publish(harness):
    blocked = BlockingNotifier()
    harness.runtime.notifier = blocked
    ctxt = member()
    try:
        started = time.monotonic()
        uuid = harness.api.secret_generate(ctxt, "ceph", "client.blocked")
        # The publish of secret.define is blocked; the reply came anyway.
        assert blocked.entered.wait(10)
        assert not blocked.sent
        assert time.monotonic() - started < 10
        # The change committed before the reply: a second call sees it.
        assert harness.api.secret_lookup_by_usage(ctxt, "ceph", "client.blocked") == uuid
    finally:
        blocked.release.set()
    assert harness.runtime.notifications.flush(10)
    assert [event for event, _ in blocked.sent] == ["secret.define", "secret.value_change"]
    assert all(payload["uuid"] == uuid for _, payload in blocked.sent)


class GateNotifier:
    """Records the order publishes start in; holds ``probe.first`` until opened."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[tuple[str, str]] = []

    def info(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.started.append((event_type, threading.current_thread().name))
        if event_type == "probe.first" and not self.gate.wait(30):
            raise TimeoutError("never opened")


def test_a_served_requests_notifications_leave_from_its_worker_after_the_reply(harness):
    recorder = GateNotifier()
    recorder.gate.set()
    harness.runtime.notifier = recorder
    harness.api.secret_generate(member(), "ceph", "client.worker")
    assert harness.runtime.notifications.flush(10)
    assert [event for event, _ in recorder.started] == ["secret.define", "secret.value_change"]
    assert all(thread.startswith("rpc-worker") for _, thread in recorder.started)


def test_nothing_a_worker_holds_is_published_before_its_block_ends():
    flaky = FlakyNotifier(failures=0)
    sender = NotificationSender(lambda: flaky)
    with notifier.after_reply():
        sender.submit(member(), [("probe.held", {}, "info")])
        assert flaky.attempts == 0
        assert sender.pending() == 1
    assert flaky.sent == ["probe.held"]
    assert sender.pending() == 0


def test_queued_notifications_wait_for_the_one_a_worker_is_publishing():
    gate = GateNotifier()
    sender = NotificationSender(lambda: gate)

    def served() -> None:
        with notifier.after_reply():
            sender.submit(member(), [("probe.first", {}, "info")])

    worker = threading.Thread(target=served, name="rpc-worker-test")
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not gate.started and time.monotonic() < deadline:
            time.sleep(0.01)
        # Committed after probe.first, from a thread that is no worker:
        # queued, and held back while probe.first is being published.
        sender.submit(member(), [("probe.second", {}, "info")])
        time.sleep(0.3)
        assert gate.started == [("probe.first", "rpc-worker-test")]
        assert not sender.flush(0.1)
    finally:
        gate.gate.set()
        worker.join(10)
    assert sender.flush(10)
    assert [event for event, _ in gate.started] == ["probe.first", "probe.second"]
    assert gate.started[1][1] == "custos-notifier"


def test_a_publish_that_fails_on_the_worker_is_retried_in_order_by_the_queue():
    flaky = FlakyNotifier(failures=2)
    sender = NotificationSender(lambda: flaky, first_pause=0.01, max_pause=0.02)
    with notifier.after_reply():
        sender.submit(member(), [("probe.a", {}, "info"), ("probe.b", {}, "info")])
    assert sender.flush(10)
    assert flaky.sent == ["probe.a", "probe.b"]
    # One try on the worker, then the queue's: one more failure, then both.
    assert flaky.attempts == 4
    assert sender.failed == 0
    # While the broker was failing, a served request's notifications
    # would have queued behind the retries; now it is back, they are held.
    assert sender.broker_state == "ok"


def test_full_queue_drops_counts_and_logs_once_without_payload(caplog):
    blocked = BlockingNotifier()
    sender = NotificationSender(lambda: blocked, max_queued=3)
    ctxt = member()
    caplog.set_level(logging.WARNING, logger="agent.notifier")
    try:
        sender.submit(ctxt, [("probe.first", {"value": "first-payload"}, "info")])
        assert blocked.entered.wait(10)
        # One is being published; three wait; the other six do not fit.
        sender.submit(ctxt, [(f"probe.{i}", {"value": f"payload-{i}"}, "info")
                             for i in range(9)])
        assert sender.dropped == 6
        assert sender.pending() == 4
    finally:
        blocked.release.set()
    assert sender.flush(10)
    assert [event for event, _ in blocked.sent] == ["probe.first", "probe.0", "probe.1",
                                                    "probe.2"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len([w for w in warnings if "queue full" in w]) == 1
    assert any("Dropped 6 notifications" in w for w in warnings)
    assert not any("payload" in w for w in warnings)
    sender.close(5)


def test_publish_is_retried_until_the_broker_takes_it():
    flaky = FlakyNotifier(failures=3)
    sender = NotificationSender(lambda: flaky, first_pause=0.01, max_pause=0.02)
    sender.submit(member(), [("probe.retried", {}, "info")])
    assert sender.flush(10)
    assert flaky.sent == ["probe.retried"]
    assert flaky.attempts == 4
    assert sender.failed == 0


def test_publish_given_up_after_the_deadline_is_counted(caplog):
    flaky = FlakyNotifier(failures=10**6)
    sender = NotificationSender(lambda: flaky, retry_deadline=0.2, first_pause=0.01,
                                max_pause=0.05)
    caplog.set_level(logging.ERROR, logger="agent.notifier")
    sender.submit(member(), [("probe.lost", {"value": "never-logged"}, "info"),
                             ("probe.next", {}, "info")])
    assert sender.flush(10)
    assert flaky.sent == []
    assert sender.failed == 2
    assert not any("never-logged" in r.getMessage() for r in caplog.records)


def test_close_sends_what_is_queued_then_refuses():
    blocked = BlockingNotifier()
    sender = NotificationSender(lambda: blocked)
    sender.submit(member(), [(f"probe.{i}", {}, "info") for i in range(5)])
    assert blocked.entered.wait(10)
    threading.Timer(0.2, blocked.release.set).start()
    assert sender.close(10)
    assert [event for event, _ in blocked.sent] == [f"probe.{i}" for i in range(5)]
    sender.submit(member(), [("probe.late", {}, "info")])
    assert sender.dropped == 1


def test_close_gives_up_after_its_timeout():
    blocked = BlockingNotifier()
    sender = NotificationSender(lambda: blocked)
    sender.submit(member(), [(f"probe.{i}", {}, "info") for i in range(3)])
    assert blocked.entered.wait(10)
    assert not sender.close(0.2)
    blocked.release.set()
    assert sender.failed == 2


@pytest.mark.parametrize("priority", ["info", "error"])
def test_broker_notifier_publishes_messagingv2_on_the_priority_topic(priority):
    from agent.notifier import BrokerNotifier
    from agent.rpc import NotificationSerializer

    class Transport:
        def __init__(self) -> None:
            self.sent: list[tuple[Any, ...]] = []

        def _send_notification(self, target, ctxt, message, version, retry=None):
            self.sent.append((target.topic, ctxt, message, version, retry))

    transport = Transport()
    notifier = BrokerNotifier(transport, "custos-agent.h1", ["notifications"],  # type: ignore[arg-type]
                              NotificationSerializer())
    ctxt = member(auth_token="canary-token")
    getattr(notifier, priority)(ctxt, "probe.sent", {"uuid": "u1"})
    [(topic, wire_ctxt, message, version, retry)] = transport.sent
    assert topic == f"notifications.{priority}"
    assert version == 2.0 and retry == 1
    assert message["event_type"] == "probe.sent"
    assert message["priority"] == priority.upper()
    assert message["publisher_id"] == "custos-agent.h1"
    assert message["payload"] == {"uuid": "u1"}
    assert "canary-token" not in repr(wire_ctxt)
