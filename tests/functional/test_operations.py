"""Operating custos as any OpenStack service: status checks and reports."""

from __future__ import annotations

import json
import re
import signal
import time

from tests.common import nobody
from tests.functional.agentproc import run_script, write_config


def test_status_upgrade_check_exits_with_the_worst_result(tmp_path, rabbit_url):
    config = write_config(tmp_path / "c.conf", {"DEFAULT": {
        "state_path": str(tmp_path / "state"), "transport_url": rabbit_url}})

    fresh = run_script("custos-status", config, "upgrade", "check", "--json", check=False)
    run_script("custos-manage", config, "db", "sync")
    run_script("custos-manage", config, "keys", "init")
    ready = run_script("custos-status", config, "upgrade", "check", "--json", check=False)
    table = run_script("custos-status", config, "upgrade", "check", check=False)

    failed = {c["check"]: c["result"] for c in json.loads(fresh.stdout)["checks"]}
    assert fresh.returncode == 2
    assert failed["Database schema"] == 2 and failed["Master key"] == 2
    assert failed["Message broker"] == 0
    assert ready.returncode == 0, ready.stdout
    assert {c["result"] for c in json.loads(ready.stdout)["checks"]} == {0}
    assert table.returncode == 0
    assert "Check: Master key" in table.stdout and "Result: Success" in table.stdout
    assert "guest:guest" not in fresh.stdout + ready.stdout + table.stdout


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_sigusr2_logs_a_report_with_secrets_masked_and_agent_keeps_serving(start_agent, api):
    proc = start_agent()
    password = proc.sections["DEFAULT"]["transport_url"].split("@")[0].rsplit(":", 1)[-1]

    proc.signal(signal.SIGUSR2)
    reported = _wait_for(lambda: "Guru Meditation report follows" in proc.log())
    log = proc.log()

    assert reported, log
    report = log[log.index("Guru Meditation report follows"):]
    for section in ("Package", "Threads", "Configuration", "Libraries"):
        assert re.search(rf"====\s+{section}\s+====", report), section
    assert "oslo.messaging" in report and "SQLAlchemy" in report
    assert "transport_url = ***" in report
    assert f":{password}@" not in report
    assert api.health(nobody(), server=proc.host)["database"] == "ok"
    assert proc.stop() == 0
