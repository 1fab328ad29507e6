"""The figures of SPEC §5, each measured against the no-op baseline.

A figure names the RPC methods it needs. One whose method the agent does
not serve yet is reported as ``not measured: <method> not available``,
never with a number. Latency figures alternate rounds of baseline and
agent calls so that drift on the machine (other load, CPU frequency)
falls on both sides alike.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from benchmarks import concurrency
from benchmarks.stats import Samples
from benchmarks.processes import cpu_seconds, resident_kib
from db import models


@dataclass
class Goal:
    """``ratio <op> limit``, e.g. ``<= 1.3``."""

    op: str
    limit: float

    def met(self, ratio: float) -> bool:
        return {"<=": ratio <= self.limit, ">=": ratio >= self.limit,
                "<": ratio < self.limit}[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


@dataclass
class Result:
    """What one figure measured.

    :ivar value: the ratio (or, for start-up, seconds) compared with the goal;
        None when the figure was not measured.
    :ivar details: absolute figures, as ``(label, text)`` lines.
    :ivar note: why the figure was not measured, if it was not.
    """

    key: str
    title: str
    goal: Goal | None
    value: float | None = None
    unit: str = "x"
    details: list[tuple[str, str]] = field(default_factory=list)
    note: str | None = None
    #: Calls that failed while measuring; any makes the figure missed.
    failures: int = 0

    @property
    def met(self) -> bool | None:
        if self.failures:
            return False
        if self.goal is None or self.value is None:
            return None
        return self.goal.met(self.value)

    def verdict(self) -> str:
        if self.note:
            return self.note
        if self.goal is None:
            return "reference"
        return "met" if self.met else "MISSED"


class NotAvailable(Exception):
    """A method the figure needs is not served by this agent."""

    def __init__(self, method: str) -> None:
        super().__init__(f"not measured: {method} not available")


@dataclass
class Figure:
    """One line of SPEC §5."""

    key: str
    title: str
    goal: Goal | None
    requires: tuple[str, ...]
    measure: Callable[[Any, "Result"], None]
    unit: str = "x"

    def run(self, bench: Any) -> Result:
        """Measure this figure on ``bench`` (a :class:`benchmarks.run.Bench`)."""
        result = Result(self.key, self.title, self.goal, unit=self.unit)
        try:
            for method in self.requires:
                bench.require(method)
            self.measure(bench, result)
        except NotAvailable as missing:
            result.value = None
            result.note = str(missing)
        except Exception as error:  # noqa: BLE001 - the other figures of the run still count
            # A run takes many minutes; one figure that cannot be measured
            # is reported as failed rather than losing every other one.
            result.value = None
            result.failures += 1
            result.note = f"FAILED: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        return result


def interleaved(bench: Any, agent_op: Callable[[], object],
                baseline_op: Callable[[], object] | None = None) -> tuple[Samples, Samples]:
    """Time ``agent_op`` and the no-op call in alternating rounds.

    :returns: (baseline samples, agent samples).
    """
    baseline_op = baseline_op or bench.noop_call
    for _ in range(bench.warmup):
        baseline_op()
        agent_op()
    baseline, agent = Samples(), Samples()
    per_round = max(1, bench.requests // bench.rounds)
    for _ in range(bench.rounds):
        before = cpu_seconds(bench.noop.pid)
        for _ in range(per_round):
            baseline.time(baseline_op)
        baseline.cpu_s += cpu_seconds(bench.noop.pid) - before
        before = cpu_seconds(bench.agent.pid)
        for _ in range(per_round):
            agent.time(agent_op)
        agent.cpu_s += cpu_seconds(bench.agent.pid) - before
    return baseline, agent


def _agent_seconds(bench: Any, method: str) -> tuple[float, float]:
    """The agent's own count and sum of seconds for ``method`` (its metrics)."""
    text = _metrics_text(bench)
    label = f'{{method="{method}"}}'
    return (_sample(text, f"custos_rpc_request_seconds_count{label}"),
            _sample(text, f"custos_rpc_request_seconds_sum{label}"))


def _latency(bench: Any, result: Result, agent_op: Callable[[], object], label: str,
             method: str | None = None) -> None:
    before = _agent_seconds(bench, method) if method and bench.metrics_url else None
    baseline, agent = interleaved(bench, agent_op)
    result.value = agent.p50 / baseline.p50
    result.details = [(label, agent.describe_ms()), ("no-op call", baseline.describe_ms()),
                      ("server CPU per call", f"{label} {agent.cpu_ms_per_call():.2f} ms, "
                                              f"no-op {baseline.cpu_ms_per_call():.2f} ms")]
    if before is not None and method:
        count, seconds = (now - then for now, then in zip(_agent_seconds(bench, method), before))
        if count:
            result.details.append((
                "inside the agent's dispatch boundary",
                f"mean {seconds / count * 1000:.3f} ms per call (its own metrics, "
                f"checks, transaction and handler)"))


