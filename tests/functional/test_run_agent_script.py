"""The README's first command speaks only of custos to a newcomer."""

from __future__ import annotations

import os
import socket
import subprocess

from tests.conftest import REPO_ROOT
from tests.functional.agentproc import write_config


def test_run_agent_without_a_broker_says_so_in_custos_words_only(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    config = write_config(tmp_path / "custos.conf", {"DEFAULT": {
        "state_path": str(tmp_path / "state"),
        "transport_url": f"rabbit://guest:guest@127.0.0.1:{port}/"}})
    env = dict(os.environ, CUSTOS_CONFIG=str(config))
    env.pop("PYTHONWARNINGS", None)

    result = subprocess.run([str(REPO_ROOT / "tools" / "run-agent.sh")], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300, env=env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"No message broker answers at the transport_url of {config}.",
        "Start RabbitMQ (for example: rabbitmq-server -detached) or point",
        f"transport_url in {config} at a running broker, then run this again."]
