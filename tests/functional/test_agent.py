"""The real custos-agent process over RabbitMQ, on each database."""

from __future__ import annotations

import json
import time

import pytest

import agent
from agent import exception
from tests.common import member, nobody
from tests.functional.agentproc import AgentProcess, run_script, write_config
from tests.functional.conftest import RABBIT_URL, agent_sections


def test_agent_serves_health_then_stops_on_sigterm(start_agent, api, database_url):
    proc = start_agent(database_url=database_url)

    health = api.health(nobody())
    cli = run_script("custos", proc.config, "health")

    assert health["database"] == "ok"
    assert health["master_key"] == "ok"
    assert health["version"] == agent.__version__
    assert json.loads(cli.stdout)["host"] == "agent-1"
    assert proc.stop() == 0, proc.log()
    assert "custos-agent stopped" in proc.log()


def test_bad_calls_come_back_as_named_errors_and_agent_keeps_serving(in_process_agent, api):
    in_process_agent()

    with pytest.raises(exception.UnknownMethod):
        api._call(member(), "rm_rf")
    with pytest.raises(exception.InvalidInput) as caught:
        api._call(member(), "health", extra="x")

    assert caught.value.kwargs["field"] == "extra"
    assert api.health(member())["database"] == "ok"


def test_cli_reports_a_timeout_in_one_line(tmp_path, rabbit_url):
    config = write_config(tmp_path / "c.conf", {"DEFAULT": {"transport_url": rabbit_url}})

    result = run_script("custos", config, "--timeout", "1", "--server", "custos-nobody-listens",
                        "health", check=False)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "custos: timeout: no reply from custos-agent within 1 s"]
    assert result.stdout == ""


def test_cli_reports_an_unreachable_broker_in_one_line(tmp_path):
    config = write_config(tmp_path / "c.conf", {
        "DEFAULT": {"transport_url": "rabbit://guest:guest@127.0.0.1:1/"},
        "oslo_messaging_rabbit": {"rabbit_retry_interval": 1}})

    started = time.monotonic()
    result = run_script("custos", config, "--timeout", "5", "health", check=False)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("custos: ")
    assert lines[0].split(":")[1].strip() in ("broker_unreachable", "timeout")
    assert time.monotonic() - started < 30


def test_agent_refuses_to_start_on_an_unmigrated_database(tmp_path, exchange, rabbit_url):
    sections = agent_sections(tmp_path, exchange, f"sqlite:///{tmp_path / 'empty.sqlite'}",
                              rabbit_url=rabbit_url)
    proc = AgentProcess(tmp_path, sections)
    proc.start()
    assert proc.process is not None

    assert proc.process.wait(30) == 1
    assert "custos-manage db sync" in proc.log()


def test_cli_reports_a_bad_configuration_value_in_one_line(tmp_path):
    config = write_config(tmp_path / "c.conf", {
        "DEFAULT": {"transport_url": RABBIT_URL},
        "oslo_messaging_rabbit": {"rabbit_retry_interval": "soon"}})

    result = run_script("custos", config, "--timeout", "1", "health", check=False)

    assert result.returncode == 1
    assert result.stderr.startswith("custos: configuration_error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_manage_prints_only_json_on_standard_output(tmp_path):
    config = write_config(tmp_path / "c.conf", {"DEFAULT": {"state_path": str(tmp_path)}})

    sync = run_script("custos-manage", config, "db", "sync")
    keys = run_script("custos-manage", config, "keys", "list", check=False)

    assert list(json.loads(sync.stdout)) == ["revision"]
    assert keys.returncode == 1
    assert keys.stdout == ""
    assert keys.stderr.startswith("custos-manage: master_key_unavailable: ")
