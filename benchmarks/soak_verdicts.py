"""The soak's verdicts, judged from what was recorded and sampled while it ran.

The run after its warm-up is cut into thirds; "first" and "last" below
mean the first and the last of them.

errors
    no call ended in a timeout, an untyped error (``RemoteError`` and the
    like) or a typed error the lifecycle did not expect.
writes read back
    every value read back right after the agent acknowledged it matched,
    every write kept in the ledger reads back at the end, and every
    volume announced deleted has no glance metadata left.
flat: resident memory, threads, open files, database connections
    per agent, the mean of the last third is at most 5 % above the mean
    of the first third; for a count (threads, files, connections) at most
    5 % plus one above it, so that a count of a dozen may move by one.
queues
    no queue of the run's virtual host holds more messages (ready or
    unacknowledged) at any sample of the last third than the most it held
    in the first third, or than 20.
p99
    each method's p99 latency in the last third is at most 1.5 times its
    p99 in the first third; judged for methods with at least 100 calls in
    each third (a p99 of fewer is its slowest call or two), shown for the
    others.
log
    the agents logged at most 1 byte per call after the warm-up, not
    counting the one INFO line a purge writes per deleted volume or
    instance and the one INFO line of each refused call (both counted
    and shown), and no ERROR line.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.soak_calls import Call
from benchmarks.soak_samples import Sample
from benchmarks.stats import percentile

FLAT_RATIO = 1.05
QUEUE_SLACK = 20
P99_RATIO = 1.5
P99_MIN_CALLS = 100
LOG_BYTES_PER_CALL = 1.0
METRICS = ("rss_kib", "threads", "open_files", "db_connections")
#: What a purge logs for each deleted resource (agent/handlers/events.py).
EVENT_LINE = " deleted: "
#: What the dispatch boundary logs for each refused call (agent/dispatch.py).
REFUSAL_LINE = " refused: "


@dataclass
class Verdict:
    """One verdict: its name, whether it is met and the figures behind it."""

    name: str
    met: bool
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        mark = "met" if self.met else "FAILED"
        return "\n".join([f"{self.name}: {mark}", *(f"    {line}" for line in self.lines)])


@dataclass
class Window:
    """The run's thirds after the warm-up, as ``(start, end)`` seconds."""

    warmup: float
    end: float

    @property
    def third(self) -> float:
        return (self.end - self.warmup) / 3

    @property
    def first(self) -> tuple[float, float]:
        return self.warmup, self.warmup + self.third

    @property
    def last(self) -> tuple[float, float]:
        return self.end - self.third, self.end


def _within(at: float, span: tuple[float, float]) -> bool:
    return span[0] <= at < span[1]


def succeeded(outcome: str) -> bool:
    """A call answered as the lifecycle expects: a result, or the error it asked for."""
    return outcome == "ok" or outcome.startswith("expected:")


def errors(calls: list[Call], window: Window) -> Verdict:
    """No timeout, untyped error or unexpected typed error, in the whole run."""
    outcomes = Counter(call.outcome for call in calls)
    failed = {outcome: n for outcome, n in outcomes.items() if not succeeded(outcome)}
    after = sum(1 for call in calls if call.at >= window.warmup)
    lines = [f"{len(calls)} calls ({after} after the warm-up), {outcomes['ok']} ok"]
    lines += [f"{outcome}: {n}" for outcome, n in sorted(outcomes.items())
              if outcome != "ok"]
    return Verdict("errors", not failed, lines)


def read_backs(checked: int, mismatches: list[str], kept: int, lost: list[str],
               purges_checked: int, not_purged: list[str]) -> Verdict:
    """Every acknowledged write read back, every announced deletion purged."""
    lines = [f"read back right after the write: {checked - len(mismatches)} of {checked}",
             f"kept writes read back at the end: {kept - len(lost)} of {kept}",
             f"volumes announced deleted and purged: {purges_checked - len(not_purged)} "
             f"of {purges_checked}"]
    lines += [f"differs: {what}" for what in mismatches[:10]]
    lines += [f"lost: {what}" for what in lost[:10]]
    lines += [f"not purged: {volume}" for volume in not_purged[:10]]
    return Verdict("writes read back", not (mismatches or lost or not_purged), lines)


def _mean(samples: Iterable[float]) -> float:
    values = list(samples)
    return statistics.fmean(values) if values else 0.0


def flat(samples: list[Sample], window: Window) -> Verdict:
    """Each agent's resources: the last third's mean within bounds of the first's."""
    first = [s for s in samples if _within(s.at, window.first)]
    last = [s for s in samples if _within(s.at, window.last)]
    if not first or not last:
        return Verdict("flat", False, ["too few samples after the warm-up"])
    met = True
    lines = []
    series: list[tuple[str, list[float], list[float], bool]] = []
    for host in first[0].agents:
        for metric in (m for m in METRICS if m in first[0].agents[host]):
            series.append((f"{host} {metric}", [s.agents[host][metric] for s in first],
                           [s.agents[host][metric] for s in last], metric != "rss_kib"))
    if first[0].db_connections is not None:
        series.append(("PostgreSQL connections (both agents)",
                       [s.db_connections or 0 for s in first],
                       [s.db_connections or 0 for s in last], True))
    for name, before, after, counted in series:
        low, high = _mean(before), _mean(after)
        allowed = low * FLAT_RATIO + (1 if counted else 0)
        ok = high <= allowed
        met = met and ok
        change = f"{(high / low - 1) * 100:+.1f} %" if low else "n/a"
        lines.append(f"{name}: first third {low:.1f}, last third {high:.1f} ({change})"
                     f"{'' if ok else '  <- not flat'}")
    return Verdict("resources flat", met, lines)


