"""Measure custos-agent against a no-op oslo.messaging server (SPEC §5).

One run, one broker: a fresh RabbitMQ virtual host holds both the no-op
baseline (:mod:`benchmarks.noop_server`) and a real ``custos-agent``
started from its console script on SQLite (or a fresh PostgreSQL database
with ``--database postgresql``). The agent validates every token with a
real Keystone of the run's own (``[auth] strategy = keystone``, the
default; ``--auth trusted`` believes claimed contexts instead): the callers
send a member's, an administrator's and a service's tokens, each validated
once before the timed requests, as a serving agent has them in its cache.
The no-op server validates nothing. Each figure is printed with p50, p99 and
the absolute numbers, as a ratio against the baseline where SPEC §5 asks
for one, and the table is written into ``docs/benchmarks.rst``.

Run it through ``./tools/run-benchmarks.sh [options]``; ``--help`` lists
the options.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.server
import json
import logging
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import agent.cmd  # noqa: F401, I001  first: silences library notices at their import
import oslo_messaging as messaging
import sqlalchemy as sa
from oslo_config import cfg

from agent import exception, rpc
from agent.context import RequestContext, RequestContextSerializer
from benchmarks import broker, figures, processes, report
from rpcapi import CustosAPI
from tests.functional import agentproc
from tests.functional.private_services import free_port

CONF = cfg.CONF
REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = "5b1d3c0e8f6a4b2c9d7e1f3a5b7c9d0e"
BACKEND = "lvm-1"
VENDORDATA_NAME = "bench"


class VendordataTarget:
    """A local vendordata service: answers every POST with a small JSON object.

    :param max_age: seconds its answers may be cached (``Cache-Control``).
    """

    def __init__(self, max_age: int = 3600) -> None:
        self.hits = 0
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                target.hits += 1
                body = json.dumps({"benchmark": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", f"max-age={max_age}")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Bench:
    """Everything a figure measures with: clients, contexts, settings."""

    def __init__(self, args: argparse.Namespace, transport: messaging.Transport,
                 agent: processes.ServerProcess, noop: processes.ServerProcess,
                 database_url: str, vendordata: VendordataTarget, config: Path,
                 callers: tuple[RequestContext, RequestContext, RequestContext],
                 keystone: Any = None, metrics_url: str = "") -> None:
        self.requests: int = args.requests
        self.rounds: int = args.rounds
        self.warmup: int = args.warmup
        self.casts: int = args.casts
        self.starts: int = args.starts
        self.memory_requests: int = args.memory_requests
        self.memory_threads: int = args.memory_threads
        self.callers: int = args.callers
        self.callers_seconds: float = args.callers_seconds
        self.callers_pause: float = args.callers_pause
        self.first_tokens: int = args.first_tokens
        #: The Keystone validating the agent's tokens; None with ``--auth trusted``.
        self.keystone = keystone
        #: Where the agent serves its metrics.
        self.metrics_url = metrics_url
        self.scale_small: int = args.scale_small
        self.scale_large: int = args.scale_large
        self.backend = BACKEND
        self.rabbit_url: str = args.rabbit_url
        self.database: str = args.database
        self.agent = agent
        self.noop = noop
        self.agent_startup_s = 0.0
        self.noop_startup_s = 0.0
        self.api = CustosAPI(transport=transport, timeout=60)
        self.noop_client = messaging.get_rpc_client(
            transport, messaging.Target(topic=processes.NOOP_TOPIC, version="1.0"),
            timeout=60, serializer=RequestContextSerializer())
        self.engine = sa.create_engine(database_url)
        self.operator, self.admin, self.service = callers
        self.nobody = _context([], [])
        self.vendordata = vendordata
        self.vendordata_name = VENDORDATA_NAME
        self._available: dict[str, bool] = {}
        #: The agent's configuration file, which the ``custos`` CLI reads too.
        self.config = config

    def call(self, ctxt: RequestContext, method: str, **kwargs: Any) -> Any:
        """Call ``method`` on the agent as callers do (no ``server=``)."""
        return self.api._call(ctxt, method, **kwargs)

    def noop_call(self) -> None:
        """One call of the baseline, with the same context as agent calls."""
        self.noop_client.call(self.operator, "noop")

    def require(self, method: str) -> None:
        """Check that the agent serves ``method``.

        A call without arguments reaches the dispatch boundary, which
        answers a served method with its own error (missing argument,
        policy) and any other name with ``UnknownMethod``.

        :raises NotAvailable: when the agent does not serve it.
        """
        if method not in self._available:
            try:
                self.call(self.nobody, method)
                self._available[method] = True
            except exception.UnknownMethod:
                self._available[method] = False
            except exception.CustosException:
                self._available[method] = True
        if not self._available[method]:
            raise figures.NotAvailable(method)

    def available(self, method: str) -> bool:
        try:
            self.require(method)
            return True
        except figures.NotAvailable:
            return False

    def instance(self) -> dict[str, Any]:
        """An instance as nova-api describes it to vendordata_get."""
        return {"uuid": str(uuid.uuid4()), "project_id": PROJECT, "image_id": str(uuid.uuid4()),
                "hostname": "bench-vm", "user_data": None, "metadata": {}}

    def vendordata_hits(self) -> int:
        return self.vendordata.hits

    def request_mix(self) -> list[tuple[str, Callable[[], object]]]:
        """The requests the memory figure repeats: every measured method the agent serves."""
        mix: list[tuple[str, Callable[[], object]]] = [
            ("health", lambda: self.call(self.nobody, "health"))]
        if self.available("secret_generate") and self.available("secret_get_value"):
            secret = self.call(self.operator, "secret_generate", usage_type="ceph",
                               usage_id=f"bench-memory-{uuid.uuid4().hex[:8]}")
            mix.append(("secret_get_value",
                        lambda: self.call(self.operator, "secret_get_value", uuid=secret)))
        if self.available("initialize_connection"):
            connector = {"initiator": "iqn.1993-08.org.debian:01:memory", "host": "bench"}
            mix.append(("initialize_connection", lambda: self.call(
                self.service, "initialize_connection", volume={"id": str(uuid.uuid4())},
                connector=connector, backend=BACKEND)))
        if self.available("vendordata_get"):
            instance = self.instance()
            mix.append(("vendordata_get",
                        lambda: self.call(self.service, "vendordata_get", instance=instance)))
        if self.available("secret_list"):
            mix.append(("secret_list", lambda: self.call(self.operator, "secret_list")))
        return mix


def _context(roles: list[str], service_roles: list[str]) -> RequestContext:
    return RequestContext(project_id=PROJECT, user_id="bench-user", roles=roles,
                          service_roles=service_roles, overwrite=False)


def callers(keystone: Any) -> tuple[RequestContext, RequestContext, RequestContext]:
    """The operator, administrator and service contexts the figures call with.

    With a Keystone, each carries a real token (a member of ``p1``, the
    administrator of ``p1``, the ``nova`` service user); without one, the
    claimed roles of a trusted agent.
    """
    if keystone is None:
        return _context(["member"], []), _context(["admin"], []), _context([], ["service"])
    return (RequestContext(auth_token=keystone.token("alice", "p1"), overwrite=False),
            RequestContext(auth_token=keystone.token("dave", "p1"), overwrite=False),
            RequestContext(service_token=keystone.token("nova", "service"), overwrite=False))


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind``, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'state' / 'custos.sqlite'}"
        return
    import psycopg2

    name = f"custos_bench_{uuid.uuid4().hex[:12]}"
    admin = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        conn = psycopg2.connect(**admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def agent_config(workdir: Path, url: str, exchange: str, database_url: str,
                 vendordata: VendordataTarget, keystone: Any = None,
                 metrics_port: int = 0) -> Path:
    """Write the benchmark agent's configuration file.

    :param keystone: the Keystone that validates tokens; None for a
        trusted agent.
    :param metrics_port: where the agent serves its metrics on 127.0.0.1
        (0: it serves none).
    """
    sections: dict[str, dict[str, Any]] = {
        "DEFAULT": {"host": "bench-agent", "state_path": str(workdir / "state"),
                    "transport_url": url, "control_exchange": exchange,
                    "enabled_backends": BACKEND},
        "database": {"connection": database_url},
        BACKEND: {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
                  "target_portal": "192.0.2.10:3260",
                  "target_iqn_prefix": "iqn.2010-10.org.example"},
        "vendordata": {"targets": f"{VENDORDATA_NAME}@{vendordata.url}", "cache_ttl": 3600},
        "auth": {"strategy": "trusted" if keystone is None else "keystone"},
    }
    if keystone is not None:
        sections["keystone_authtoken"] = keystone.agent_options()
    if metrics_port:
        sections["metrics"] = {"bind": f"127.0.0.1:{metrics_port}"}
    (workdir / "state").mkdir(exist_ok=True)
    return agentproc.write_config(workdir / "custos-bench.conf", sections)


@contextlib.contextmanager
def profiled(pids: dict[str, int], directory: Path | None, name: str) -> Iterator[None]:
    """Sample each named process with py-spy while the block runs (when ``directory`` is set).

    Only the thread holding the GIL is sampled (``--gil``), so the samples
    follow the Python work rather than the idle executor threads waiting
    for it. It is a sampling of wall time, not a CPU clock: compare the two
    servers' shares, and use the CPU per call the figures print for totals.
    Each process gets ``DIR/<figure>.<process name>.txt``.
    """
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    recorders = [subprocess.Popen([spy, "record", "--gil", "-p", str(pid), "-r", "200", "-f", "raw",
                                   "-o", str(directory / f"{name}.{label}.txt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for label, pid in pids.items()]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(60)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run-benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--rabbit-url", default="rabbit://guest:guest@127.0.0.1:5672/",
                        help="the broker; a virtual host of the run's own is made on it")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--auth", choices=["keystone", "trusted"], default="keystone",
                        help="keystone: tokens validated by a real Keystone of the run's own "
                             "(the default); trusted: claimed contexts believed")
    parser.add_argument("--requests", type=int, default=2000,
                        help="timed requests per side of each latency figure")
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternating baseline/agent rounds the requests are split into")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first")
    parser.add_argument("--casts", type=int, default=1000, help="casts per throughput round")
    parser.add_argument("--starts", type=int, default=5,
                        help="starts of each server; the start-up figures are their medians")
    parser.add_argument("--memory-requests", type=int, default=20_000)
    parser.add_argument("--memory-threads", type=int, default=8)
    parser.add_argument("--callers", type=int, default=8,
                        help="callers at once in the concurrency figure")
    parser.add_argument("--callers-seconds", type=float, default=30.0,
                        help="how long the callers of the concurrency figure call")
    parser.add_argument("--callers-pause", type=float, default=0.1,
                        help="mean pause in seconds between one caller's calls "
                             "(0: back to back)")
    parser.add_argument("--first-tokens", type=int, default=30,
                        help="fresh tokens sent once each for the first-seen token figure")
    parser.add_argument("--scale-small", type=int, default=100)
    parser.add_argument("--scale-large", type=int, default=100_000)
    parser.add_argument("--only", default="", help="comma-separated figure keys: "
                        + ", ".join(f.key for f in figures.FIGURES))
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.rst",
                        help="documentation file to write the table into")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record the agent and the no-op server with py-spy during "
                             "each figure, as collapsed stacks in DIR/<figure>.<server>.txt")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 when every measured goal is met, else 1."""
    args = parse_args(argv)
    # Probes sent before a server listens leave reply queues behind on
    # purpose; oslo.messaging's warnings about them are noise here.
    logging.basicConfig(level=logging.ERROR)
    selected = [f for f in figures.FIGURES
                if not args.only or f.key in args.only.split(",")
                or f.key in ("startup", "startup_ratio")]
    workdir = Path(tempfile.mkdtemp(prefix="custos-bench-"))
    exchange = "custos-bench"
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_before = report.load_average()
    with contextlib.ExitStack() as stack:
        # Callbacks run last-in first-out: the servers stop before their
        # virtual host and database go away.
        if args.keep:
            stack.callback(print, f"work directory kept: {workdir}", file=sys.stderr)
        else:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        vendordata = VendordataTarget()
        stack.callback(vendordata.close)
        keystone = None
        if args.auth == "keystone":
            from tests.functional.keystone import start_keystone

            keystone = start_keystone()
            stack.callback(keystone.remove)
        url = stack.enter_context(broker.private_vhost(args.rabbit_url))
        database_url = stack.enter_context(database(args.database, workdir))
        rpc.register_opts(CONF)
        CONF([], project="custos", default_config_files=[])
        CONF.set_override("control_exchange", exchange)
        transport = messaging.get_rpc_transport(CONF, url=url,
                                                allowed_remote_exmods=rpc.ALLOWED_EXMODS)
        stack.callback(transport.cleanup)
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        config = agent_config(workdir, url, exchange, database_url, vendordata, keystone,
                              metrics_port)
        probe_ctx = _context([], [])
        noop_probe = messaging.get_rpc_client(
            transport, messaging.Target(topic=processes.NOOP_TOPIC, version="1.0"),
            timeout=1, serializer=RequestContextSerializer())
        agent_probe = CustosAPI(transport=transport, timeout=1)
        processes.prepare_agent(config)
        # One start is one sample of a figure that moves by a third from
        # start to start on a busy machine: the two servers are started in
        # turn, and the median of each is kept. The last two stay up for
        # the other figures.
        noop_starts: list[float] = []
        agent_starts: list[float] = []
        for attempt in range(args.starts):
            noop = processes.noop_server(url, exchange, workdir)
            stack.callback(noop.stop)
            noop_starts.append(processes.time_to_first_reply(
                noop, lambda: noop_probe.call(probe_ctx, "noop")))
            agent = processes.custos_agent(config, workdir)
            stack.callback(agent.stop)
            agent_starts.append(processes.time_to_first_reply(
                agent, lambda: agent_probe.health(probe_ctx)))
            if attempt < args.starts - 1:
                noop.stop()
                agent.stop()
        noop_startup = statistics.median(noop_starts)
        agent_startup = statistics.median(agent_starts)

        bench = Bench(args, transport, agent, noop, database_url, vendordata, config,
                      callers(keystone), keystone, metrics_url)
        stack.callback(bench.engine.dispose)
        bench.agent_startup_s, bench.noop_startup_s = agent_startup, noop_startup
        results = []
        for figure in selected:
            print(f"measuring: {figure.title}", file=sys.stderr, flush=True)
            with profiled({"agent": agent.pid, "noop": noop.pid}, args.profile, figure.key):
                results.append(figure.run(bench))

    facts = report.machine()
    # Other work on the host weighs on every figure: say how much there was.
    facts["load"] = f"load average (1, 5, 15 min): {load_before} at start, " \
                    f"{report.load_average()} at end"
    facts["setup"] = (f"database: {args.database}; identity: {args.auth}; RabbitMQ {broker.rabbitmq_version()} on "
                      f"{args.rabbit_url.split('@')[-1]}; {args.requests} timed requests per side "
                      f"in {args.rounds} alternating rounds after {args.warmup} warm-up requests")
    print(f"custos benchmark, {started_at:%Y-%m-%d %H:%M} UTC; {facts['cpus']}; "
          f"{facts['memory']}; Python {facts['python']}; {facts['libraries']}")
    print(facts["setup"])
    print(facts["load"])
    print(report.text_table(results))
    if not args.no_write:
        command = "./tools/run-benchmarks.sh" + (" " + " ".join(argv) if argv else "")
        report.write_rst(args.output, report.rst_section(results, facts, command, started_at,
                                                         args.database), args.database)
        print(f"written to {args.output}")
    return 0 if all(r.met is not False for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
