"""A quick request of a known caller is served on the thread that read it off the bus.

Everything else goes to the pool, and a quick request that takes long
never holds back the other callers (:class:`agent.rpc.RPCServer`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent import exception, rpc
from agent.secrets.store import SecretStore
from agent.wire import RequestContext
from tests.common import nobody


def ctx(token: str) -> RequestContext:
    return RequestContext(overwrite=False, auth_token=token)


class ThreadRecorder:
    """Wraps a SecretStore method: records the thread of each call; may hold the first."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, hold_first: bool = False):
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        original = getattr(SecretStore, name)

        def recorded(store: SecretStore, *args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            if self.hold_first and len(self.threads) == 1:
                self.entered.set()
                assert self.release.wait(30), "never released"
            return original(store, *args, **kwargs)

        monkeypatch.setattr(SecretStore, name, recorded)


@pytest.fixture
def agent(keystone_mode: Any, harness: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # On the fake transport the next request is read within microseconds
    # of the last reply; on RabbitMQ a caller's next request takes longer.
    monkeypatch.setattr(rpc, "WAITED_S", 0.0)
    yield harness


def _secret(api: Any, token: str = "tok-alice") -> str:
    secret = api.secret_define_xml(ctx(token), "<secret ephemeral='no' private='no'>"
                                   "<usage type='ceph'><name>client.%s</name></usage>"
                                   "</secret>" % uuid.uuid4().hex)
    api.secret_set_value(ctx(token), secret, b"the value")
    return secret


def _from_pool(thread: str) -> bool:
    return thread.startswith("rpc-worker")


def test_a_known_callers_read_is_served_on_the_thread_that_read_it(agent, monkeypatch):
    secret = _secret(agent.api)
    reads = ThreadRecorder(monkeypatch, "get_value")
    server = agent.service.server
    before = server.served_by_listener

    for _ in range(3):
        assert agent.api.secret_get_value(ctx("tok-alice"), secret) == b"the value"

    assert reads.threads and not any(_from_pool(thread) for thread in reads.threads)
    assert server.served_by_listener - before == 3


def test_a_token_seen_for_the_first_time_is_validated_on_a_pool_thread(agent, keystone_mode,
                                                                        monkeypatch):
    secret = _secret(agent.api)
    reads = ThreadRecorder(monkeypatch, "get_value")

    # dave, admin of the same project, has not called before.
    for _ in range(2):
        assert agent.api.secret_get_value(ctx("tok-dave"), secret)

    assert [_from_pool(thread) for thread in reads.threads] == [True, False]
    assert keystone_mode.asked.count("tok-dave") == 1


def test_an_unknown_token_goes_to_the_pool_until_keystone_has_refused_it(
        agent, keystone_mode):
    server = agent.service.server
    before = server.served_by_listener
    with pytest.raises(exception.Unauthorized):
        agent.api.secret_get_value(ctx("tok-forged"), str(uuid.uuid4()))
    # Refused once, it is refused from memory: served where it was read.
    with pytest.raises(exception.Unauthorized):
        agent.api.secret_get_value(ctx("tok-forged"), str(uuid.uuid4()))
    assert keystone_mode.asked.count("tok-forged") == 1
    assert server.served_by_listener - before == 1


def test_writes_are_served_by_the_pool(agent, monkeypatch):
    secret = _secret(agent.api)
    writes = ThreadRecorder(monkeypatch, "set_value")

    for _ in range(3):
        agent.api.secret_set_value(ctx("tok-alice"), secret, b"another")

    assert len(writes.threads) == 3 and all(_from_pool(thread) for thread in writes.threads)


def test_a_slow_quick_request_does_not_hold_back_the_other_callers(agent, monkeypatch):
    secret = _secret(agent.api)
    reads = ThreadRecorder(monkeypatch, "get_value", hold_first=True)
    server = agent.service.server
    answers: list[bytes] = []
    slow = threading.Thread(
        target=lambda: answers.append(agent.api.secret_get_value(ctx("tok-alice"), secret)))
    slow.start()
    try:
        assert reads.entered.wait(10)
        assert not _from_pool(reads.threads[0])

        # Read in the listener thread's place, and served by the pool,
        # while the first read is still held.
        assert agent.api.health(nobody())["database"] == "ok"
        assert agent.api.secret_get_value(ctx("tok-alice"), secret) == b"the value"
        assert not answers
        assert server.read_in_relief >= 2
        assert _from_pool(reads.threads[1])
    finally:
        reads.release.set()
        slow.join(10)
    assert answers == [b"the value"]


def test_a_stopping_agent_answers_the_quick_request_it_is_serving(agent, monkeypatch):
    secret = _secret(agent.api)
    reads = ThreadRecorder(monkeypatch, "get_value", hold_first=True)
    answers: list[bytes] = []
    slow = threading.Thread(
        target=lambda: answers.append(agent.api.secret_get_value(ctx("tok-alice"), secret)))
    slow.start()
    assert reads.entered.wait(10)
    stopping = threading.Thread(target=agent.service.stop)
    stopping.start()
    try:
        stopping.join(0.3)
        # The stop waits for the request the listener thread serves.
        assert stopping.is_alive()
    finally:
        reads.release.set()
    slow.join(10)
    stopping.join(10)
    assert not stopping.is_alive()
    assert answers == [b"the value"]
