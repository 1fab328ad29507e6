"""The packages type-check with mypy (configuration in setup.cfg).

mypy runs beside the rest of the suite (the ``type_check`` fixture in
tests/conftest.py starts it once the run is collected).
"""

from __future__ import annotations


def test_agent_rpcapi_and_db_type_check(type_check):
    status, output = type_check

    assert status == 0, output
