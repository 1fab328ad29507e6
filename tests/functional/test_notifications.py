"""Notifications of a real custos-agent: after the reply, flushed at shutdown, failed over."""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import oslo_messaging as messaging
import pytest

from tests.common import member


class Recorder:
    """Notification endpoint that keeps the custos events it hears."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.events.put((event_type, payload))

    def uuids_of(self, event_type: str, expected: set[str], timeout: float = 30) -> set[str]:
        """Collect the ``uuid`` of ``event_type`` events until ``expected`` are all seen."""
        seen: set[str] = set()
        while not expected <= seen:
            try:
                kind, payload = self.events.get(timeout=timeout)
            except queue.Empty:
                break
            if kind == event_type:
                seen.add(payload.get("uuid"))
        return seen


@pytest.fixture
def notifications(notification_transport: Any) -> Iterator[Recorder]:
    """Listen on topic ``notifications`` in a pool of this test's own."""
    recorder = Recorder()
    listener = messaging.get_notification_listener(
        notification_transport, [messaging.Target(topic="notifications")], [recorder],
        pool=f"custos-test-notify-{uuid.uuid4().hex[:8]}")
    listener.start()
    yield recorder
    listener.stop()
    listener.wait()


def test_sigterm_after_a_burst_announces_every_committed_change(start_agent, api,
                                                                  notifications):
    proc = start_agent()
    ctxt = member()

    def generate(index: int) -> str:
        return api.secret_generate(ctxt, "ceph", f"client.burst-{index}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = set(pool.map(generate, range(60)))
    proc.signal()
    assert proc.stop(60) == 0
    assert len(created) == 60
    assert notifications.uuids_of("secret.define", created) == created


class Proxy:
    """A TCP forwarder standing for one broker node, which can be lost."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.links: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def lose(self) -> None:
        """The node goes away: open connections drop, new ones are refused."""
        self.server.close()
        with self.lock:
            for sock in self.links:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def test_notifications_fail_over_to_the_next_broker_node(start_agent, api, rabbit_url,
                                                         notifications):
    parts = urlsplit(rabbit_url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    credentials = parts.netloc.rsplit("@", 1)[0]
    nodes = f"{credentials}@127.0.0.1:{proxy.port},{parts.netloc}"
    # The lost node first: the agent's connections start on it.
    url = urlunsplit((parts.scheme, nodes, parts.path, "", ""))
    start_agent(DEFAULT={"transport_url": url})
    ctxt = member()
    before = api.secret_generate(ctxt, "ceph", "client.before-loss")
    assert notifications.uuids_of("secret.define", {before}) == {before}
    proxy.lose()
    after = {api.secret_generate(ctxt, "ceph", f"client.after-loss-{i}") for i in range(3)}
    assert notifications.uuids_of("secret.define", after, timeout=60) == after
