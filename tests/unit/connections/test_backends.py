"""Loading backends from enabled_backends: namespaces and start-up errors."""

from __future__ import annotations

import pytest

from agent import exception
from agent.connections import backends
from agent.drivers.iscsi_chap import ISCSIChapDriver
from agent.service import AgentService
from tests.conftest import REPO_ROOT
from tests.unit.connections.conftest import configure_backend


def load(conf):
    return backends.load_backends(conf)


def test_real_entry_point_loads_the_iscsi_chap_driver():
    assert backends.driver_class("iscsi_chap") is ISCSIChapDriver


def test_namespace_prefers_driver_data_namespace_then_backend_name_then_class(migrated):
    configure_backend(migrated, "n1", "iscsi_chap", target_portal="p:3260",
                      driver_data_namespace="shared", volume_backend_name="lvm")
    configure_backend(migrated, "n2", "iscsi_chap", target_portal="p:3260",
                      volume_backend_name="lvm")
    configure_backend(migrated, "n3", "iscsi_chap", target_portal="p:3260",
                      driver_data_namespace="  ")
    migrated.set_override("enabled_backends", ["n1", "n2", "n3"])

    loaded = load(migrated)

    assert [(b.name, b.namespace) for b in loaded.values()] == [
        ("n1", "shared"), ("n2", "lvm"), ("n3", "ISCSIChapDriver")]


@pytest.mark.parametrize("setup, enabled, words", [
    (lambda c: configure_backend(c, "x1", "no_such_driver"), ["x1"],
     ["[x1]", "unknown volume_driver 'no_such_driver'"]),
    (lambda c: None, ["x2"], ["[x2]", "no volume_driver"]),
    (lambda c: configure_backend(c, "x3", "iscsi_chap"), ["x3"], ["[x3]", "target_portal"]),
    (lambda c: configure_backend(c, "x4", "iscsi_chap", target_portal="p"), ["x4", "x4"],
     ["[x4]", "twice"]),
    (lambda c: None, ["database"], ["'database'", "option group"]),
    (lambda c: None, [""], ["empty name"]),
    (lambda c: configure_backend(c, "x5", "iscsi_chap", target_portal="p",
                                 driver_data_namespace="n" * 256), ["x5"],
     ["[x5]", "namespace longer than 255"]),
])
def test_bad_backend_stops_start_up_naming_it(migrated, master_key, setup, enabled, words):
    setup(migrated)
    migrated.set_override("enabled_backends", enabled)
    migrated.set_override("transport_url", "fake:/")
    service = AgentService(migrated)

    with pytest.raises(exception.ConfigurationError) as caught:
        service.start()

    for word in words:
        assert word in caught.value.msg


def test_shipped_development_configuration_loads_its_backend(conf):
    conf(["--config-file", str(REPO_ROOT / "etc" / "custos" / "custos.conf")],
         project="custos", default_config_files=[])

    [backend] = load(conf).values()

    assert (backend.name, backend.namespace) == ("lvm-1", "lvm")
    assert isinstance(backend.driver, ISCSIChapDriver)
    assert backend.driver.portal == "192.0.2.10:3260"