# -- the figures ------------------------------------------------------------

def measure_startup(bench: Any, result: Result) -> None:
    result.value = bench.agent_startup_s
    result.details = [(name, f"{seconds:.3f} s from exec to first reply "
                             f"(median of {bench.starts} starts)")
                      for name, seconds in (("custos-agent", bench.agent_startup_s),
                                            ("no-op server", bench.noop_startup_s))]


def measure_startup_ratio(bench: Any, result: Result) -> None:
    result.value = bench.agent_startup_s / bench.noop_startup_s
    result.details = [("custos-agent", f"{bench.agent_startup_s:.3f} s"),
                      ("no-op server", f"{bench.noop_startup_s:.3f} s")]


def measure_baseline(bench: Any, result: Result) -> None:
    calls = Samples()
    for _ in range(bench.warmup):
        bench.noop_call()
    for _ in range(bench.requests):
        calls.time(bench.noop_call)
    rounds = [noop_cast_round(bench) for _ in range(bench.rounds)]
    result.details = [("no-op call", calls.describe_ms()),
                      ("no-op cast", _throughput_text(rounds, bench.casts))]


def measure_health(bench: Any, result: Result) -> None:
    _latency(bench, result, lambda: bench.call(bench.nobody, "health"), "health", "health")


def measure_initialize_connection(bench: Any, result: Result) -> None:
    connector = {"initiator": "iqn.1993-08.org.debian:01:benchmark", "host": "bench-host"}
    volumes = [{"id": str(uuid.uuid4())} for _ in range(50)]
    counter = iter(range(10**9))

    def op() -> object:
        volume = volumes[next(counter) % len(volumes)]
        return bench.call(bench.service, "initialize_connection", volume=volume,
                          connector=connector, backend=bench.backend)

    _latency(bench, result, op, "initialize_connection", "initialize_connection")


def measure_secret_get_value(bench: Any, result: Result) -> None:
    secret = bench.call(bench.operator, "secret_generate", usage_type="ceph",
                        usage_id=f"bench-value-{uuid.uuid4().hex[:8]}")
    _latency(bench, result, lambda: bench.call(bench.operator, "secret_get_value", uuid=secret),
             "secret_get_value", "secret_get_value")


def measure_vendordata_cached(bench: Any, result: Result) -> None:
    instance = bench.instance()
    first = bench.call(bench.service, "vendordata_get", instance=instance)
    if bench.vendordata_name not in (first or {}):
        raise RuntimeError(f"vendordata_get did not return the benchmark target: {first!r}")
    before = bench.vendordata_hits()
    _latency(bench, result, lambda: bench.call(bench.service, "vendordata_get",
                                               instance=instance), "vendordata_get (cached)",
             "vendordata_get")
    result.details.append(("target requests during the run",
                           str(bench.vendordata_hits() - before)))


def noop_cast_round(bench: Any) -> float:
    """Cast ``bench.casts`` no-op casts; seconds until the server counted all."""
    before = bench.noop_client.call(bench.service, "count")
    started = time.perf_counter()
    for _ in range(bench.casts):
        bench.noop_client.cast(bench.service, "noop_cast")
    while bench.noop_client.call(bench.service, "count") < before + bench.casts:
        time.sleep(0.002)
    return time.perf_counter() - started


def _boot_roles_rows() -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(models.InstanceSystemMetadata)


def agent_cast_round(bench: Any, rows_per_instance: int) -> float:
    """Cast ``instance_boot_roles_set`` for fresh instances; seconds until all committed."""
    with bench.engine.connect() as conn:
        before = conn.scalar(_boot_roles_rows())
    instances = [str(uuid.uuid4()) for _ in range(bench.casts)]
    started = time.perf_counter()
    for instance in instances:
        bench.api._cast(bench.service, "instance_boot_roles_set", instance_uuid=instance,
                        roles=["member", "reader"])
    target = before + rows_per_instance * bench.casts
    while True:
        with bench.engine.connect() as conn:
            if conn.scalar(_boot_roles_rows()) >= target:
                break
        time.sleep(0.002)
    return time.perf_counter() - started


def _throughput_text(durations: list[float], casts: int) -> str:
    rates = sorted(casts / d for d in durations)
    return (f"median {rates[len(rates) // 2]:.0f} casts/s, slowest round {rates[0]:.0f} "
            f"casts/s ({len(durations)} rounds of {casts})")


