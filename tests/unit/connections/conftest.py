"""Fixtures for connection tests: backends configured before the agent starts."""

from __future__ import annotations

from typing import Any

import pytest
from oslo_config import cfg

from agent.connections import backends
from agent.drivers.iscsi_chap import ISCSIChapDriver
from tests.unit.connections import drivers

PORTAL = "192.0.2.10:3260"
PREFIX = "iqn.2010-10.org.example"


@pytest.fixture
def test_drivers(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """Make the test drivers loadable by name, next to the real entry points."""
    real = backends.driver_class

    def driver_class(name: str) -> Any:
        return drivers.TEST_DRIVERS.get(name) or real(name)

    monkeypatch.setattr(backends, "driver_class", driver_class)
    drivers.ScriptedDriver.calls = []
    drivers.ScriptedDriver.reply = None
    return drivers.TEST_DRIVERS


def configure_backend(conf: cfg.ConfigOpts, name: str, driver: str, **options: Any) -> None:
    """Write a backend section into ``conf`` as an operator's file would."""
    backends.register_opts(conf, name, ISCSIChapDriver)
    conf.set_override("volume_driver", driver, group=name)
    for key, value in options.items():
        conf.set_override(key, value, group=name)


@pytest.fixture
def chap_backend(migrated: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """One enabled backend ``lvm-1`` with the iscsi_chap driver."""
    configure_backend(migrated, "lvm-1", "iscsi_chap", volume_backend_name="lvm",
                      target_portal=PORTAL, target_iqn_prefix=PREFIX)
    migrated.set_override("enabled_backends", ["lvm-1"])
    return migrated


@pytest.fixture
def store(harness: Any) -> Any:
    """The agent's own secret store, which its drivers use."""
    return harness.runtime.secrets
