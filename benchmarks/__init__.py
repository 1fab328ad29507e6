"""Benchmarks that measure SPEC §5's figures; not run by the test command.

Run them with ``./tools/run-benchmarks.sh``: :mod:`benchmarks.run` is the
runner, :mod:`benchmarks.noop_server` the baseline it compares with.
"""

import os

#: The environment the benchmark was started in, before any custos module
#: changed it (``agent.cmd`` turns eventlet's DNS resolver off for custos'
#: own commands). Both servers start in it, so the baseline stays a plain
#: oslo.messaging server with that library's defaults.
LAUNCH_ENV = dict(os.environ)
