"""The agent's metrics: what each part counts, and the bounds on their labels."""

from __future__ import annotations

import types
import urllib.request

import pytest

from agent import exception, metrics, tracing
from agent.notifier import NotificationSender


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("bind", ["9464", ":9464", "127.0.0.1:", "127.0.0.1:0x10",
                                  "127.0.0.1:70000"])
def test_a_malformed_bind_is_a_configuration_error(bind):
    with pytest.raises(exception.ConfigurationError):
        metrics.parse_bind(bind)


def test_bind_forms_and_loopback():
    assert metrics.parse_bind("[::1]:9464") == ("::1", 9464)
    assert metrics.is_loopback("127.0.0.2") and metrics.is_loopback("::1")
    assert metrics.is_loopback("localhost")
    assert not metrics.is_loopback("0.0.0.0") and not metrics.is_loopback("metrics.example")


def test_the_endpoint_serves_the_registry_and_frees_its_port():
    endpoint = metrics.serve("127.0.0.1:0")
    assert endpoint is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics",
                                    timeout=5) as reply:
            text = reply.read().decode()
        with pytest.raises(exception.ConfigurationError):
            metrics.serve(f"127.0.0.1:{endpoint.port}")
    finally:
        endpoint.close()
    assert "custos_rpc_requests_total" in text
    assert metrics.serve("") is None


def test_per_method_error_codes_are_bounded():
    stats = metrics.MethodMetrics("bounded_probe")
    for n in range(metrics.MAX_CODES_PER_METHOD + 20):
        stats.failed(f"code_{n}")
    series = [s for family in metrics.REGISTRY.collect() for s in family.samples
              if s.labels.get("method") == "bounded_probe" and s.name.endswith("_total")]
    # The codes kept (internal among them), then "ok" and "other".
    assert len(series) == metrics.MAX_CODES_PER_METHOD + 2
    assert value("custos_rpc_requests_total", method="bounded_probe", outcome="other") > 0


def test_done_counts_ok_errors_and_latency():
    stats = metrics.MethodMetrics("done_probe")
    stats.in_flight.inc()
    stats.done(None, 0.002)
    stats.in_flight.inc()
    stats.done("secret_not_found", 0.003)
    assert value("custos_rpc_requests_total", method="done_probe", outcome="ok") == 1
    assert value("custos_rpc_requests_total", method="done_probe",
                 outcome="secret_not_found") == 1
    assert value("custos_rpc_request_seconds_count", method="done_probe") == 2
    assert value("custos_rpc_in_flight", method="done_probe") == 0


def test_vendordata_reasons_never_carry_free_text():
    result = types.SimpleNamespace
    assert metrics.vendordata_reason(result(status=503, reason="HTTP 503")) == "http_503"
    assert metrics.vendordata_reason(result(status=None, reason="deadline exceeded")) == \
        "deadline_exceeded"
    assert metrics.vendordata_reason(
        result(status=None, reason="invalid JSON near 'secret-value'")) == "exchange_failed"


def test_notifications_sent_retried_dropped_are_counted():
    calls = []

    class Flaky:
        def info(self, ctxt, event_type, payload):
            calls.append(event_type)
            if len(calls) == 1:
                raise ConnectionError("broker away")

    sent, retried = value("custos_notifications_sent_total"), \
        value("custos_notifications_retried_total")
    full = value("custos_notifications_dropped_total", reason="queue_full")
    sender = NotificationSender(lambda: Flaky(), max_queued=1, first_pause=0.01)
    sender.submit(None, [("a.b", {}, "info"), ("a.c", {}, "info"), ("a.d", {}, "info")])
    assert sender.flush(10)

    assert value("custos_notifications_sent_total") - sent == sender.state()["queued"] + \
        len(calls) - 1
    assert value("custos_notifications_retried_total") - retried == 1
    assert value("custos_notifications_dropped_total", reason="queue_full") - full == \
        sender.dropped
    assert sender.broker_state == "ok"


@pytest.fixture
def traced(conf, tmp_path):
    conf.set_override("enabled", True, group="profiler")
    conf.set_override("hmac_keys", "k1, k2", group="profiler")
    conf.set_override("connection_string", f"file://{tmp_path}/t.jsonl", group="profiler")
    tracing.setup(conf, "agent-1")
    yield
    tracing.end()
    conf.set_override("enabled", False, group="profiler")
    tracing.setup(conf, "agent-1")


@pytest.mark.parametrize("info", ["x", {"hmac_key": "k1"}, {"hmac_key": 5, "base_id": "b"},
                                  {"hmac_key": "k1", "base_id": "b" * 300}])
def test_a_malformed_trace_is_invalid_input_and_starts_nothing(traced, info):
    with pytest.raises(exception.InvalidInput):
        tracing.continue_trace({"trace_info": info})
    assert tracing.span("rpc") is tracing._NULL


def test_only_a_trace_signed_with_our_key_is_continued(traced):
    assert not tracing.continue_trace({"trace_info": {"hmac_key": "other", "base_id": "b"}})
    ctxt = {"trace_info": {"hmac_key": "k2", "base_id": "b", "parent_id": "p"}, "user": "u"}
    assert tracing.continue_trace(ctxt)
    assert ctxt == {"user": "u"}
    assert tracing.span("rpc") is not tracing._NULL


def test_without_tracing_the_trace_info_is_dropped_and_costs_nothing():
    ctxt = {"trace_info": "anything at all"}
    assert not tracing.continue_trace(ctxt)
    assert ctxt == {}
    assert tracing.span("rpc") is tracing._NULL


def test_a_span_on_another_thread_continues_the_requests_trace(traced, tmp_path):
    import json
    import threading

    assert tracing.continue_trace({"trace_info": {"hmac_key": "k1", "base_id": "base",
                                                  "parent_id": "caller"}})
    with tracing.span("rpc", method="vendordata_get"):
        trace = tracing.handoff()

        def lane() -> None:
            with tracing.resumed(trace, "vendordata", target="static"):
                pass

        worker = threading.Thread(target=lane)
        worker.start()
        worker.join()
    events = {e["name"]: e for e in map(json.loads,
                                        (tmp_path / "t.jsonl").read_text().splitlines())}

    assert events["rpc-start"]["parent_id"] == "caller"
    assert events["vendordata-start"]["parent_id"] == events["rpc-start"]["trace_id"]
    assert events["vendordata-start"]["info"]["target"] == "static"
    assert "vendordata-stop" in events
    assert tracing.resumed(None, "vendordata") is tracing._NULL
