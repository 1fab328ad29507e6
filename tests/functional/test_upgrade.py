"""A rolling upgrade from API 1.0 agents, as an operator runs one.

Two agents of the last 1.0 release serve one PostgreSQL database while a
client capped at 1.0 (``[upgrade_levels] custos = 1.0``) keeps calling.
The operator migrates the schema with the new code (expand-only, so the
old agents keep serving on it), then replaces one agent at a time. No
call is refused, nothing acknowledged before or during the upgrade is
lost, and the capped client refuses 1.1 methods itself instead of
sending them.

The old agents run the 1.0 release's own code, taken from this
repository's history, on the libraries installed here.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from agent import exception
from rpcapi import CustosAPI
from tests.common import admin, member, nobody
from tests.functional.agentproc import AgentProcess, _env, run_script, write_config
from tests.functional.conftest import agent_sections
from tests.conftest import REPO_ROOT

# The last commit whose agents answer API 1.0 only.
RELEASE_1_0 = "5110223"

_MAIN = "import sys; from agent.cmd.{module} import main; sys.exit(main())"


@pytest.fixture(scope="module")
def release_1_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1.0 release's agent, rpcapi and db packages, unpacked."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar",
                              RELEASE_1_0, "agent", "db", "rpcapi"],
                             capture_output=True, timeout=60)
    assert archive.returncode == 0, (
        f"the upgrade test needs commit {RELEASE_1_0} in this clone's history: "
        f"{archive.stderr.decode(errors='replace')}")
    tree = tmp_path_factory.mktemp("custos-1.0")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _old_command(tree: Path, module: str) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run ``agent.cmd.<module>`` of the old tree.

    ``-S`` keeps the editable install of the new code off ``sys.path`` and
    ``-P`` the working directory;
    the old tree comes first, then the installed libraries.
    """
    env = _env()
    env["PYTHONPATH"] = f"{tree}:{sysconfig.get_paths()['purelib']}"
    return [sys.executable, "-S", "-P", "-c", _MAIN.format(module=module)], env


class OldAgentProcess(AgentProcess):
    """A custos-agent of the 1.0 release."""

    def __init__(self, tree: Path, workdir: Path, sections: dict[str, dict[str, Any]]) -> None:
        super().__init__(workdir, sections)
        self.tree = tree

    def prepare(self) -> None:
        command, env = _old_command(self.tree, "manage")
        for args in (["db", "sync"], ["keys", "init"]):
            if args[0] == "keys" and self.key_file.exists():
                continue
            done = subprocess.run([*command, "--config-file", str(self.config), *args],
                                  capture_output=True, text=True, timeout=120, env=env)
            assert done.returncode == 0, done.stderr

    def start(self) -> None:
        command, env = _old_command(self.tree, "agent")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([*command, "--config-file", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)


class Load(threading.Thread):
    """A 1.0-capped caller that writes and reads secrets until stopped."""

    def __init__(self, api: CustosAPI) -> None:
        super().__init__(name="upgrade-load", daemon=True)
        self.api = api
        self.stopping = threading.Event()
        self.written: dict[str, str] = {}
        self.failures: list[str] = []
        self.calls = 0
        self.started = time.monotonic()
        self.phases: list[str] = []

    def mark(self, phase: str) -> None:
        """Note when the upgrade reached ``phase``, for a failure's message."""
        self.phases.append(f"{time.monotonic() - self.started:.1f}s {phase}")

    def run(self) -> None:
        ctxt = member("upgrade-project")
        while not self.stopping.is_set():
            usage_id = f"client.{uuid.uuid4().hex[:12]}"
            try:
                secret_uuid = self.api.secret_generate(ctxt, "ceph", usage_id)
                value = self.api.secret_get_value(ctxt, secret_uuid)
                found = self.api.secret_lookup_by_usage(ctxt, "ceph", usage_id)
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                self.mark(f"FAILED {type(error).__name__}: {error}")
                self.failures.append(f"{type(error).__name__}: {error}")
                continue
            self.calls += 3
            self.written[secret_uuid] = value
            if found != secret_uuid:
                self.failures.append(f"lookup of {usage_id} gave {found}")


def test_rolling_upgrade_from_1_0_agents_loses_no_acknowledged_write(
        release_1_0, tmp_path, exchange, rabbit_url, transport, postgresql_url):
    key_file = tmp_path / "master.key"

    def sections(host: str) -> dict[str, dict[str, Any]]:
        config = agent_sections(tmp_path, exchange, postgresql_url, host,
                                state_path=tmp_path / host / "state", rabbit_url=rabbit_url,
                                keystore={"master_key_file": str(key_file)})
        # 1.0 agents listened on their process's control exchange, which
        # the 1.0 start-up set to custos.
        config["DEFAULT"]["control_exchange"] = "custos"
        return config

    def workdir(host: str) -> Path:
        path = tmp_path / host
        path.mkdir(exist_ok=True)
        return path

    old = [OldAgentProcess(release_1_0, workdir(h), sections(h)) for h in ("agent-a", "agent-b")]
    capped = CustosAPI(transport=transport, timeout=30, version_cap="1.0")
    load = Load(capped)
    new: list[AgentProcess] = []
    try:
        old[0].prepare()
        for proc in old:
            proc.start()
            proc.wait_ready(transport, nobody())
        assert capped.health(nobody())["rpc_api_version"] == "1.0"
        load.start()
        time.sleep(2)

        load.mark("db sync")
        migrate = write_config(tmp_path / "migrate.conf", sections("operator"))
        run_script("custos-manage", migrate, "db", "sync")
        time.sleep(2)
        for proc in old:
            load.mark(f"stop 1.0 {proc.host}")
            assert proc.stop() == 0, proc.log()
            load.mark(f"start new {proc.host}")
            upgraded = AgentProcess(proc.workdir, proc.sections)
            upgraded.start()
            new.append(upgraded)
            upgraded.wait_ready(transport, nobody())
            load.mark(f"new {proc.host} serving")
            time.sleep(2)
        load.stopping.set()
        load.join(60)
        current = CustosAPI(transport=transport, timeout=30)
        health = current.health(nobody())
        read_back = {secret_uuid: current.secret_get_value(member("upgrade-project"), secret_uuid)
                     for secret_uuid in load.written}
    finally:
        load.stopping.set()
        if load.is_alive():
            load.join(60)
        for proc in [*old, *new]:
            proc.stop()

    # A 1.0 agent keeps its broker consumer open while it stops, so a call
    # the broker hands it in its last moment is acknowledged and never
    # handled: the caller times out and nothing of that call is written.
    # Agents since 1.1 cancel first (test_graceful_stop.py shows none is
    # lost). Every call that returned stays returned.
    assert all(f.startswith("MessagingTimeout") for f in load.failures), "\n".join(load.phases)
    assert len(load.failures) <= len(old), "\n".join(load.phases)
    assert load.calls >= 30
    assert health["rpc_api_version"] == CustosAPI.RPC_API_VERSION
    assert read_back == load.written


def test_a_1_0_capped_client_refuses_1_1_methods_without_sending(transport):
    capped = CustosAPI(transport=transport, timeout=2, version_cap="1.0")

    with pytest.raises(exception.RPCVersionCapped):
        capped.secret_lookup_by_usage(admin(), "ceph", "client.x", project_id="p1")
