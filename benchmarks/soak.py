"""A soak run: two agents under a steady, realistic load, judged on staying flat.

One run makes, on the local broker and database servers, what an operator
runs: a RabbitMQ virtual host of its own, a fresh database (SQLite, or
PostgreSQL with ``--database postgresql``) migrated once, and two
``custos-agent`` processes on it with one master key. Around them:

* callers (:mod:`benchmarks.soak_calls`) sending every RPC method in the
  lifecycles cinder-volume, nova-api and castellan users go through,
  with values of several sizes, paced to ``--rate`` calls per second;
* Nova and Cinder announcing the callers' finished instances and volumes
  deleted every ``--event-interval`` seconds, and a telemetry consumer
  draining the agents' notifications (:mod:`benchmarks.soak_events`);
* a sampler of each agent's memory, threads, open files, database
  connections and log, and of the broker's queues
  (:mod:`benchmarks.soak_samples`).

At the end it prints the verdicts of :mod:`benchmarks.soak_verdicts` and
exits 1 when one is not met (2 when the run could not be set up). Run it
through ``./tools/run-soak.sh [options]``; ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import agent.cmd  # noqa: F401, I001  first: silences library notices at their import
import oslo_messaging as messaging
from oslo_config import cfg

from agent import rpc
from benchmarks import broker, processes, report
from benchmarks import soak_verdicts as verdicts
from benchmarks.run import VendordataTarget, database
from benchmarks.soak_calls import (BACKEND, Caller, Deletions, Ledger, NOBODY, Pacer, Recorder,
                                   read_ledger)
from benchmarks.soak_events import DeletionAnnouncer, Telemetry
from benchmarks.soak_samples import DatabaseCounter, Sampler
from rpcapi import CustosAPI
from tests.functional import agentproc

CONF = cfg.CONF
HOSTS = ("soak-agent-1", "soak-agent-2")


def agent_sections(host: str, state: Path, url: str, database_url: str,
                   vendordata: VendordataTarget) -> dict[str, dict[str, Any]]:
    """One agent's configuration, as an operator writes it for two agents on one database."""
    return {
        "DEFAULT": {"host": host, "state_path": str(state), "transport_url": url,
                    "enabled_backends": BACKEND},
        "database": {"connection": database_url},
        "auth": {"strategy": "trusted"},
        BACKEND: {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
                  "target_portal": "192.0.2.10:3260",
                  "target_iqn_prefix": "iqn.2010-10.org.example"},
        "vendordata": {"targets": f"soak@{vendordata.url}"},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run-soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--callers", type=int, default=4, help="calling threads")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="calls per second of all callers together (0: as fast as "
                             "they go)")
    parser.add_argument("--event-interval", type=float, default=10.0,
                        help="seconds between rounds of Nova and Cinder deletions")
    parser.add_argument("--sample-interval", type=float, default=10.0,
                        help="seconds between samples of the agents and queues")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the verdicts at the start "
                             "(default: a tenth of the run, at least 60)")
    parser.add_argument("--rabbit-url", default="rabbit://guest:guest@127.0.0.1:5672/",
                        help="the broker; a virtual host of the run's own is made on it")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.callers < 1 or args.rate < 0:
        parser.error("--minutes and --callers must be positive, --rate not negative")
    return args


def start_agents(hosts: tuple[str, ...], workdir: Path, url: str, database_url: str,
                 vendordata: VendordataTarget, transport: messaging.Transport,
                 stack: contextlib.ExitStack) -> dict[str, processes.ServerProcess]:
    """Migrate the database once, then start one agent per host; return when each answers."""
    state = workdir / "state"
    state.mkdir()
    configs = {host: agentproc.write_config(
        workdir / f"{host}.conf", agent_sections(host, state, url, database_url, vendordata))
        for host in hosts}
    processes.prepare_agent(configs[hosts[0]])
    probe = CustosAPI(transport=transport, timeout=1)
    agents = {}
    for host, config in configs.items():
        agent = processes.ServerProcess(host, [str(processes.BIN / "custos-agent"),
                                               "--config-file", str(config)],
                                        workdir / f"{host}.log")
        stack.callback(agent.stop)
        processes.time_to_first_reply(agent, lambda: probe.health(NOBODY, server=host))
        agents[host] = agent
    return agents


