"""Events that cannot be handled, or not yet: dropped once, requeued within a bound.

The dispatcher is driven directly with incoming messages shaped as the
rabbit and fake drivers hand them over, and through the running agent on
the fake transport.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
import pytest

from agent import exception
from agent.events.dispatcher import EventDispatcher
from agent.events.redelivery import DeliveryCounter
from db import api as db_api
from db import models
from tests import services
from tests.common import member
from tests.unit.test_events import add_volume_rows, count, eventually

HANDLED = messaging.NotificationResult.HANDLED
REQUEUE = messaging.NotificationResult.REQUEUE


class Incoming:
    """An incoming message as a driver hands it to the dispatcher."""

    def __init__(self, message: Any, raw: Any = None) -> None:
        self.ctxt: dict[str, Any] = {}
        self.message = message
        if raw is not None:
            self.message = _RabbitMessage(message)
            self.message._raw_message = raw


class _RabbitMessage(dict):  # type: ignore[type-arg]
    """Like the rabbit driver's message: a dict with kombu's message beside it."""

    _raw_message: Any


class Raw:
    """kombu's view of a delivery: headers and delivery_info."""

    def __init__(self, headers: dict[str, Any] | None = None, redelivered: bool = False):
        self.headers = headers or {}
        self.delivery_info = {"redelivered": redelivered}


class Endpoint:
    """Records calls and answers what it is told."""

    filter_rule = messaging.NotificationFilter(event_type=r"^volume\.delete\.end$")

    def __init__(self, answer: Any = HANDLED) -> None:
        self.answer = answer
        self.calls = 0

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> Any:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def envelope(priority: Any = "INFO", event_type: Any = "volume.delete.end",
             message_id: str | None = None) -> dict[str, Any]:
    return {"message_id": message_id or str(uuid.uuid4()), "publisher_id": "volume.host-1",
            "event_type": event_type, "priority": priority,
            "payload": {"volume_id": str(uuid.uuid4())}, "timestamp": "2026-01-01 00:00:00"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="agent")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == level and r.name.startswith("agent")]


@pytest.mark.parametrize("message, reason", [
    (envelope(priority=None), "unknown priority 'NoneType'"),
    (envelope(priority="loud"), "unknown priority 'loud'"),
    (envelope(priority=7), "unknown priority 'int'"),
    (envelope(event_type=None), "no event type"),
    (["not", "an", "envelope"], "the envelope is not a mapping"),
])
def test_a_message_that_can_never_be_handled_is_dropped_with_one_line(logs, message, reason):
    endpoint = Endpoint()
    dispatcher = EventDispatcher([endpoint], max_redeliveries=5)

    result = dispatcher.dispatch(Incoming(message))

    assert result == HANDLED
    assert endpoint.calls == 0
    [line] = lines(logs, logging.WARNING)
    assert reason in line
    assert len(dispatcher.counter) == 0


def test_a_transient_failure_is_requeued_at_most_max_redeliveries_times(logs):
    endpoint = Endpoint(REQUEUE)
    dispatcher = EventDispatcher([endpoint], max_redeliveries=3)
    message = envelope()

    results = [dispatcher.dispatch(Incoming(dict(message))) for _ in range(4)]

    assert results == [REQUEUE, REQUEUE, REQUEUE, HANDLED]
    assert endpoint.calls == 4
    [error] = lines(logs, logging.ERROR)
    assert "volume.delete.end" in error and "after 4 failed deliveries" in error
    assert len(dispatcher.counter) == 0


def test_a_handled_message_is_forgotten_and_counts_start_again(logs):
    endpoint = Endpoint(REQUEUE)
    dispatcher = EventDispatcher([endpoint], max_redeliveries=1)
    message = envelope()
    assert dispatcher.dispatch(Incoming(dict(message))) == REQUEUE

    endpoint.answer = HANDLED
    assert dispatcher.dispatch(Incoming(dict(message))) == HANDLED

    assert len(dispatcher.counter) == 0
    assert lines(logs, logging.ERROR) == []


def test_the_quorum_queues_delivery_count_is_honoured(logs):
    """A quorum queue counts deliveries across every agent of the pool."""
    endpoint = Endpoint(REQUEUE)
    dispatcher = EventDispatcher([endpoint], max_redeliveries=5)

    result = dispatcher.dispatch(Incoming(envelope(), Raw({"x-delivery-count": 6})))

    assert result == HANDLED
    assert endpoint.calls == 0
    [error] = lines(logs, logging.ERROR)
    assert "after 6 failed deliveries" in error


def test_the_last_allowed_delivery_by_the_brokers_count_is_not_requeued(logs):
    endpoint = Endpoint(REQUEUE)
    dispatcher = EventDispatcher([endpoint], max_redeliveries=5)

    result = dispatcher.dispatch(Incoming(envelope(), Raw({"x-delivery-count": 5})))

    assert result == HANDLED
    assert endpoint.calls == 1
    assert len(lines(logs, logging.ERROR)) == 1


