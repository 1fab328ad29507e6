"""Backup and glance metadata through RabbitMQ against the real custos-agent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from agent import exception
from tests.common import (OTHER_PROJECT, PROJECT, admin, auditor, make_context, member,
                          member_with_service, nobody, service_only)
from tests.functional.agentproc import run_script
from tests.functional.conftest import client_of

LICENCE = "WIN-LICENCE-7f3a9c21d0e4"
GLANCE = {"image_id": "5e4c6ad2-3a54-4f3c-9d1a-6b7b2f0c1e55", "license": LICENCE}
CINDER_V2 = json.dumps({
    "version": 2,
    "volume-base-metadata": {"display_name": "old"},
    "volume-metadata": {"owner": "alice"},
    "volume-glance-metadata": {"license": LICENCE},
})


def stored_path(proc, backup_id: str) -> Path:
    state = Path(proc.sections["DEFAULT"]["state_path"])
    return state / "backups" / f"SERVICE_{PROJECT}" / f"{backup_id}.json"


def export(api, backup_id: str, volume_id: str) -> str:
    ctxt = member_with_service()
    api.volume_glance_metadata_set(ctxt, volume_id, GLANCE, wait=True)
    return api.backup_metadata_export(ctxt, backup_id, {
        "id": volume_id, "base": {"display_name": "db"}, "metadata": {"tier": "gold"}})


@pytest.fixture
def agent_on(database_kind, shared_agent):
    """The module's agent on SQLite, then on PostgreSQL and MariaDB."""
    return shared_agent(database_kind)


@pytest.fixture
def agent(shared_agent):
    """The module's agent on SQLite."""
    return shared_agent("sqlite")


def test_glance_metadata_overwrites_and_copies_on_each_database(agent_on, api):
    api = client_of(api, agent_on)
    ctxt = member_with_service()
    source, clone = str(uuid.uuid4()), str(uuid.uuid4())

    api.volume_glance_metadata_set(ctxt, source, {"a": "1", "b": "2"}, wait=True)
    api.volume_glance_metadata_set(ctxt, source, {"b": "3"}, wait=True)
    api.volume_glance_metadata_set(ctxt, clone, {"b": "old", "stale": "x"}, wait=True)
    api.volume_glance_metadata_copy(ctxt, source, clone, wait=True)

    assert api.volume_glance_metadata_get(member(), source) == {"a": "1", "b": "3"}
    assert api.volume_glance_metadata_get(member(), clone) == {"a": "1", "b": "3"}


def test_tampered_stored_document_drops_glance_and_is_reported(agent_on, api, notifications):
    proc, api = agent_on, client_of(api, agent_on)
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    document = export(api, backup, source)
    path = stored_path(proc, backup)
    assert path.read_text() == document

    good = api.backup_metadata_import(member_with_service(), backup, str(uuid.uuid4()))
    path.write_text(document.replace(LICENCE, LICENCE.lower()))
    result = api.backup_metadata_import(member_with_service(), backup, target)

    assert good["glance_verified"] is True and good["glance_metadata"] == GLANCE
    assert result["glance_verified"] is False
    assert result["bootable"] is False
    assert result["glance_metadata"] == {}
    assert result["metadata"] == {"tier": "gold"}
    assert api.volume_glance_metadata_get(member(), target) == {}
    event = notifications.wait_for("backup.metadata.tampered")
    assert event["priority"] == "error"
    assert event["payload"]["backup_id"] == backup
    assert event["payload"]["volume_id"] == target
    assert event["payload"]["source_volume_id"] == source
    assert LICENCE not in json.dumps(event) and LICENCE not in proc.log()


def test_tamper_policy_fail_refuses_the_import(shared_agent, api, notifications):
    api = client_of(api, shared_agent("sqlite", backup={"tamper_policy": "fail"}))
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    document = export(api, backup, source)

    with pytest.raises(exception.BackupMetadataTampered):
        api.backup_metadata_import(member_with_service(), backup, target,
                                   document.replace('"tier"', '"tieR"').replace(
                                       LICENCE, LICENCE[::-1]))

    assert api.volume_glance_metadata_get(member(), target) == {}
    assert notifications.wait_for("backup.metadata.tampered")["payload"][
        "tamper_policy"] == "fail"


def test_every_byte_flip_of_the_signed_part_is_caught_over_the_bus(agent, api):
    api = client_of(api, agent)
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    document = export(api, backup, source)
    decoded = json.loads(document)
    positions: list[int] = []
    for name in ("version", "volume-glance-metadata", "signature"):
        fragment = json.dumps(name) + ":" + json.dumps(decoded[name], sort_keys=True,
                                                       separators=(",", ":"))
        start = document.index(fragment)
        positions.extend(range(start, start + len(fragment)))

    verdicts = []
    for position in positions:
        flipped = (document[:position] + chr(ord(document[position]) ^ 0x01)
                   + document[position + 1:])
        result = api.backup_metadata_import(member_with_service(), backup, target, flipped)
        verdicts.append(result["glance_verified"] or result["glance_metadata"] != {})

    assert len(positions) > 200
    assert not any(verdicts)
    assert api.backup_metadata_import(member_with_service(), backup, target,
                                      document)["glance_verified"] is True


