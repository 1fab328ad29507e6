"""Run custos-agent or the no-op server with each request's stages timed.

Where a call's time goes inside the server, which py-spy's samples do
not show for short requests: from the moment the listener thread reads
the message to the moment a worker takes it, the dispatch (context,
policy and handler, through oslo.messaging's RPC dispatcher), and the
reply's publish. Every ``--every`` requests the medians of the last ones
go to standard error::

    python -m benchmarks.stages agent --config-file custos.conf
    python -m benchmarks.stages noop --url rabbit://... --exchange bench

Arguments after the server's name go to that server. Not part of the
test suite; the patches touch oslo.messaging's private classes and are
for measuring only.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

EVERY = 2000


class Stages:
    """Per-request durations of the three stages, reported as medians."""

    def __init__(self, every: int = EVERY) -> None:
        self.every = every
        self._rows: list[tuple[float, float, float]] = []
        self._lock = threading.Lock()

    def add(self, queued: float, dispatched: float, replied: float) -> None:
        with self._lock:
            self._rows.append((queued, dispatched, replied))
            if len(self._rows) % self.every:
                return
            last = self._rows[-self.every:]
        queued_us, dispatch_us, reply_us = (1e6 * statistics.median(column)
                                            for column in zip(*last))
        print(f"stages of the last {self.every} requests (median): read to worker "
              f"{queued_us:.0f} us, dispatch {dispatch_us:.0f} us, reply {reply_us:.0f} us",
              file=sys.stderr, flush=True)


def install(stages: Stages) -> None:
    """Patch oslo.messaging's AMQP listener, RPC server and reply to time each request."""
    # Imported here, after the server's own command module: custos-agent's
    # sets its environment before oslo.messaging is first imported.
    from oslo_messaging._drivers import amqpdriver
    from oslo_messaging.rpc import server as rpc_server

    read = amqpdriver.AMQPListener.__call__
    process = rpc_server.RPCServer._process_incoming
    reply = amqpdriver.AMQPIncomingMessage.reply

    def timed_read(listener: Any, message: Any) -> None:
        started = time.perf_counter()
        read(listener, message)
        if listener.incoming:
            listener.incoming[-1].custos_read_at = started

    def timed_process(server: Any, incoming: Any) -> Any:
        message = incoming[0] if isinstance(incoming, list) else incoming
        message.custos_taken_at = time.perf_counter()
        result = process(server, incoming)
        if hasattr(message, "custos_replied_at"):
            stages.add(message.custos_taken_at - getattr(message, "custos_read_at",
                                                         message.custos_taken_at),
                       message.custos_dispatched_at - message.custos_taken_at,
                       message.custos_replied_at - message.custos_dispatched_at)
        return result

    def timed_reply(message: Any, *args: Any, **kwargs: Any) -> None:
        message.custos_dispatched_at = time.perf_counter()
        reply(message, *args, **kwargs)
        message.custos_replied_at = time.perf_counter()

    amqpdriver.AMQPListener.__call__ = timed_read
    rpc_server.RPCServer._process_incoming = timed_process
    amqpdriver.AMQPIncomingMessage.reply = timed_reply


def main(argv: list[str] | None = None) -> int:
    """Run the named server (``agent`` or ``noop``) with the stages timed."""
    args = sys.argv[1:] if argv is None else argv
    server: Callable[[list[str]], int]
    if args[:1] == ["agent"]:
        from agent.cmd.agent import main as server
    elif args[:1] == ["noop"]:
        from benchmarks.noop_server import main as server
    else:
        print("usage: python -m benchmarks.stages agent|noop [server arguments]",
              file=sys.stderr)
        return 2
    install(Stages())
    return server(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
