"""What an operator watches: a real agent's metrics endpoint, its traces, its health."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import types
import urllib.request
import uuid
from typing import Any

import oslo_messaging as messaging
import pytest
from osprofiler import profiler
from prometheus_client.parser import text_string_to_metric_families

from agent import exception, wire
from tests.common import member, nobody
from tests.functional.agentproc import run_script

CALLS = 120
BAD_CALLS = 15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_endpoint_counts_the_calls_a_caller_made(start_agent, api):
    port = _free_port()
    proc = start_agent(metrics={"bind": f"127.0.0.1:{port}"})
    before = _scrape(port)

    def good(_: int) -> None:
        api.health(nobody())

    def bad(_: int) -> None:
        with pytest.raises(exception.SecretNotFound):
            api.secret_get_value(member(), str(uuid.uuid4()))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(good, range(CALLS)))
        list(pool.map(bad, range(BAD_CALLS)))
    after = _scrape(port)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("custos_rpc_requests_total", method="health", outcome="ok") == CALLS
    assert moved("custos_rpc_requests_total", method="secret_get_value",
                 outcome="secret_not_found") == BAD_CALLS
    assert moved("custos_rpc_request_seconds_count", method="health") == CALLS
    assert moved("custos_rpc_request_seconds_count", method="secret_get_value") == BAD_CALLS
    assert _value(after, "custos_rpc_in_flight", method="health") == 0
    assert _value(after, "custos_notification_queue_depth") == 0
    # Nothing a caller sent is a label value.
    assert not any(key for key in after if any(value.count("-") == 4 for _, value in key[1]))

    health = json.loads(run_script("custos", proc.config, "health").stdout)
    assert health["notifications"] == {"queued": 0, "dropped": 0, "failed": 0}
    assert health["authentication"]["strategy"] == "trusted"
    assert health["broker"]["rpc"] == "ok"


class _TracingSerializer(wire.RequestContextSerializer):
    """What Nova's and Cinder's RPC serializers add with [profiler] enabled."""

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        result = dict(super().serialize_context(ctxt))
        prof = profiler.get()
        if prof:
            result["trace_info"] = {"hmac_key": prof.hmac_key,
                                    "base_id": prof.get_base_id(),
                                    "parent_id": prof.get_id()}
        return result


def test_agent_continues_a_callers_trace(start_agent, api, tmp_path):
    traces = tmp_path / "traces.jsonl"
    proc = start_agent(profiler={"enabled": True, "hmac_keys": "trace-key",
                                 "connection_string": f"file://{traces}"})
    client = messaging.get_rpc_client(api.client.transport, api.client.target,
                                      serializer=_TracingSerializer())
    base_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
    profiler.init("trace-key", base_id=base_id, parent_id=parent_id)
    try:
        client.call(nobody(), "health")
    finally:
        profiler.clean()
    # A stranger's trace (a key the agent does not hold) is not continued.
    stranger = str(uuid.uuid4())
    profiler.init("not-the-key", base_id=stranger)
    try:
        client.call(nobody(), "health")
    finally:
        profiler.clean()

    rows = [types.SimpleNamespace(**json.loads(line))
            for line in traces.read_text().splitlines()]
    spans = {row.name: row for row in rows}
    assert {row.base_id for row in rows} == {base_id}, proc.log()[-2000:]
    assert spans["rpc-start"].parent_id == parent_id
    assert spans["policy-start"].parent_id == spans["rpc-start"].trace_id
    assert spans["transaction-start"].parent_id == spans["rpc-start"].trace_id
    assert {"rpc-stop", "policy-stop", "transaction-stop"} <= set(spans)
