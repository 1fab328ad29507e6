"""Exit 0 when a broker node of ``transport_url`` accepts connections.

``tools/run-agent.sh`` asks this before starting the agent, so a newcomer
without a running broker reads one sentence instead of a reconnect loop.
Importing :mod:`agent.cmd` first keeps library deprecation notices out of
what that person sees.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import agent.cmd  # noqa: F401  silences library deprecation notices first
from agent.cmd import common, status


def main(argv: Sequence[str] | None = None) -> int:
    """Return 0 when the broker answers, 1 when no node does."""
    common.parse_args(sys.argv[1:] if argv is None else argv, name="custos-probe")
    return 1 if status.check_broker().code == status.Code.FAILURE else 0


if __name__ == "__main__":
    sys.exit(main())
