"""The packages type-check with mypy (configuration in setup.cfg)."""

from __future__ import annotations

from mypy import api as mypy_api

from tests.conftest import REPO_ROOT


def test_agent_rpcapi_and_db_type_check():
    stdout, stderr, status = mypy_api.run([
        "--config-file", str(REPO_ROOT / "setup.cfg"), "--no-incremental",
        *(str(REPO_ROOT / package) for package in ("agent", "rpcapi", "db"))])

    assert status == 0, stdout + stderr
