"""custos' client inside processes configured as cinder-volume and nova-api.

Each caller runs in its own interpreter (tests/functional/callers.py), on
this session's RabbitMQ virtual host, against a real custos-agent.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.functional.agentproc import write_config


def _run_caller(role: str, rabbit_url: str, tmp_path: Path) -> dict:
    config = write_config(tmp_path / f"{role}.conf", {"DEFAULT": {"transport_url": rabbit_url}})
    result = subprocess.run([sys.executable, "-m", "tests.functional.callers", role,
                             str(config), rabbit_url],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def agent_on_the_bus(start_agent):
    return start_agent()


def test_cinder_volume_hands_its_transport_to_the_client_and_gets_answers(
        agent_on_the_bus, rabbit_url, tmp_path):
    seen = _run_caller("cinder-volume", rabbit_url, tmp_path)

    assert seen["health"]["database"] == "ok"
    assert seen["health"]["host"] == agent_on_the_bus.host
    assert base64.b64decode(seen["value"]) == b"volume key \x00\xff"
    assert seen["control_exchange"] == "cinder"


def test_nova_api_builds_the_client_first_and_its_cells_stay_on_nova(
        agent_on_the_bus, rabbit_url, tmp_path):
    seen = _run_caller("nova-api", rabbit_url, tmp_path)

    assert seen["health"]["database"] == "ok"
    assert base64.b64decode(seen["value"]) == b"volume key \x00\xff"
    assert seen["control_exchange"] == "nova"
    assert seen["cell_exchange"] == "nova"
