"""custos-agent: run the worker until SIGTERM or SIGINT.

On either signal the agent stops taking messages, lets in-flight requests
finish (at most ``graceful_shutdown_timeout`` seconds), and exits 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.service import AgentService

LOG = logging.getLogger("agent.cmd.agent")

#: How often the main thread looks for a stop signal, in seconds.
STOP_POLL_S = 0.2


def main(argv: Sequence[str] | None = None) -> int:
    """Run custos-agent.

    :returns: the exit status: 0 after a graceful stop, 1 when start-up fails.
    """
    # Start-up imports and builds a few hundred thousand objects that live
    # as long as the process; collecting among them while they are made
    # cost about a tenth of a second of start-up for nothing. The agent's
    # own modules are imported here, after collection stops, and the
    # collector comes back frozen past them once the agent serves.
    gc.disable()
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    finally:
        _collect_again()


def _collect_again() -> None:
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _run(argv: Sequence[str]) -> int:
    from oslo_config import cfg

    from agent import exception, log, reports
    from agent.cmd import common
    from agent.service import AgentService

    conf = cfg.CONF
    common.parse_args(argv, name="custos-agent")
    log.setup(conf, "custos")
    reports.setup(conf)
    stop_signals: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        # The handler runs on the main thread between two of its bytecodes,
        # possibly while that thread holds a lock the handler would take:
        # an Event's (set() from here once hung an agent in its stop loop)
        # or a log handler's. So it only records the signal.
        stop_signals.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    service = AgentService(conf)
    try:
        service.start()
    except exception.CustosException as error:
        LOG.error("custos-agent cannot start: %s", error.msg)
        print(f"custos-agent: {error.msg}", file=sys.stderr)
        return 1
    _collect_again()
    while not stop_signals:
        time.sleep(STOP_POLL_S)
    LOG.info("Received %s; stopping after in-flight requests",
             signal.Signals(stop_signals[0]).name)
    service.stop()
    waiter = threading.Thread(target=service.wait, daemon=True)
    waiter.start()
    timeout = conf.graceful_shutdown_timeout
    # The last seconds are kept for cutting what still waits on the outside
    # world (a request thread blocked on a vendordata target would hold the
    # exit, since worker threads are joined then) and for closing the
    # transports, which takes a few seconds of its own.
    margin = min(3.0, timeout / 2)
    waiter.join(timeout - margin)
    if waiter.is_alive():
        _cut_outbound(service)
        waiter.join(margin)
    if waiter.is_alive():
        LOG.warning("In-flight requests did not finish within %ss",
                    conf.graceful_shutdown_timeout)
    LOG.info("custos-agent stopped")
    return 0


def _cut_outbound(service: AgentService) -> None:
    """End the vendordata exchanges in flight so their requests can finish."""
    if service.runtime is not None:
        LOG.warning("Cutting vendordata fetches still in flight")
        service.runtime.vendordata.close()


if __name__ == "__main__":
    sys.exit(main())