def queues(samples: list[Sample], window: Window) -> Verdict:
    """No queue holds more in the last third than it did in the first, or than 20."""
    first = [s for s in samples if _within(s.at, window.first)]
    last = [s for s in samples if _within(s.at, window.last)]
    if not first or not last:
        return Verdict("queues", False, ["too few samples after the warm-up"])
    names = sorted({name for s in samples for name in s.queues})
    met = True
    lines = []
    for name in names:
        before = max(s.queues.get(name, 0) for s in first)
        after = max(s.queues.get(name, 0) for s in last)
        ok = after <= max(before, QUEUE_SLACK)
        met = met and ok
        if after or before or not ok:
            lines.append(f"{name}: most in first third {before}, in last third {after}"
                         f"{'' if ok else '  <- growing'}")
    deepest = max((depth for s in samples for depth in s.queues.values()), default=0)
    lines.insert(0, f"{len(names)} queues, at most {deepest} messages in any one at any sample")
    return Verdict("queues", met, lines)


def _at_or_after(samples: list[Sample], at: float) -> Sample | None:
    return next((s for s in samples if s.at >= at), None)


def context(samples: list[Sample], window: Window) -> list[str]:
    """What else moved between the thirds: the machine's load, the agents' CPU per call.

    Latency on a shared machine follows the other work on it; the CPU time
    the agents spend per call does much less, so the two together tell a
    slower agent from a busier machine.
    """
    lines = []
    for name, span in (("first", window.first), ("last", window.last)):
        inside = [s for s in samples if _within(s.at, span)]
        start, end = _at_or_after(samples, span[0]), _at_or_after(samples, span[1])
        if end is None and samples:
            end = samples[-1]
        if not inside or start is None or end is None or end.requests <= start.requests:
            continue
        calls = end.requests - start.requests
        cpu = sum(end.agents[h]["cpu_ms"] - start.agents[h]["cpu_ms"] for h in start.agents)
        lines.append(f"{name} third: machine load {_mean(s.load for s in inside):.1f} "
                     f"(1-minute average, {os.cpu_count()} cores), agents' CPU {cpu / calls:.2f} ms per call")
    return lines


def p99(calls: list[Call], window: Window, samples: list[Sample] | None = None) -> Verdict:
    """Each method's p99 in the last third within 1.5 times the first third's."""
    by_method: dict[str, tuple[list[float], list[float]]] = {}
    for call in calls:
        if not succeeded(call.outcome):
            continue
        first, last = by_method.setdefault(call.method, ([], []))
        if _within(call.at, window.first):
            first.append(call.seconds)
        elif _within(call.at, window.last):
            last.append(call.seconds)
    met = True
    lines = [f"{'method':30} {'n first':>8} {'p99 first':>10} {'n last':>8} "
             f"{'p99 last':>10} {'ratio':>6}"]
    for method in sorted(by_method):
        first, last = by_method[method]
        if not first or not last:
            lines.append(f"{method:30} {len(first):>8} {'':>10} {len(last):>8}  not judged")
            continue
        before, after = percentile(first, 99), percentile(last, 99)
        ratio = after / before
        judged = min(len(first), len(last)) >= P99_MIN_CALLS
        ok = not judged or ratio <= P99_RATIO
        met = met and ok
        note = "" if judged else "  (too few to judge)"
        if not ok:
            note = "  <- slower"
        lines.append(f"{method:30} {len(first):>8} {before * 1000:>8.1f}ms {len(last):>8} "
                     f"{after * 1000:>8.1f}ms {ratio:>6.2f}{note}")
    return Verdict("p99 latency", met, lines + context(samples or [], window))


def log(paths: dict[str, tuple[Path, int]], calls_after_warmup: int) -> Verdict:
    """Log bytes per call after the warm-up, purges' event lines aside; no ERROR line.

    :param paths: host to (log path, its size at the end of the warm-up).
    """
    total = event_bytes = refusal_bytes = 0
    events = refusals = 0
    levels: Counter[str] = Counter()
    shown: list[str] = []
    for path, offset in paths.values():
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()
        total += len(text)
        for line in text.decode(errors="replace").splitlines(keepends=True):
            if EVENT_LINE in line and " INFO " in line:
                events += 1
                event_bytes += len(line.encode())
                continue
            if REFUSAL_LINE in line and " INFO agent.dispatch " in line:
                refusals += 1
                refusal_bytes += len(line.encode())
                continue
            for level in ("WARNING", "ERROR", "CRITICAL"):
                if f" {level} " in line:
                    levels[level] += 1
                    if len(shown) < 5:
                        shown.append(line.strip()[:200])
    other = total - event_bytes - refusal_bytes
    per_call = other / max(1, calls_after_warmup)
    met = per_call <= LOG_BYTES_PER_CALL and not (levels["ERROR"] or levels["CRITICAL"])
    lines = [f"{total} bytes after the warm-up for {calls_after_warmup} calls: "
             f"{events} purge lines ({event_bytes} bytes), {refusals} refused-call lines "
             f"({refusal_bytes} bytes), {other} other bytes: {per_call:.3f} bytes per call",
             "lines by level: " + (", ".join(f"{k} {v}" for k, v in sorted(levels.items()))
                                   or "no WARNING or ERROR")]
    lines += [f"  {line}" for line in shown]
    return Verdict("log", met, lines)
