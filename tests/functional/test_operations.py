"""Operating custos as any OpenStack service: status checks and reports."""

from __future__ import annotations

import json
import os
import re
import signal
import time

from tests.common import nobody
from tests.functional.agentproc import run_script, write_config


def test_status_upgrade_check_exits_with_the_worst_result(tmp_path, rabbit_url):
    config = write_config(tmp_path / "c.conf", {
        "DEFAULT": {"state_path": str(tmp_path / "state"), "transport_url": rabbit_url},
        # The agent's own service user: the identity check needs it named.
        "keystone_authtoken": {"auth_type": "password", "auth_url": "http://127.0.0.1:5000/v3",
                               "username": "custos", "password": "not-checked-here"}})

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
    assert "not-checked-here" not in fresh.stdout + ready.stdout + table.stdout


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_sigusr2_logs_a_report_with_secrets_masked_and_agent_keeps_serving(start_agent, api):
    # Credentials an operator may write into options that are not secret
    # (a vendordata target's URL) and into ones that are.
    proc = start_agent(
        auth={"strategy": "trusted"},
        vendordata={"targets": "vd@http://vduser:VdPassw0rd@127.0.0.1:9/vd?token=VdT0ken&r=1"},
        vendordata_auth={"auth_type": "password", "auth_url": "http://127.0.0.1:9/v3",
                         "username": "custos", "password": "KsPassw0rd",
                         "project_name": "service", "user_domain_id": "default",
                         "project_domain_id": "default"})
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
    assert "vd@http://vduser:***@127.0.0.1:9/vd?token=***" in report
    for secret in ("VdPassw0rd", "VdT0ken", "KsPassw0rd"):
        assert secret not in log, secret
    assert api.health(nobody(), server=proc.host)["database"] == "ok"
    assert proc.stop() == 0


def _run_on_terminal(command: list[str]) -> str:
    """Run ``command`` with its standard output on a pseudo-terminal."""
    import pty
    import subprocess

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(command, stdout=follower, stderr=subprocess.PIPE, timeout=120)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks).decode()


def test_cli_defines_from_a_file_and_prints_tables_to_people_and_json_to_pipes(
        start_agent, tmp_path):
    from tests.functional.agentproc import script

    proc = start_agent()
    secret_uuid = "4a0f29c1-9c6a-4c0b-8f59-6d4a2ad7d4e3"
    xml = tmp_path / "secret.xml"
    xml.write_text(f"<secret ephemeral='no' private='no'><uuid>{secret_uuid}</uuid>"
                   "<usage type='ceph'><name>client.cli</name></usage></secret>")
    common = ["--project-id", "p-cli", "--roles", "member"]

    defined = run_script("custos", proc.config, *common, "secret", "define", str(xml))
    piped = run_script("custos", proc.config, *common, "secret", "list")
    value = run_script("custos", proc.config, *common, "--format", "value",
                       "secret", "lookup", "ceph", "client.cli")
    table = _run_on_terminal([script("custos"), "--config-file", str(proc.config), *common,
                              "secret", "list"])

    assert json.loads(defined.stdout) == secret_uuid
    assert [s["uuid"] for s in json.loads(piped.stdout)] == [secret_uuid]
    assert value.stdout.strip() == secret_uuid
    header = next(line for line in table.splitlines() if "usage_type" in line)
    assert "uuid" in header and "|" in header
    assert any(secret_uuid in line and "client.cli" in line for line in table.splitlines())
