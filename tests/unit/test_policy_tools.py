"""oslo.policy's own tools work on custos' rules, as operators use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)


def test_policy_sample_is_current(tmp_path):
    output = tmp_path / "policy.yaml.sample"

    result = _tool("oslopolicy-sample-generator", "--config-file",
                   "etc/oslo-policy-generator/custos.conf", "--output-file", str(output))

    assert result.returncode == 0, result.stderr
    checked_in = (REPO_ROOT / "etc" / "custos" / "policy.yaml.sample").read_text()
    assert output.read_text() == checked_in, (
        "regenerate with: .venv/bin/oslopolicy-sample-generator "
        "--config-file etc/oslo-policy-generator/custos.conf")


def test_policy_checker_decides_as_the_agent_would(tmp_path):
    effective = tmp_path / "policy.yaml"
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"token": {
        "roles": [{"name": "member"}], "project": {"id": "p1"}, "user": {"id": "u1"}}}))
    own, other = tmp_path / "own.json", tmp_path / "other.json"
    own.write_text(json.dumps({"project_id": "p1"}))
    other.write_text(json.dumps({"project_id": "p2"}))

    generated = _tool("oslopolicy-policy-generator", "--namespace", "custos",
                      "--output-file", str(effective))
    verdicts = [_tool("oslopolicy-checker", "--policy", str(effective), "--access", str(access),
                      "--rule", "custos:secret_get_value", "--target", str(target)).stdout.strip()
                for target in (own, other)]

    assert generated.returncode == 0, generated.stderr
    assert verdicts == ["passed: custos:secret_get_value", "failed: custos:secret_get_value"]