def soak(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> int:
    """Set up, run and judge one soak; return the exit status."""
    # Answers cached for a minute, as with the agent's default cache_ttl:
    # the cache reaches its steady size within the warm-up.
    vendordata = VendordataTarget(max_age=60)
    stack.callback(vendordata.close)
    url = stack.enter_context(broker.private_vhost(args.rabbit_url))
    vhost = url.rsplit("/", 1)[1]
    database_url = stack.enter_context(database(args.database, workdir))
    rpc.register_opts(CONF)
    CONF([], project="custos", default_config_files=[])
    transport = messaging.get_rpc_transport(CONF, url=url,
                                            allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    stack.callback(transport.cleanup)
    notification_transport = messaging.get_notification_transport(CONF, url=url)
    stack.callback(notification_transport.cleanup)
    agents = start_agents(HOSTS, workdir, url, database_url, vendordata, transport, stack)
    telemetry = Telemetry(notification_transport)
    telemetry.start()
    stack.callback(telemetry.stop)

    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else max(60.0, duration / 10)
    started = time.monotonic()
    recorder = Recorder(started)
    ledger = Ledger()
    deletions = Deletions()
    api = CustosAPI(transport=transport, timeout=30)
    announcer = DeletionAnnouncer(url, api, deletions, recorder, args.event_interval)
    stack.callback(announcer.close)
    counter = DatabaseCounter(database_url)
    stack.callback(counter.close)
    sampler = Sampler({host: (agent.pid, agent.log_path) for host, agent in agents.items()},
                      vhost, counter, recorder.count, started, args.sample_interval)
    stop = threading.Event()
    threads = [threading.Thread(target=Caller(api, recorder, ledger, deletions,
                                              Pacer(args.rate, args.callers), seed).run,
                                args=(stop,), name=f"caller-{seed}", daemon=True)
               for seed in range(args.callers)]
    threads += [threading.Thread(target=part.run, args=(stop,), name=name, daemon=True)
                for part, name in ((announcer, "events"), (sampler, "sampler"))]
    for thread in threads:
        thread.start()
    print(f"soak: {args.minutes:g} min on {args.database}, {args.callers} callers at "
          f"{args.rate:g} calls/s, warm-up {warmup:.0f} s; work directory {workdir}",
          file=sys.stderr, flush=True)
    while not stop.wait(min(60.0, max(0.0, started + duration - time.monotonic()))):
        elapsed = time.monotonic() - started
        crashed = [host for host, agent in agents.items() if agent.exited()]
        print(f"soak: {elapsed / 60:.1f} min, {recorder.count()} calls"
              + (f", exited: {', '.join(crashed)}" if crashed else ""),
              file=sys.stderr, flush=True)
        if elapsed >= duration or crashed:
            stop.set()
    end = time.monotonic() - started
    for thread in threads:
        thread.join(60)
    # The last round's purges: give the listeners a moment, then check them.
    time.sleep(min(5.0, args.event_interval))
    announcer.check_purged()
    lost = read_ledger(api, ledger)

    window = verdicts.Window(warmup, end)
    calls = list(recorder.calls)
    after_warmup = [s for s in sampler.samples if s.at >= warmup]
    offsets = {host: (agent.log_path, after_warmup[0].agents[host]["log_bytes"]
                      if after_warmup else 0) for host, agent in agents.items()}
    exited = [f"{host} exited with {agent.process.returncode if agent.process else '?'}"
              for host, agent in agents.items() if agent.exited()]
    results = [
        verdicts.errors(calls, window),
        verdicts.read_backs(recorder.read_backs, recorder.mismatches, ledger.size(), lost,
                            announcer.purges_checked, announcer.not_purged),
        verdicts.flat(sampler.samples, window),
        verdicts.queues(sampler.samples, window),
        verdicts.p99(calls, window, sampler.samples),
        verdicts.log(offsets, sum(1 for call in calls if call.at >= warmup)),
    ]
    if exited or sampler.errors:
        results.insert(0, verdicts.Verdict("agents kept running", False,
                                           exited + sampler.errors[:5]))
    facts = report.machine()
    lines = [
        f"custos soak, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(ended); {facts['cpus']}; {facts['memory']}; Python {facts['python']}",
        f"database {args.database}; RabbitMQ {broker.rabbitmq_version()}; agents "
        f"{', '.join(HOSTS)}; {args.minutes:g} min ({end:.0f} s), warm-up {warmup:.0f} s, "
        f"thirds of {window.third:.0f} s; {len(calls)} calls "
        f"({len(calls) / max(end, 1):.0f}/s) from {args.callers} callers",
        "events announced: " + ", ".join(f"{kind} {n}" for kind, n in
                                          sorted(announcer.announced.items())),
        "notifications drained: " + ", ".join(f"{kind} {n}" for kind, n in
                                               sorted(telemetry.counts.items())),
        f"samples: {len(sampler.samples)} every {args.sample_interval:g} s",
        "",
        *(result.text() for result in results),
        "",
        "all verdicts met" if all(r.met for r in results) else
        "NOT MET: " + ", ".join(r.name for r in results if not r.met),
    ]
    text = "\n".join(lines)
    print(text)
    (workdir / "report.txt").write_text(text + "\n")
    if args.output:
        args.output.write_text(text + "\n")
    # What the verdicts were judged from, to judge again or plot.
    (workdir / "samples.json").write_text(json.dumps({
        "warmup": warmup, "end": end, "samples": [dataclasses.asdict(s) for s in sampler.samples],
        "calls": [dataclasses.astuple(call) for call in calls]}))
    return 0 if all(r.met for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    """Run one soak (see the module docstring); returns its exit status."""
    args = parse_args(argv)
    # Probes sent before an agent listens leave reply queues behind on
    # purpose; oslo.messaging's warnings about them are noise here.
    logging.basicConfig(level=logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="custos-soak-"))
    with contextlib.ExitStack() as stack:
        # Callbacks run last-in first-out: the agents stop before their
        # virtual host and database go away.
        if args.keep:
            stack.callback(print, f"work directory kept: {workdir}", file=sys.stderr)
        else:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        try:
            return soak(args, workdir, stack)
        except (RuntimeError, OSError) as error:
            print(f"soak could not run: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
