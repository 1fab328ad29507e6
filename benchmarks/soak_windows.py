"""A soak run, window by window: throughput, machine load, CPU per call and p99.

Reads the ``samples.json`` a run leaves in its work directory (kept with
``--keep``) and prints one line per window, so that a p99 that moved can
be set beside the load of the shared machine at the time::

    .venv/bin/python -m benchmarks.soak_windows WORKDIR/samples.json --minutes 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.stats import percentile


def windows(run: dict[str, Any], seconds: float, method: str) -> list[str]:
    """One line per ``seconds`` of the run: calls/s, load, agents' CPU per call, p99."""
    samples, calls = run["samples"], run["calls"]
    lines = [f"{'from':>6} {'calls/s':>8} {'load':>6} {'CPU/call':>9} {method + ' p99':>28}"]
    start = 0.0
    while start < run["end"]:
        inside = [s for s in samples if start <= s["at"] < start + seconds]
        if len(inside) >= 2:
            first, last = inside[0], inside[-1]
            count = last["requests"] - first["requests"]
            cpu = sum(last["agents"][h]["cpu_ms"] - first["agents"][h]["cpu_ms"]
                      for h in first["agents"])
            load = sum(s["load"] for s in inside) / len(inside)
            latencies = [c[1] for c in calls if start <= c[0] < start + seconds
                         and c[2] == method and not c[3].startswith(("typed", "untyped",
                                                                     "timeout"))]
            p99 = f"{percentile(latencies, 99) * 1000:.1f} ms (n={len(latencies)})" \
                if latencies else "-"
            lines.append(f"{start:>5.0f}s {count / (last['at'] - first['at']):>8.1f} "
                         f"{load:>6.1f} {cpu / max(count, 1):>6.2f} ms {p99:>28}")
        start += seconds
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="a run's samples.json")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of a window")
    parser.add_argument("--method", default="secret_get_value")
    args = parser.parse_args(argv)
    run = json.loads(args.samples.read_text())
    print("\n".join(windows(run, args.minutes * 60, args.method)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
