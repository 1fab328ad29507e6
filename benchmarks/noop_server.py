"""The baseline: a plain oslo.messaging RPC server that does nothing.

It serves the same kind of topic on the same broker as custos-agent, with
oslo.messaging's threading executor and default pool size, so the
difference between the two is what custos adds (argument check, policy,
transaction, handler, notifications) and nothing else.

Methods: ``noop`` (call, returns None), ``noop_cast`` (cast, counts),
``count`` (call, returns how many casts were handled so far).

Run as ``python -m benchmarks.noop_server --url URL --exchange EXCHANGE
--topic TOPIC --server NAME``; it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

#: How often the main thread looks for a stop signal, as custos-agent's does.
STOP_POLL_S = 0.2


class NoopEndpoint:
    """The baseline's methods; the cast counter is shared by its threads."""

    target = messaging.Target(version="1.0")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._casts = 0

    def noop(self, ctxt: Any, **kwargs: Any) -> None:
        """Answer at once with None."""
        return None

    def noop_cast(self, ctxt: Any, **kwargs: Any) -> None:
        """Count one cast."""
        with self._lock:
            self._casts += 1

    def count(self, ctxt: Any) -> int:
        """Return how many casts were handled."""
        with self._lock:
            return self._casts


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="oslo.messaging transport URL")
    parser.add_argument("--exchange", required=True, help="control exchange")
    parser.add_argument("--topic", default="custos-noop")
    parser.add_argument("--server", default="noop-1")
    args = parser.parse_args(argv)

    conf = cfg.CONF
    conf([], project="custos-noop", default_config_files=[])
    messaging.set_transport_defaults(control_exchange=args.exchange)
    transport = messaging.get_rpc_transport(conf, url=args.url)
    target = messaging.Target(topic=args.topic, server=args.server)
    server = messaging.get_rpc_server(transport, target, [NoopEndpoint()],
                                      access_policy=messaging.DefaultRPCAccessPolicy)
    # The handler only records the signal: run between two bytecodes of
    # the main thread, it must not take a lock that thread may hold (as
    # custos-agent's handler does not).
    stop_signals: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: stop_signals.append(received))
    server.start()
    while not stop_signals:
        time.sleep(STOP_POLL_S)
    server.stop()
    server.wait()
    transport.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