def test_a_redelivered_flag_counts_as_a_second_delivery():
    endpoint = Endpoint(REQUEUE)
    dispatcher = EventDispatcher([endpoint], max_redeliveries=1)

    assert dispatcher.dispatch(Incoming(envelope(), Raw(redelivered=True))) == HANDLED
    assert endpoint.calls == 1


def test_an_endpoint_that_raises_drops_the_message_once(logs):
    endpoint = Endpoint(RuntimeError("bug"))
    dispatcher = EventDispatcher([endpoint], max_redeliveries=5)

    assert dispatcher.dispatch(Incoming(envelope())) == HANDLED
    assert endpoint.calls == 1
    [error] = lines(logs, logging.ERROR)
    assert "its handler failed" in error


def test_the_delivery_count_is_bounded_in_memory():
    counter = DeliveryCounter(capacity=10)
    for _ in range(100):
        counter.delivered(Incoming(envelope()))
    assert len(counter) == 10


def test_messages_without_a_message_id_are_still_counted():
    endpoint = Endpoint(REQUEUE)
    dispatcher = EventDispatcher([endpoint], max_redeliveries=2)
    message = envelope()
    del message["message_id"]

    results = [dispatcher.dispatch(Incoming(dict(message))) for _ in range(3)]

    assert results == [REQUEUE, REQUEUE, HANDLED]


# -- through the running agent ------------------------------------------------

@pytest.fixture
def cinder(harness) -> Iterator[services.Service]:
    service = services.cinder("fake:/")
    yield service
    service.close()


def publish_raw(service: services.Service, message: dict[str, Any]) -> None:
    """Put ``message`` on exchange cinder, topic notifications.info, as it is."""
    service.transport._send_notification(
        messaging.Target(topic="notifications.info"), {}, message, version=2.0)


def test_a_poison_message_is_dropped_and_the_agent_goes_on_purging(harness, cinder, logs):
    publish_raw(cinder, envelope(priority=None))
    volume = str(uuid.uuid4())
    add_volume_rows(volume)

    services.delete_volume(cinder, volume, "legacy")

    assert eventually(lambda: count(models.Secret, usage_id=volume) == 0)
    time.sleep(0.2)
    poison = [line for line in lines(logs, logging.WARNING) if "unknown priority" in line]
    # The agent's own pool sees it too, but leaves the report to the shared one.
    assert len(poison) == 1


@pytest.fixture
def two_redeliveries(migrated):
    migrated.set_override("max_redeliveries", 2, group="events")


def test_a_database_outage_requeues_within_the_bound_then_drops(two_redeliveries, harness,
                                                                cinder, logs, monkeypatch):
    attempts: list[str] = []
    real = db_api.run_in_transaction

    def unavailable(func: Any) -> Any:
        attempts.append("x")
        raise exception.DatabaseUnavailable()

    monkeypatch.setattr(db_api, "run_in_transaction", unavailable)
    volume = str(uuid.uuid4())

    services.delete_volume(cinder, volume, "legacy")

    assert eventually(lambda: any("failed deliveries" in line
                                  for line in lines(logs, logging.ERROR)))
    time.sleep(0.3)
    assert len(attempts) == 3
    monkeypatch.setattr(db_api, "run_in_transaction", real)
    other = str(uuid.uuid4())
    add_volume_rows(other)
    services.delete_volume(cinder, other, "legacy")
    assert eventually(lambda: count(models.Secret, usage_id=other) == 0)
    assert len([line for line in lines(logs, logging.ERROR)
                if "failed deliveries" in line]) == 1


# -- memory of every agent ----------------------------------------------------

def test_volume_delete_undefines_the_ephemeral_secret_generated_for_it(harness, cinder):
    volume, kept_volume = str(uuid.uuid4()), str(uuid.uuid4())
    generated = harness.api.secret_generate(member(), "volume", volume, ephemeral=True)
    kept = harness.api.secret_generate(member(), "volume", kept_volume, ephemeral=True)

    services.delete_volume(cinder, volume, "versioned")

    def gone() -> bool:
        try:
            harness.api.secret_get_value(member(), generated)
        except exception.SecretNotFound:
            return True
        return False

    assert eventually(gone)
    assert harness.api.secret_get_value(member(), kept)


def test_volume_delete_keeps_an_ephemeral_secret_holding_the_callers_value(harness, cinder):
    volume = str(uuid.uuid4())
    xml = (f"<secret ephemeral='yes' private='no'><usage type='volume'>"
           f"<volume>{volume}</volume></usage></secret>")
    secret = harness.api.secret_define_xml(member(), xml)
    harness.api.secret_set_value(member(), secret, b"mine")
    marker_volume = str(uuid.uuid4())
    marker = harness.api.secret_generate(member(), "volume", marker_volume, ephemeral=True)

    services.delete_volume(cinder, volume, "legacy")
    services.delete_volume(cinder, marker_volume, "legacy")

    def marker_gone() -> bool:
        try:
            harness.api.secret_get_value(member(), marker)
        except exception.SecretNotFound:
            return True
        return False

    assert eventually(marker_gone)
    assert harness.api.secret_get_value(member(), secret) == b"mine"