def test_document_signed_before_rotate_signing_still_verifies(agent_on, api):
    proc, api = agent_on, client_of(api, agent_on)
    backup, later, source = (str(uuid.uuid4()) for _ in range(3))
    document = export(api, backup, source)

    rotated = json.loads(run_script("custos-manage", proc.config, "keys",
                                    "rotate-signing").stdout)
    keys = json.loads(run_script("custos-manage", proc.config, "keys", "list").stdout)
    restored = api.backup_metadata_import(member_with_service(), backup, str(uuid.uuid4()),
                                          document)
    newer = export(api, later, source)

    old_key = json.loads(document)["signature"]["key_id"]
    states = {key["key_id"]: key["state"] for key in keys["signing_keys"]}
    assert states == {old_key: "deactivated", rotated["signing_key_id"]: "active"}
    assert restored["glance_verified"] is True and restored["glance_metadata"] == GLANCE
    assert json.loads(newer)["signature"]["key_id"] == rotated["signing_key_id"]


def test_cinder_version_2_document_imports_without_glance(agent_on, api):
    api = client_of(api, agent_on)
    target = str(uuid.uuid4())

    result = api.backup_metadata_import(member_with_service(), str(uuid.uuid4()), target,
                                        CINDER_V2)

    assert result["metadata"] == {"owner": "alice"}
    assert result["glance_metadata"] == {}
    assert result["bootable"] is False
    assert api.volume_glance_metadata_get(member(), target) == {}


def test_unknown_version_is_refused_over_the_bus(agent, api):
    api = client_of(api, agent)

    with pytest.raises(exception.BackupMetadataUnsupportedVersion):
        api.backup_metadata_import(member_with_service(), str(uuid.uuid4()),
                                   str(uuid.uuid4()), json.dumps({"version": 9}))

    assert api.health(nobody())["database"] == "ok"


@pytest.mark.parametrize("ctxt", [member(), admin(), service_only(PROJECT), auditor(PROJECT)],
                         ids=["user-only", "admin-user-only", "service-only", "auditor"])
def test_one_token_cannot_write_glance_or_touch_a_service_account(agent, api, ctxt):
    proc, api = agent, client_of(api, agent)
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    account = stored_path(proc, backup).parent
    # Other tests of the module share the agent and its service account.
    before = {p.name for p in account.iterdir()} if account.exists() else set()
    document = export(api, backup, source)
    attempts = [
        lambda: api.volume_glance_metadata_set(ctxt, target, GLANCE, wait=True),
        lambda: api.volume_glance_metadata_copy(ctxt, source, target, wait=True),
        lambda: api.backup_metadata_export(ctxt, str(uuid.uuid4()), {"id": source}),
        lambda: api.backup_metadata_import(ctxt, backup, target),
        lambda: api.backup_metadata_import(ctxt, backup, target, document),
        lambda: api.backup_metadata_delete(ctxt, backup),
    ]
    if ctxt.service_roles != ["service_auditor"]:
        attempts.append(lambda: api.backup_metadata_get(ctxt, backup))

    for attempt in attempts:
        with pytest.raises(exception.Forbidden):
            attempt()

    assert api.volume_glance_metadata_get(admin(), target) == {}
    assert stored_path(proc, backup).read_text() == document
    assert sorted({p.name for p in account.iterdir()} - before) == [f"{backup}.json"]
    assert before <= {p.name for p in account.iterdir()}


def test_both_tokens_and_the_auditor_read_the_service_account(agent, api):
    api = client_of(api, agent)
    backup, source = str(uuid.uuid4()), str(uuid.uuid4())
    document = export(api, backup, source)

    assert api.backup_metadata_get(member_with_service(), backup) == document
    assert api.backup_metadata_get(auditor(), backup) == document
    api.backup_metadata_delete(member_with_service(), backup)
    with pytest.raises(exception.BackupNotFound):
        api.backup_metadata_get(auditor(), backup)


def test_cli_exports_reads_and_imports(agent, tmp_path):
    proc = agent
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    common = ["--project-id", PROJECT, "--roles", "member", "--service-roles", "service"]

    run_script("custos", proc.config, *common, "glance-metadata", "set", source,
               f"license={LICENCE}")
    exported = json.loads(run_script("custos", proc.config, *common, "backup", "export",
                                     backup, source, "--metadata", '{"tier": "gold"}').stdout)
    stored = json.loads(run_script("custos", proc.config, *common, "backup", "get",
                                   backup).stdout)
    (tmp_path / "doc.json").write_text(stored)
    restored = json.loads(run_script("custos", proc.config, *common, "backup", "import",
                                     backup, target, "--document-file",
                                     str(tmp_path / "doc.json")).stdout)
    refused = run_script("custos", proc.config, "--project-id", PROJECT, "--roles", "member",
                         "--service-roles", "", "backup", "get", backup, check=False)

    assert exported == stored
    assert restored["glance_verified"] is True
    assert restored["glance_metadata"] == {"license": LICENCE}
    assert refused.returncode == 1
    assert refused.stderr.startswith("custos: forbidden: ")


