"""Fixtures for the vendordata tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.unit.vendordata.stub_server import HANDLER_LIMIT, StubServer


@pytest.fixture
def server() -> Iterator[StubServer]:
    """A threaded HTTP server on 127.0.0.1, stopped after the test."""
    srv = StubServer()
    thread = threading.Thread(target=srv.serve_forever,
                              kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stopping.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=HANDLER_LIMIT)