def measure_boot_roles_throughput(bench: Any, result: Result) -> None:
    with bench.engine.connect() as conn:
        before = conn.scalar(_boot_roles_rows())
    bench.api._cast(bench.service, "instance_boot_roles_set", wait=True,
                    instance_uuid=str(uuid.uuid4()), roles=["member"])
    with bench.engine.connect() as conn:
        rows_per_instance = conn.scalar(_boot_roles_rows()) - before
    if rows_per_instance < 1:
        raise RuntimeError("instance_boot_roles_set stored no row")
    baseline: list[float] = []
    agent: list[float] = []
    cpu = {"noop": 0.0, "agent": 0.0}
    for _ in range(bench.rounds):
        before = cpu_seconds(bench.noop.pid)
        baseline.append(noop_cast_round(bench))
        cpu["noop"] += cpu_seconds(bench.noop.pid) - before
        before = cpu_seconds(bench.agent.pid)
        agent.append(agent_cast_round(bench, rows_per_instance))
        cpu["agent"] += cpu_seconds(bench.agent.pid) - before
    baseline_rate = bench.casts * len(baseline) / sum(baseline)
    agent_rate = bench.casts * len(agent) / sum(agent)
    result.value = agent_rate / baseline_rate
    result.details = [("instance_boot_roles_set cast", _throughput_text(agent, bench.casts)),
                      ("no-op cast", _throughput_text(baseline, bench.casts)),
                      ("server CPU per cast", "agent {:.2f} ms, no-op {:.2f} ms".format(
                          *(cpu[k] * 1000 / (bench.casts * bench.rounds)
                            for k in ("agent", "noop"))))]


def measure_cli_health(bench: Any, result: Result) -> None:
    """Wall time of ``custos health`` as an operator runs it, median of five."""
    from benchmarks.processes import BIN

    command = [str(BIN / "custos"), "--config-file", str(bench.config), "health"]
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        times.append(time.perf_counter() - started)
    result.value = statistics.median(times)
    result.details = [("custos health",
                       f"median {result.value:.3f} s, slowest {max(times):.3f} s (5 runs)")]


def _metrics_text(bench: Any) -> str:
    """What the agent's metrics endpoint serves now."""
    import urllib.request

    with urllib.request.urlopen(f"{bench.metrics_url}", timeout=10) as reply:
        return str(reply.read().decode())


def _sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in a metrics page; 0 when absent."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _keystone_validations(bench: Any) -> float:
    """How many token validations the agent has asked Keystone for (its metrics)."""
    return _sample(_metrics_text(bench), "custos_keystone_request_seconds_count")


