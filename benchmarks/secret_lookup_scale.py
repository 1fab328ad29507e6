"""How ``secret_lookup_by_usage`` scales: 100 secrets against 100,000.

Starts two real ``custos-agent`` processes on RabbitMQ (an exchange of
their own), each over a fresh database whose ``secrets`` table is filled
with realistic rows (values sealed under that agent's master key, usage
and project set) inserted directly through SQLAlchemy: one with 100
secrets, one with 100,000. Lookups of random usages then alternate
between the two agents over the bus::

    .venv/bin/python -m benchmarks.secret_lookup_scale [--calls 2000]
        [--database-url SMALL_URL --database-url LARGE_URL] [--rabbit-url URL]

It prints p50 and p99 (milliseconds) at each size and the ratio of the
p50s; SPEC §5's goal is at most 1.2.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import time
import uuid as uuid_lib
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import sqlalchemy as sa
from oslo_config import cfg

import agent.cmd  # noqa: F401  library deprecation notices off
import agent.conf  # noqa: F401  registers custos options
from agent import log as agent_log
from agent import rpc
from agent.keystore import envelope, masterkey
from db import models
from rpcapi import CustosAPI
from tests.common import member, nobody, PROJECT
from tests.functional.agentproc import AgentProcess

CONF = cfg.CONF
SIZES = (100, 100_000)
BATCH = 5_000


def _rows(ring: masterkey.MasterKeyRing, start: int, stop: int) -> list[dict[str, Any]]:
    rows = []
    for index in range(start, stop):
        secret_uuid = str(uuid_lib.uuid4())
        sealed = envelope.seal(ring, "secret", secret_uuid, secrets.token_bytes(32))
        rows.append({"uuid": secret_uuid, "project_id": PROJECT, "usage_type": "ceph",
                     "usage_id": f"client.bench-{index}", "description": None,
                     "private": False, "generated": True, "value": sealed.ciphertext,
                     "wrapped_key": sealed.wrapped_key,
                     "master_key_id": sealed.master_key_id,
                     "created_at": models.utcnow()})
    return rows


def fill(engine: sa.engine.Engine, ring: masterkey.MasterKeyRing, have: int, want: int) -> None:
    """Insert secrets ``have`` .. ``want - 1`` in batches."""
    for start in range(have, want, BATCH):
        with engine.begin() as conn:
            conn.execute(sa.insert(models.Secret), _rows(ring, start, min(start + BATCH, want)))


def measure(api: CustosAPI, sizes: dict[str, int], calls: int) -> dict[str, list[float]]:
    """Time lookups of random usages on each agent, alternating between them.

    Alternating call by call means a change in the machine's load (other
    work on a shared host) weighs on both sizes alike.

    :param sizes: agent host -> how many secrets its database holds.
    :returns: agent host -> sorted timings in milliseconds.
    """
    ctxt = member()
    timings: dict[str, list[float]] = {host: [] for host in sizes}
    for round_ in range(200 + calls):
        for host, size in sizes.items():
            usage_id = f"client.bench-{random.randrange(size)}"
            started = time.perf_counter()
            api.secret_lookup_by_usage(ctxt, "ceph", usage_id, server=host)
            if round_ >= 200:  # the first rounds warm connections and caches up
                timings[host].append((time.perf_counter() - started) * 1000)
    return {host: sorted(values) for host, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--database-url", action="append", default=[],
                        help="two empty databases (small, large); default: SQLite files")
    parser.add_argument("--rabbit-url", default="rabbit://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()

    exchange = f"custos-bench-{uuid_lib.uuid4().hex[:12]}"
    agent_log.register_options(CONF)
    rpc.register_opts(CONF)
    CONF([], project="custos", default_config_files=[])
    CONF.set_override("control_exchange", exchange)
    transport = messaging.get_rpc_transport(CONF, url=args.rabbit_url,
                                            allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    procs: list[AgentProcess] = []
    engines: list[sa.engine.Engine] = []
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for index, size in enumerate(SIZES):
                host = f"bench-{size}"
                state = Path(tmp) / host
                urls = args.database_url or []
                database_url = (urls[index] if index < len(urls)
                                else f"sqlite:///{state / 'custos.sqlite'}")
                proc = AgentProcess(Path(tmp), {
                    "DEFAULT": {"host": host, "state_path": str(state),
                                "transport_url": args.rabbit_url,
                                "control_exchange": exchange},
                    "database": {"connection": database_url},
                    # Both sizes alike: the figure compares tables, not identities.
                    "auth": {"strategy": "trusted"}})
                proc.prepare()
                ring = masterkey.MasterKeyRing(str(state / "master.key"))
                ring.load()
                engine = sa.create_engine(database_url)
                engines.append(engine)
                fill(engine, ring, 0, size)
                proc.start()
                procs.append(proc)
                proc.wait_ready(transport, nobody())
                sizes[host] = size
            results = measure(CustosAPI(transport=transport, timeout=30), sizes, args.calls)
        finally:
            for proc in procs:
                proc.stop()
            for engine in engines:
                engine.dispose()
            transport.cleanup()
    p50 = {}
    for host, size in sizes.items():
        timings = results[host]
        p50[size] = statistics.median(timings)
        p99 = timings[int(len(timings) * 0.99) - 1]
        print(f"{size:>7} secrets: p50 {p50[size]:.3f} ms, p99 {p99:.3f} ms")
    small, large = SIZES
    print(f"ratio p50 at {large:,} / at {small:,}: {p50[large] / p50[small]:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
