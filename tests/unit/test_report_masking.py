"""The Guru Meditation report prints no credential, whichever option holds it."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_config import fixture as config_fixture

from agent import reports

CANARY = "Canary5ecret"


@pytest.mark.parametrize(("value", "shown"), [
    ("vd@https://user:pw@vd.example/path?token=abc&region=one#frag",
     "vd@https://user:***@vd.example/path?token=***&region=***#***"),
    ("plain@http://vd.example:8080/x", "plain@http://vd.example:8080/x"),
    ("rabbit://u:p1@h1:5672,u2:p2@h2:5672/vhost", "rabbit://u:***@h1:5672,u2:***@h2:5672/vhost"),
    ("x@https://ghp_token@host/", "x@https://***@host/"),
    ("http://u:pa/ss@host/p?q", "http://u:***@host/p?***"),
    ("mysql+pymysql://root:pw@db/custos?charset=utf8",
     "mysql+pymysql://root:***@db/custos?charset=***"),
    ("--password=abc and more", "--password=*** and more"),
    (["a@http://u:p@h", "b@http://h"], ["a@http://u:***@h", "b@http://h"]),
    ({"password": "x", "url": "http://u:p@h"}, {"password": "***", "url": "http://u:***@h"}),
    (5, 5),
    (None, None),
])
def test_credentials_in_a_value_are_masked(value, shown):
    assert reports.mask_credentials(value) == shown


def _text_options(conf: cfg.ConfigOpts):
    """``(group or None, name, opt)`` of every option holding text or a list of texts."""
    for name, info in conf._opts.items():
        yield None, name, info["opt"]
    for group_name, group in conf._groups.items():
        for name, info in group._opts.items():
            yield group_name, name, info["opt"]


@pytest.fixture
def password_plugin_options(conf):
    """The options keystoneauth registers when it loads the vendordata token's plugin.

    Unregistered afterwards: ``auth_url`` is required, and would fail the
    next test's parsing of an empty configuration.
    """
    fixture = config_fixture.Config(conf)
    fixture.setUp()
    fixture.register_opts(ks_loading.get_auth_plugin_conf_options("password"),
                          group="vendordata_auth")
    yield conf
    fixture.cleanUp()


def test_a_report_shows_no_credential_written_into_any_option(password_plugin_options):
    conf = password_plugin_options
    url = f"https://admin:{CANARY}@example.test/v3?token={CANARY}"
    written = []
    for group, name, opt in _text_options(conf):
        value = [f"name@{url}"] if isinstance(opt, cfg.ListOpt) else url
        try:
            conf.set_override(name, value, group=group)
            conf[group][name] if group else conf[name]
        except (ValueError, TypeError, cfg.ConfigFileValueError):
            conf.clear_override(name, group=group)
            continue
        written.append(f"{group}.{name}")
    conf.set_override("password", CANARY, group="vendordata_auth")

    text = reports.build()

    assert {"vendordata.targets", "database.connection", "None.transport_url",
            "vendordata_auth.auth_url", "vendordata_auth.password"} <= set(written)
    assert "name@https://admin:***@example.test/v3?token=***" in text
    assert CANARY not in text


def test_a_section_that_cannot_be_gathered_leaves_the_rest_of_the_report(conf):
    # A child that exited and was not waited for yet: psutil raises
    # ZombieProcess for it while oslo.reports lists the processes.
    child = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)

        text = reports.build()
    finally:
        child.wait()

    assert "could not be gathered (ZombieProcess)" in text
    for section in ("Package", "Threads", "Configuration", "Libraries"):
        assert re.search(rf"====\s+{section}\s+====", text), section