P2_CALLERS = [member_with_service(OTHER_PROJECT),
              make_context(OTHER_PROJECT, ["admin"], ["service"])]
P2_IDS = ["member-of-p2", "admin-of-p2"]


def answers_about(api, ctxt, backup_id: str) -> list[str]:
    """What ``ctxt`` hears about ``backup_id`` from get, import and delete.

    The id itself is replaced, so that the answers about two ids compare.
    """
    heard = []
    for call in (lambda: api.backup_metadata_get(ctxt, backup_id),
                 lambda: api.backup_metadata_import(ctxt, backup_id, str(uuid.uuid4())),
                 lambda: api.backup_metadata_delete(ctxt, backup_id)):
        try:
            heard.append(repr(call()))
        except exception.CustosException as error:
            heard.append(f"{error.to_dict()['error']}: {error.msg}")
    return [answer.replace(backup_id, "<id>") for answer in heard]


@pytest.mark.parametrize("other", P2_CALLERS, ids=P2_IDS)
def test_another_projects_backup_id_neither_conflicts_nor_is_claimed(agent, api, other):
    api, p1 = client_of(api, agent), member_with_service()
    taken, squatted, p1_source = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    document = export(api, taken, p1_source)

    # p2 exports an id p1 holds, and claims one before p1 exports it.
    theirs = api.backup_metadata_export(other, taken, {"id": str(uuid.uuid4())})
    api.backup_metadata_export(other, squatted, {"id": str(uuid.uuid4())})
    export(api, squatted, str(uuid.uuid4()))

    for backup in (taken, squatted):
        restored = api.backup_metadata_import(p1, backup, str(uuid.uuid4()))
        assert restored["glance_verified"] and restored["glance_metadata"] == GLANCE
    assert api.backup_metadata_get(p1, taken) == document
    assert api.backup_metadata_get(other, taken) == theirs
    assert p1_source not in theirs and LICENCE not in theirs
    assert api.backup_metadata_import(other, taken, str(uuid.uuid4()))[
        "glance_metadata"] == {}


@pytest.mark.parametrize("other", P2_CALLERS, ids=P2_IDS)
def test_nothing_of_p1s_backups_reaches_p2(agent, api, other):
    proc, api, p1 = agent, client_of(api, agent), member_with_service()
    held, unknown, source = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    document = export(api, held, source)

    heard = answers_about(api, other, held)
    # Even knowing p1's ids and document, p2 cannot make it verify as its own.
    api.backup_metadata_export(other, held, {"id": source})
    stolen = api.backup_metadata_import(other, held, str(uuid.uuid4()), document)

    assert heard == answers_about(api, other, unknown)
    assert heard[0].startswith("BackupNotFound: ") and heard[2] == "None"
    assert PROJECT not in "".join(heard)
    assert stolen["glance_verified"] is False and stolen["glance_metadata"] == {}
    assert stored_path(proc, held).read_text() == document
    assert api.backup_metadata_get(p1, held) == document


def test_a_projectless_token_learns_nothing_of_any_backup(agent, api):
    proc, api = agent, client_of(api, agent)
    held, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    document = export(api, held, str(uuid.uuid4()))
    projectless = make_context(None, ["admin", "member"], ["service"])

    heard = answers_about(api, projectless, held)

    assert heard == answers_about(api, projectless, unknown)
    assert all(answer.startswith("Forbidden: ") for answer in heard)
    with pytest.raises(exception.Forbidden):
        api.backup_metadata_export(projectless, held, {"id": str(uuid.uuid4())})
    assert stored_path(proc, held).read_text() == document


def test_the_auditor_reads_each_projects_backups_and_names_a_shared_id(agent, api):
    api, p1, p2 = client_of(api, agent), member_with_service(), member_with_service(
        OTHER_PROJECT)
    only_p1, shared = str(uuid.uuid4()), str(uuid.uuid4())
    document = export(api, only_p1, str(uuid.uuid4()))
    export(api, shared, str(uuid.uuid4()))
    api.backup_metadata_export(p2, shared, {"id": str(uuid.uuid4())})

    with pytest.raises(exception.BackupRecordedInSeveralProjects) as refused:
        api.backup_metadata_get(auditor(), shared)

    assert api.backup_metadata_get(auditor(OTHER_PROJECT), only_p1) == document
    assert f"SERVICE_{PROJECT}" in refused.value.msg
    assert f"SERVICE_{OTHER_PROJECT}" in refused.value.msg
