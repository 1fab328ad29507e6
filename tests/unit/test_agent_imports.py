"""What the agent's commands import at start-up."""

from __future__ import annotations

from tests.unit.test_client_boundary import _modules_after

AGENT = "import agent.cmd.agent, agent.service"


def test_the_agent_starts_without_eventlets_dns_resolver(monkeypatch):
    # Nothing monkey-patches, so the resolver and dnspython would only
    # cost start-up time. (The test process itself has the setting.)
    monkeypatch.delenv("EVENTLET_NO_GREENDNS", raising=False)
    modules = _modules_after(AGENT)

    assert "oslo_messaging" in modules and "sqlalchemy" in modules
    assert "eventlet.support.greendns" not in modules
    assert not [m for m in modules if m.split(".")[0] == "dns"]


def test_an_operators_own_greendns_setting_is_kept(monkeypatch):
    monkeypatch.delenv("EVENTLET_NO_GREENDNS", raising=False)
    modules = _modules_after(AGENT, env={"EVENTLET_NO_GREENDNS": "no"})

    assert "eventlet.support.greendns" in modules
