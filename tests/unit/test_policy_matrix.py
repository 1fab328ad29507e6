"""Who may call what: every RPC method against every kind of caller, in two projects.

Each row of :data:`MATRIX` names a method, how to call it on a resource of
project P1 (made fresh for each caller), and what each caller observes:

``ok``
    the call does its work (a read returns P1's data);
``empty``
    the call succeeds but shows nothing of P1 (a list or read scoped to
    the caller's own project);
``hidden``
    P1's resource does not exist for this caller (``SecretNotFound``,
    ``BackupNotFound``);
``elsewhere``
    the administrator is told the UUID is held elsewhere, nothing changes;
``forbidden``
    ``Forbidden``.

Callers not listed in a row get ``forbidden``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent import exception, policy
from tests.common import (admin, auditor, make_context, member, member_with_service,
                          service_only)
from tests.unit.connections.conftest import configure_backend

P1 = "aaaaaaaaaaaa4aaa8aaaaaaaaaaaaaa1"
P2 = "bbbbbbbbbbbb4bbb8bbbbbbbbbbbbbb2"
INITIATOR = "iqn.1993-08.org.debian:01:matrix"
LICENCE = {"license": "WIN-7f3a9c21"}

CALLERS: dict[str, Any] = {
    "member": member(P1),
    "member-other": member(P2),
    "reader": make_context(P1, ["reader"]),
    "admin": admin(P1),
    "admin-other": admin(P2),
    "service": service_only(P1),
    "service-user": make_context(None, ["service"]),
    "composite": member_with_service(P1),
    "composite-other": member_with_service(P2),
    "audit": auditor(),
    "projectless": make_context(None, ["member"]),
    "projectless-admin": make_context(None, ["admin", "member"], ["service"]),
    "system-admin": make_context(None, ["admin", "member", "reader"], system_scope="all"),
}
OWNER = member_with_service(P1)
EVERYONE = {name: "ok" for name in CALLERS}
OPERATORS = {"member": "ok", "admin": "ok", "composite": "ok",
             "member-other": "ok", "admin-other": "ok", "composite-other": "ok"}
SERVICES = {"admin": "ok", "admin-other": "ok", "projectless-admin": "ok", "service": "ok",
            "composite": "ok", "composite-other": "ok", "system-admin": "ok"}
# Read a P1 secret: its own project, or the administrator of any project.
# A system-scoped administrator has no project and sees every project's.
SECRET_READ = {"member": "ok", "admin": "ok", "composite": "ok", "admin-other": "ok",
               "member-other": "hidden", "composite-other": "hidden", "system-admin": "ok"}
# Read a P1 secret's value: its own project, or a system-scoped administrator
# (custos:read_other_project_values); a project's administrator sees the
# secret but not its value.
SECRET_VALUE = {**SECRET_READ, "admin-other": "forbidden", "system-admin": "ok"}
# Write a P1 secret: its own project only.
SECRET_WRITE = {"member": "ok", "admin": "ok", "composite": "ok", "admin-other": "elsewhere",
                "member-other": "hidden", "composite-other": "hidden",
                "system-admin": "elsewhere"}
BACKUP_OWN = {"composite": "ok", "composite-other": "hidden"}


def _xml(uuid_: str | None = None) -> str:
    name = uuid.uuid4().hex
    inner = f"<uuid>{uuid_}</uuid>" if uuid_ else ""
    return (f"<secret ephemeral='no' private='no'>{inner}<usage type='ceph'>"
            f"<name>{name}</name></usage></secret>")


@dataclass
class Resources:
    """What P1 owns before each call: a secret, glance metadata and a backup."""

    secret: str
    usage: str
    volume: str
    backup: str
    details: dict[str, Any] = field(default_factory=dict)


def prepare(api: Any) -> Resources:
    usage = uuid.uuid4().hex
    secret = api.secret_define_xml(OWNER, (
        "<secret ephemeral='no' private='no'><usage type='ceph'>"
        f"<name>{usage}</name></usage></secret>"))
    api.secret_set_value(OWNER, secret, b"p1-value")
    volume = str(uuid.uuid4())
    api.volume_glance_metadata_set(OWNER, volume, LICENCE, wait=True)
    backup = str(uuid.uuid4())
    api.backup_metadata_export(OWNER, backup, {"id": volume, "base": {}})
    return Resources(secret=secret, usage=usage, volume=volume, backup=backup)


def seen(found: bool) -> str:
    return "ok" if found else "empty"


def backup_deleted(api: Any, ctx: Any, backup: str) -> str:
    """Delete as ``ctx``; "empty" when P1's backup survived it.

    Deleting a backup the caller's project does not hold is the same
    quiet no-op whether or not another project holds the id.
    """
    api.backup_metadata_delete(ctx, backup)
    try:
        api.backup_metadata_get(OWNER, backup)
    except exception.BackupNotFound:
        return "ok"
    return "empty"


# method -> (call(api, ctx, resources) -> outcome or None, {caller: expected})
Call = Callable[[Any, Any, Resources], Any]
MATRIX: dict[str, tuple[Call, dict[str, str]]] = {
    "health": (lambda api, ctx, r: api.health(ctx), EVERYONE),
    "initialize_connection": (
        lambda api, ctx, r: api.initialize_connection(
            ctx, {"id": r.volume}, {"initiator": INITIATOR, "host": "h"}),
        {**SERVICES, "service-user": "ok"}),
    "terminate_connection": (
        lambda api, ctx, r: api.terminate_connection(
            ctx, {"id": r.volume}, {"initiator": INITIATOR, "host": "h"}),
        {**SERVICES, "service-user": "ok"}),
    "initiator_data_get": (
        lambda api, ctx, r: api.initiator_data_get(ctx, INITIATOR, "lvm"),
        {"admin": "ok", "admin-other": "ok", "projectless-admin": "ok", "system-admin": "ok"}),
    "initiator_data_update": (
        lambda api, ctx, r: api.initiator_data_update(ctx, INITIATOR, "ns",
                                                      set_values={"k": "v"}),
        {"composite": "ok", "composite-other": "ok", "projectless-admin": "ok"}),
    "secret_define_xml (new)": (
        lambda api, ctx, r: api.secret_define_xml(ctx, _xml()), OPERATORS),
    "secret_define_xml (P1's UUID)": (
        lambda api, ctx, r: api.secret_define_xml(ctx, (
            f"<secret ephemeral='no' private='no'><uuid>{r.secret}</uuid>"
            f"<description>changed</description><usage type='ceph'><name>{r.usage}</name>"
            "</usage></secret>")), SECRET_WRITE),
    "secret_get_xml_desc": (
        lambda api, ctx, r: api.secret_get_xml_desc(ctx, r.secret), SECRET_READ),
    "secret_set_value": (
        lambda api, ctx, r: api.secret_set_value(ctx, r.secret, b"overwritten"), SECRET_WRITE),
    "secret_get_value": (
        lambda api, ctx, r: api.secret_get_value(ctx, r.secret), SECRET_VALUE),
    "secret_undefine": (
        lambda api, ctx, r: api.secret_undefine(ctx, r.secret), SECRET_READ),
    "secret_list": (
        lambda api, ctx, r: seen(r.secret in {s["uuid"] for s in api.secret_list(ctx)}),
        {**OPERATORS, "member-other": "empty", "composite-other": "empty",
         "system-admin": "ok"}),
    "secret_lookup_by_usage": (
        lambda api, ctx, r: api.secret_lookup_by_usage(ctx, "ceph", r.usage),
        {**SECRET_READ, "admin-other": "hidden", "system-admin": "forbidden"}),
    "secret_lookup_by_usage (project_id=P1)": (
        lambda api, ctx, r: api.secret_lookup_by_usage(ctx, "ceph", r.usage, project_id=P1),
        {"member": "ok", "admin": "ok", "composite": "ok", "admin-other": "ok",
         "system-admin": "ok"}),
    "secret_generate": (
        lambda api, ctx, r: api.secret_generate(ctx, "ceph", uuid.uuid4().hex), OPERATORS),
    "volume_glance_metadata_set": (
        lambda api, ctx, r: api.volume_glance_metadata_set(ctx, r.volume, {"license": "x"},
                                                           wait=True),
        {"composite": "ok", "composite-other": "ok"}),
    "volume_glance_metadata_get": (
        lambda api, ctx, r: seen(api.volume_glance_metadata_get(ctx, r.volume) == LICENCE),
        {"member": "ok", "admin": "ok", "composite": "ok", "member-other": "empty",
         "admin-other": "empty", "composite-other": "empty"}),
    "volume_glance_metadata_get (project_id=P1)": (
        lambda api, ctx, r: seen(api.volume_glance_metadata_get(ctx, r.volume, project_id=P1)
                                 == LICENCE),
        {"member": "ok", "admin": "ok", "composite": "ok", "admin-other": "ok",
         "system-admin": "ok"}),
    "volume_glance_metadata_copy": (
        lambda api, ctx, r: api.volume_glance_metadata_copy(ctx, r.volume, str(uuid.uuid4()),
                                                            wait=True),
        {"composite": "ok", "composite-other": "ok"}),
    "backup_metadata_export": (
        lambda api, ctx, r: api.backup_metadata_export(ctx, str(uuid.uuid4()),
                                                       {"id": r.volume, "base": {}}),
        {"composite": "ok", "composite-other": "ok"}),
    "backup_metadata_import": (
        lambda api, ctx, r: api.backup_metadata_import(ctx, r.backup, str(uuid.uuid4())),
        BACKUP_OWN),
    "backup_metadata_get": (
        lambda api, ctx, r: api.backup_metadata_get(ctx, r.backup),
        {**BACKUP_OWN, "audit": "ok"}),
    "backup_metadata_delete": (
        lambda api, ctx, r: backup_deleted(api, ctx, r.backup),
        {"composite": "ok", "composite-other": "empty"}),
    "instance_boot_roles_set": (
        lambda api, ctx, r: api.instance_boot_roles_set(ctx, str(uuid.uuid4()), ["member"],
                                                        wait=True),
        SERVICES),
    "vendordata_get": (
        lambda api, ctx, r: api.vendordata_get(ctx, {"uuid": str(uuid.uuid4()),
                                                     "project_id": P1}),
        SERVICES),
}


def observe(call: Call, api: Any, ctx: Any, resources: Resources) -> str:
    try:
        result = call(api, ctx, resources)
    except exception.Forbidden:
        return "forbidden"
    except (exception.SecretNotFound, exception.BackupNotFound):
        return "hidden"
    except exception.SecretOwnedElsewhere:
        return "elsewhere"
    return result if result in ("ok", "empty") else "ok"


@pytest.fixture
def harness_with_backend(migrated, request):
    configure_backend(migrated, "lvm-1", "iscsi_chap", volume_backend_name="lvm",
                      target_portal="192.0.2.10:3260")
    migrated.set_override("enabled_backends", ["lvm-1"])
    return request.getfixturevalue("harness")


def test_every_rpc_method_has_a_row():
    methods = {name.split(" ")[0] for name in MATRIX}
    # key_* rows belong to the key manager backend and are tested with it.
    assert {m for m in policy.METHOD_RULES if not m.startswith("key_")} == methods


@pytest.mark.parametrize("method", list(MATRIX))
def test_each_caller_gets_what_its_row_says(harness_with_backend, method):
    api = harness_with_backend.api
    call, allowed = MATRIX[method]

    observed = {}
    for name, ctx in CALLERS.items():
        resources = prepare(api)
        observed[name] = observe(call, api, ctx, resources)
        if observed[name] not in ("ok",):
            # A refusal changes nothing of P1's.
            assert api.secret_get_value(OWNER, resources.secret) == b"p1-value"
            assert api.volume_glance_metadata_get(OWNER, resources.volume) == LICENCE
            assert api.backup_metadata_get(OWNER, resources.backup)

    expected = {name: allowed.get(name, "forbidden") for name in CALLERS}
    assert observed == expected


@pytest.mark.parametrize("target", [None, "None", ""])
def test_a_context_without_a_project_operates_no_project(conf, target):
    # oslo.policy formats the target with %: a missing project must not
    # match a target project that reads 'None'.
    projectless = make_context(None, ["member"])

    assert policy.check(projectless, "project_operator", {"project_id": target}) is False
    with pytest.raises(exception.Forbidden):
        policy.authorize(projectless, "secret_list", {"project_id": target})
    assert policy.check(member("None"), "project_operator", {"project_id": "None"}) is True