def measure_first_token(bench: Any, result: Result) -> None:
    """A token the agent has not seen before: Keystone round trips and time it costs.

    Fresh member tokens are issued before the timed part. Each is sent once,
    with ``secret_get_value``, between two calls with the member's cached
    token; the agent's own count of validations (``[metrics]``) tells how
    many times it asked Keystone. The same service user then asks Keystone
    directly about other fresh tokens, so that the extra latency of a
    first-seen token can be set against one round trip.
    """
    if bench.keystone is None:
        result.note = "not measured: the run believes claimed contexts (--auth trusted)"
        return
    bench.require("secret_get_value")
    secret = bench.call(bench.operator, "secret_generate", usage_type="ceph",
                        usage_id=f"bench-first-token-{uuid.uuid4().hex[:8]}")
    count = bench.first_tokens
    fresh = [bench.keystone.token("alice", "p1") for _ in range(count)]
    others = [bench.keystone.token("alice", "p1") for _ in range(count)]
    from agent.context import RequestContext

    def read(ctxt: Any) -> None:
        bench.call(ctxt, "secret_get_value", uuid=secret)

    for _ in range(bench.warmup // 4):
        read(bench.operator)
    first, cached = Samples(), Samples()
    before = _keystone_validations(bench)
    for token in fresh:
        cached.time(lambda: read(bench.operator))
        first.time(lambda: read(RequestContext(auth_token=token, overwrite=False)))
        cached.time(lambda: read(bench.operator))
    asked = _keystone_validations(bench) - before
    session = bench.keystone.session("custos", "service")
    direct = Samples()
    for token in others:
        direct.time(lambda: session.get(f"{bench.keystone.url}/auth/tokens",
                                        headers={"X-Subject-Token": token},
                                        params={"allow_expired": 1}))
    result.value = asked / count
    extra = first.p50 - cached.p50
    result.details = [
        ("Keystone validations", f"{asked:.0f} for {count} first-seen tokens"),
        ("secret_get_value with a first-seen token", first.describe_ms()),
        ("secret_get_value with a cached token", cached.describe_ms()),
        ("one validation asked of Keystone directly", direct.describe_ms()),
        ("first-seen p50 - cached p50", f"{extra * 1000:.3f} ms, "
                                        f"{extra / direct.p50:.2f} direct validations")]


def _scale_script(bench: Any, result: Result, module: str, *args: str) -> None:
    """Run a table-size benchmark of this package and take its figures.

    Those scripts put two agents side by side, one over the small table
    and one over the large, and alternate calls between them; their lines
    with ``p50`` are the details, their ``ratio`` line the value.

    :raises RuntimeError: when the script fails or prints no ratio.
    """
    command = [sys.executable, "-m", module, "--calls", str(bench.requests),
               "--rabbit-url", bench.rabbit_url, *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    ratio = re.search(r"^ratio .*?:\s*([0-9.]+)\s*\(goal", run.stdout, re.M)
    if run.returncode != 0 or ratio is None:
        raise RuntimeError(f"{module} failed ({run.returncode}):\n{run.stdout}\n"
                           f"{run.stderr[-2000:]}")
    result.value = float(ratio.group(1))
    result.details = [("measured by", f"python -m {module} {' '.join(command[3:])}")]
    result.details += [(line.split(":")[0].strip(), line.split(":", 1)[1].strip())
                       for line in run.stdout.splitlines() if " p50 " in f" {line}"
                       and not line.startswith("ratio")]


def measure_secret_lookup_scale(bench: Any, result: Result) -> None:
    _scale_script(bench, result, "benchmarks.secret_lookup_scale")


def measure_initiator_data_scale(bench: Any, result: Result) -> None:
    _scale_script(bench, result, "benchmarks.initiator_data_scale", "--database",
                  bench.database)


def measure_memory(bench: Any, result: Result) -> None:
    operations = bench.request_mix()
    half = bench.memory_requests // 2
    lock = threading.Lock()
    counter = [0]

    def one(_: int) -> None:
        with lock:
            counter[0] += 1
            index = counter[0]
        operations[index % len(operations)][1]()

    with ThreadPoolExecutor(max_workers=bench.memory_threads) as pool:
        list(pool.map(one, range(half)))
        at_half = resident_kib(bench.agent.pid)
        list(pool.map(one, range(half)))
        at_full = resident_kib(bench.agent.pid)
    result.value = at_full / at_half
    mix = ", ".join(name for name, _ in operations)
    result.details = [(f"RSS after {bench.memory_requests:,} requests", f"{at_full / 1024:.1f} MiB"),
                      (f"RSS after {half:,} requests", f"{at_half / 1024:.1f} MiB"),
                      ("request mix", mix)]


FIGURES: list[Figure] = [
    Figure("startup", "start of custos-agent to its first reply", Goal("<", 1.0),
           (), measure_startup, unit="s"),
    # SPEC 1.2 retired the ratio's goal; it stays as a reference.
    Figure("startup_ratio", "start of custos-agent to its first reply / the no-op server's "
           "(reference)", None, (), measure_startup_ratio),
    Figure("baseline", "no-op oslo.messaging server (the baseline)", None, (), measure_baseline),
    Figure("health", "health p50 / no-op call p50 (reference: the dispatch boundary alone)",
           None, ("health",), measure_health),
    Figure("initialize_connection", "initialize_connection p50 / no-op call p50",
           Goal("<=", 1.3), ("initialize_connection",), measure_initialize_connection),
    Figure("secret_get_value", "secret_get_value p50 / no-op call p50", Goal("<=", 1.2),
           ("secret_generate", "secret_get_value"), measure_secret_get_value),
    Figure("vendordata_get", "vendordata_get cached p50 / no-op call p50", Goal("<=", 1.2),
           ("vendordata_get",), measure_vendordata_cached),
    Figure("instance_boot_roles_set",
           "instance_boot_roles_set cast throughput / no-op cast throughput",
           Goal(">=", 0.8), ("instance_boot_roles_set",), measure_boot_roles_throughput),
    Figure("first_token", "Keystone validations per token seen for the first time",
           Goal("<=", 1.0), ("secret_get_value", "secret_generate"), measure_first_token),
    Figure("callers", "8 callers for 30 s: worst method's p99 / its p50 with one caller "
           "(no call may fail)", Goal("<=", 10.0),
           ("initialize_connection", "terminate_connection", "secret_get_value",
            "secret_set_value", "instance_boot_roles_set", "vendordata_get"),
           concurrency.measure),
    Figure("cli_health", "custos health from the CLI, wall time", Goal("<", 1.0),
           ("health",), measure_cli_health, unit="s"),
    Figure("memory", "agent resident memory after 20,000 requests / after 10,000",
           Goal("<=", 1.05), ("health",), measure_memory),
    Figure("secret_lookup_by_usage", "secret_lookup_by_usage p50 at 100,000 rows / at 100 rows",
           Goal("<=", 1.2), ("secret_lookup_by_usage",), measure_secret_lookup_scale),
    Figure("initiator_data_get", "initiator_data_get p50 at 100,000 rows / at 100 rows",
           Goal("<=", 1.2), ("initiator_data_get",), measure_initiator_data_scale),
]
