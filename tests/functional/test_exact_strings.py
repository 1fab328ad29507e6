"""On MariaDB, ids, namespaces, keys and usages compare byte for byte.

The agent's database is created as an operator's ``CREATE DATABASE
custos`` leaves it, with the server's default collation
(``utf8mb4_general_ci``: case-insensitive, trailing spaces ignored), and
then migrated: migration 0008 makes every string column compare exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from rpcapi import CustosAPI
from tests.common import admin, member, member_with_service
from tests.functional.conftest import client_of, require
from tests.functional.databases import create_mysql
from tests.functional.inprocess import InProcessAgent

PROJECTS = ("tenant-abc", "TENANT-ABC", "tenant-abc ")
LVM = {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
       "target_portal": "192.0.2.10:3260", "target_iqn_prefix": "iqn.2010-10.org.example"}


@pytest.fixture
def agent(in_process_agent) -> Iterator[InProcessAgent]:
    require("MariaDB", 3306)
    url, drop = create_mysql(migrated=True, collation="utf8mb4_general_ci")
    try:
        yield in_process_agent(database_url=url, auth={"strategy": "trusted"},
                               DEFAULT={"enabled_backends": "lvm-1"}, **{"lvm-1": LVM})
    finally:
        drop()


def usage_xml(name: str) -> str:
    return ("<secret ephemeral='no' private='no'><usage type='ceph'>"
            f"<name>{name}</name></usage></secret>")


def test_projects_differing_in_case_or_a_trailing_space_stay_apart(agent, api):
    api = client_of(api, agent)
    name = f"client.{uuid.uuid4().hex[:8]}"
    volume_id = str(uuid.uuid4())
    owned = {project: api.secret_define_xml(member(project), usage_xml(name))
             for project in PROJECTS}
    for project in PROJECTS:
        api.volume_glance_metadata_set(member_with_service(project), volume_id,
                                       {"licence": f"of {project!r}"}, wait=True)

    assert len(set(owned.values())) == len(PROJECTS)
    for project in PROJECTS:
        ctxt = member(project)
        assert api.secret_lookup_by_usage(ctxt, "ceph", name) == owned[project]
        assert [found["uuid"] for found in api.secret_list(ctxt)] == [owned[project]]
        assert api.volume_glance_metadata_get(ctxt, volume_id) == {"licence": f"of {project!r}"}


def test_a_usage_differing_in_case_or_a_trailing_space_is_another_usage(agent, api):
    api = client_of(api, agent)
    ctxt = member(f"project-{uuid.uuid4().hex[:8]}")
    name = f"client.{uuid.uuid4().hex[:8]}"
    names = (name, name.upper(), name + " ")
    owned = {usage: api.secret_define_xml(ctxt, usage_xml(usage)) for usage in names}
    for usage in names:
        assert api.secret_lookup_by_usage(ctxt, "ceph", usage) == owned[usage]


def test_initiator_data_of_namespace_LVM_leaves_lvm_alone(agent, api: CustosAPI):
    api = client_of(api, agent)
    ctxt = member_with_service()
    initiator = f"iqn.1993-08.org.debian:01:{uuid.uuid4().hex[:12]}"
    api.initiator_data_update(ctxt, initiator, "lvm", set_values={"password": "the driver's"})

    api.initiator_data_update(ctxt, initiator, "LVM", set_values={"password": "forged"},
                              remove_values=["other"])
    api.initiator_data_update(ctxt, initiator, "lvm ", remove_values=["password"])

    assert api.initiator_data_get(admin(), initiator, "lvm") == {"password": "the driver's"}
    assert api.initiator_data_get(admin(), initiator, "LVM") == {"password": "forged"}
    assert api.initiator_data_get(admin(), initiator, "lvm ") == {}
