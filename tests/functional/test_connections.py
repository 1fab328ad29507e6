"""Connections and CHAP credentials through a real custos-agent over RabbitMQ."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import uuid

import pytest
import sqlalchemy as sa

from agent import exception
from tests.common import admin, member_with_service, service_only
from tests.functional.agentproc import AgentProcess, run_script
from tests.functional.conftest import agent_sections, client_of

INITIATOR = "iqn.1993-08.org.debian:01:compute-1"
OTHER_INITIATOR = "iqn.1993-08.org.debian:01:compute-2"
LVM = {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
       "target_portal": "192.0.2.10:3260", "target_iqn_prefix": "iqn.2010-10.org.example"}


def start_chap_agent(start_agent, database_url=None, host="agent-1"):
    return start_agent(database_url=database_url, host=host,
                       DEFAULT={"enabled_backends": "lvm-1"}, **{"lvm-1": LVM})


@pytest.fixture
def chap_agent_on(database_kind, shared_agent):
    """The module's agent with backend lvm-1 on SQLite, then PostgreSQL and MariaDB."""
    return shared_agent(database_kind, DEFAULT={"enabled_backends": "lvm-1"}, **{"lvm-1": LVM})


@pytest.fixture
def chap_agent(shared_agent):
    """The module's agent with backend lvm-1 on SQLite."""
    return shared_agent("sqlite", DEFAULT={"enabled_backends": "lvm-1"}, **{"lvm-1": LVM})


def fresh_initiator():
    """An initiator name no other test of the shared agent has used."""
    return f"iqn.1993-08.org.debian:01:{uuid.uuid4().hex[:12]}"


def attach(api, initiator=INITIATOR):
    return api.initialize_connection(service_only(), {"id": str(uuid.uuid4())},
                                     {"initiator": initiator, "host": "compute"})["data"]


def credentials(data):
    return data["auth_username"], data["auth_password"]


def agent_database(proc):
    """The database URL an agent process was configured with."""
    configured = proc.sections.get("database", {}).get("connection")
    return configured or "sqlite:///{}/custos.sqlite".format(proc.sections["DEFAULT"]["state_path"])


def chap_secrets(database_url):
    """The driver's secrets as the agent stored them: ``{initiator: uuid}``."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "SELECT usage_id, uuid FROM secrets WHERE driver_namespace = 'lvm'"
                " AND project_id IS NULL AND usage_type = 'iscsi'")).all())
    finally:
        engine.dispose()


def test_an_initiator_keeps_its_chap_credentials_and_another_gets_its_own(chap_agent_on, api):
    proc, api = chap_agent_on, client_of(api, chap_agent_on)
    initiator, other_initiator = fresh_initiator(), fresh_initiator()

    first = attach(api, initiator)
    second = attach(api, initiator)
    other = attach(api, other_initiator)

    assert first["target_portal"] == "192.0.2.10:3260"
    assert first["target_iqn"].startswith("iqn.2010-10.org.example:volume-")
    assert first["auth_method"] == "CHAP"
    assert credentials(second) == credentials(first)
    assert other["auth_username"] != first["auth_username"]
    assert other["auth_password"] != first["auth_password"]
    data = api.initiator_data_get(admin(), initiator, "lvm")
    assert set(data) == {"chap_username"}
    assert first["auth_password"] not in json.dumps(data)
    stored = chap_secrets(agent_database(proc))
    assert initiator in stored and other_initiator in stored
    assert api.secret_list(admin(), usage_type="iscsi") == []
    log = proc.log()
    assert "serving topic" in log
    for password in (first["auth_password"], other["auth_password"]):
        assert password not in log


def test_initiator_data_upserts_and_removes_on_each_database(chap_agent_on, api):
    api = client_of(api, chap_agent_on)
    ctx = member_with_service()
    initiator, other_initiator = fresh_initiator(), fresh_initiator()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: api.initiator_data_update(
            ctx, initiator, "ns", set_values={"shared": f"v{n}", f"own-{n}": "x"}), range(8)))
    api.initiator_data_update(ctx, initiator, "ns", set_values={"shared": "last"},
                              remove_values=[f"own-{n}" for n in range(7)])

    assert api.initiator_data_get(admin(), initiator, "ns") == {"shared": "last", "own-7": "x"}
    assert api.initiator_data_get(admin(), other_initiator, "ns") == {}


@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
def test_concurrent_first_attaches_on_two_agents_share_one_secret(start_agent, api,
                                                                   database_url):
    agents = [start_chap_agent(start_agent, database_url, host=f"agent-{n}") for n in (1, 2)]

    start = threading.Barrier(32)

    def first_attach(_):
        start.wait()
        return attach(api)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(first_attach, range(32)))

    assert len({credentials(reply) for reply in replies}) == 1
    data = api.initiator_data_get(admin(), INITIATOR, "lvm")
    assert list(chap_secrets(database_url)) == [INITIATOR]
    assert data["chap_username"] == replies[0]["auth_username"]
    logs = "".join(proc.log() for proc in agents)
    assert logs.count("serving topic") == 2
    assert replies[0]["auth_password"] not in logs


def test_cli_attaches_reads_data_and_rotates_credentials(chap_agent, api):
    proc, api = chap_agent, client_of(api, chap_agent)
    volume_id = str(uuid.uuid4())
    initiator = fresh_initiator()

    def cli(*args):
        # An operator's claimed identity, believed by this trusted agent.
        return json.loads(run_script("custos", proc.config, "--roles", "admin",
                                     "--service-roles", "service", *args).stdout)

    first = cli("connection", "initialize", "--volume-id", volume_id, "--initiator", initiator)
    data = cli("initiator-data", "get", initiator, "lvm")
    assert cli("initiator-data", "chap-rotate", initiator, "lvm") is None
    rotated = cli("connection", "initialize", "--volume-id", volume_id, "--initiator", initiator)
    cli("connection", "terminate", "--volume-id", volume_id, "--initiator", initiator)

    assert first["driver_volume_type"] == "iscsi"
    assert data["chap_username"] == first["data"]["auth_username"]
    assert credentials(rotated["data"]) != credentials(first["data"])
    assert "chap_rotate" not in api.initiator_data_get(admin(), initiator, "lvm")


def test_cli_reports_a_refused_update_in_one_line(chap_agent):
    proc = chap_agent

    result = run_script("custos", proc.config, "--roles", "member", "--service-roles", "",
                        "initiator-data", "update", INITIATOR, "lvm", "--set", "a=1",
                        check=False)

    assert result.returncode == 1
    assert result.stderr.startswith("custos: forbidden: ")


def test_unknown_backend_over_the_bus_is_a_named_error(chap_agent, api):
    api = client_of(api, chap_agent)

    with pytest.raises(exception.BackendNotFound):
        api.initialize_connection(service_only(), {"id": str(uuid.uuid4())},
                                  {"initiator": INITIATOR}, backend="nope")


def test_agent_with_an_unknown_volume_driver_does_not_start(tmp_path, exchange, rabbit_url):
    sections = agent_sections(tmp_path, exchange, rabbit_url=rabbit_url,
                              DEFAULT={"enabled_backends": "fast"},
                              fast={"volume_driver": "no_such_driver"})
    proc = AgentProcess(tmp_path, sections)
    proc.prepare()
    proc.start()
    assert proc.process is not None

    assert proc.process.wait(30) == 1
    assert "backend [fast]: unknown volume_driver 'no_such_driver'" in proc.log()
