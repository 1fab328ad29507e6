"""Backup metadata over RPC: export, import, get and delete as callers see them."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from agent import exception
from agent.backups import metadata
from agent.keystore import signing
from db import api as db_api
from tests.common import (OTHER_PROJECT, PROJECT, admin, auditor, make_context, member,
                          member_with_service, nobody, service_only)

BACKUP = str(uuid.uuid4())
OTHER_BACKUP = str(uuid.uuid4())
SOURCE = str(uuid.uuid4())
TARGET = str(uuid.uuid4())
LICENCE = "WIN-LICENCE-7f3a9c21d0e4"
GLANCE = {"image_id": "5e4c6ad2-3a54-4f3c-9d1a-6b7b2f0c1e55", "license": LICENCE}
VOLUME = {"id": SOURCE, "base": {"display_name": "db", "display_description": "main",
                                 "encryption_key_id": None, "size": 10},
          "metadata": {"tier": "gold"}}

CINDER_V2 = json.dumps({
    "version": 2,
    "volume-base-metadata": {"display_name": "old", "display_description": "",
                             "encryption_key_id": None},
    "volume-metadata": {"owner": "alice"},
    "volume-glance-metadata": {"image_id": "cirros", "license": LICENCE},
})

SIGNED_MEMBERS = ("version", "volume-glance-metadata", "signature")


@pytest.fixture
def exported(harness):
    """A volume with glance metadata, exported as BACKUP; the document."""
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, SOURCE, GLANCE, wait=True)
    return harness.api.backup_metadata_export(ctxt, BACKUP, VOLUME)


def stored_path(harness, backup_id=BACKUP, project=PROJECT) -> Path:
    return Path(harness.runtime.conf.state_path) / "backups" / f"SERVICE_{project}" / (
        f"{backup_id}.json")


def signed_span(text: str) -> list[int]:
    """Character positions of the signed members of a canonical document."""
    decoded = json.loads(text)
    positions: list[int] = []
    for name in SIGNED_MEMBERS:
        fragment = json.dumps(name) + ":" + json.dumps(
            decoded[name], sort_keys=True, separators=(",", ":"))
        start = text.index(fragment)
        positions.extend(range(start, start + len(fragment)))
    return positions


# -- export ---------------------------------------------------------------------

def test_export_returns_a_signed_document_in_cinder_layout(harness, exported):
    decoded = json.loads(exported)

    assert decoded["version"] == 3
    assert decoded["volume-glance-metadata"] == GLANCE
    assert decoded["volume-metadata"] == {"tier": "gold"}
    assert decoded["volume-base-metadata"] == VOLUME["base"]
    assert decoded["signature"]["backup_id"] == BACKUP
    assert decoded["signature"]["volume_id"] == SOURCE
    assert isinstance(decoded["volume-glance-metadata"], dict)  # encoded once


def test_export_writes_the_document_to_the_service_account(harness, exported):
    path = stored_path(harness)

    assert path.read_text() == exported
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not (path.parent.parent / f"AUTH_{PROJECT}").exists()


def test_export_is_announced_without_glance_values_or_key_material(harness, exported,
                                                                    captured_logs):
    (sent,) = harness.notifications("backup.metadata.export")
    key_id, key = db_api.run_in_transaction(
        lambda s: signing.active(s, harness.runtime.ring))

    assert sent["payload"]["backup_id"] == BACKUP
    assert sent["payload"]["volume_id"] == SOURCE
    assert sent["payload"]["project_id"] == PROJECT
    assert sent["payload"]["account"] == f"SERVICE_{PROJECT}"
    assert sent["payload"]["key_id"] == key_id
    assert sent["payload"]["glance_keys"] == ["image_id", "license"]
    everything = repr(harness.notifications()) + captured_logs.text
    assert LICENCE not in everything
    assert key.hex() not in everything and repr(key) not in everything


def test_export_again_for_another_volume_is_a_conflict(harness, exported):
    with pytest.raises(exception.BackupMetadataConflict):
        harness.api.backup_metadata_export(member_with_service(), BACKUP,
                                           dict(VOLUME, id=str(uuid.uuid4())))

    assert stored_path(harness).read_text() == exported


def test_export_again_of_the_same_volume_is_idempotent(harness, exported):
    again = harness.api.backup_metadata_export(member_with_service(), BACKUP, VOLUME)

    assert again == exported


def _miss_the_record_once(monkeypatch):
    """Make the next export look for its record before a concurrent one committed it."""
    from agent.backups import records

    real = records.get
    missed: list[bool] = []

    def stale(session, project_id, backup_id):
        if not missed:
            missed.append(True)
            return None
        return real(session, project_id, backup_id)

    monkeypatch.setattr(records, "get", stale)
    return missed


def test_a_first_export_that_loses_the_race_gets_the_winners_answer(harness, exported,
                                                                     monkeypatch):
    missed = _miss_the_record_once(monkeypatch)

    again = harness.api.backup_metadata_export(member_with_service(), BACKUP, VOLUME)

    assert missed == [True]
    assert again == exported
    assert stored_path(harness).read_text() == exported


def test_a_first_export_racing_one_for_another_volume_is_a_conflict(harness, exported,
                                                                    monkeypatch):
    missed = _miss_the_record_once(monkeypatch)

    with pytest.raises(exception.BackupMetadataConflict):
        harness.api.backup_metadata_export(member_with_service(), BACKUP,
                                           dict(VOLUME, id=str(uuid.uuid4())))

    assert missed == [True]
    assert stored_path(harness).read_text() == exported


@pytest.mark.parametrize("volume, field", [
    ({"base": {}, "metadata": {}}, "volume.id"),
    ({"id": "nope"}, "volume.id"),
    ({"id": SOURCE, "glance": {}}, "volume.glance"),
    ({"id": SOURCE, "metadata": {"k": 1}}, "volume.metadata[k]"),
    ({"id": SOURCE, "metadata": {"k": "v" * 256}}, "volume.metadata[k]"),
    ({"id": SOURCE, "base": []}, "volume.base"),
    ({"id": SOURCE, "base": {"blob": "x" * (1 << 20)}}, "volume"),
    ("volume", "volume"),
])
def test_export_refuses_bad_volumes_by_field(harness, volume, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.backup_metadata_export(member_with_service(), BACKUP, volume)

    assert caught.value.kwargs["field"] == field
    assert not stored_path(harness).exists()


def test_export_refuses_a_bad_backup_id(harness):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.backup_metadata_export(member_with_service(), "../../etc/passwd", VOLUME)

    assert caught.value.kwargs["field"] == "backup_id"


# -- import -----------------------------------------------------------------------

def test_import_from_the_store_restores_everything_onto_a_new_volume(harness, exported):
    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET)

    assert result["glance_verified"] is True
    assert result["bootable"] is True
    assert result["glance_metadata"] == GLANCE
    assert result["metadata"] == {"tier": "gold"}
    assert result["base"] == {"display_name": "db", "display_description": "main",
                              "encryption_key_id": None}
    assert harness.api.volume_glance_metadata_get(member(), TARGET) == GLANCE
    (sent,) = harness.notifications("backup.metadata.import")
    assert sent["payload"]["source_volume_id"] == SOURCE
    assert sent["payload"]["volume_id"] == TARGET
    assert harness.notifications("backup.metadata.tampered") == []


def test_import_of_the_callers_copy_verifies_too(harness, exported):
    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET,
                                                exported)

    assert result["glance_verified"] is True


def test_every_single_byte_flip_of_the_signed_part_is_caught(harness, exported):
    ctxt = member_with_service()
    positions = signed_span(exported)
    caught = 0

    for position in positions:
        flipped = (exported[:position] + chr(ord(exported[position]) ^ 0x01)
                   + exported[position + 1:])
        try:
            result = harness.api.backup_metadata_import(ctxt, BACKUP, TARGET, flipped)
        except exception.BackupMetadataUnsupportedVersion:
            raise AssertionError(f"flip at {position} was not treated as tampering")
        assert result["glance_verified"] is False, position
        assert result["glance_metadata"] == {}, position
        caught += 1

    assert caught == len(positions) > 200
    assert len(harness.notifications("backup.metadata.tampered")) == len(positions)
    assert harness.api.volume_glance_metadata_get(member(), TARGET) == {}


def test_a_tampered_document_drops_glance_but_restores_user_metadata(harness, exported,
                                                                    captured_logs):
    forged = exported.replace(LICENCE, "ENTERPRISE-" + LICENCE[11:])
    harness.api.volume_glance_metadata_set(member_with_service(), TARGET, {"old": "x"},
                                           wait=True)

    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET, forged)

    assert result == {"metadata": {"tier": "gold"}, "glance_metadata": {},
                      "bootable": False, "glance_verified": False,
                      "base": {"display_name": "db", "display_description": "main",
                               "encryption_key_id": None}}
    assert harness.api.volume_glance_metadata_get(member(), TARGET) == {}
    (sent,) = harness.notifications("backup.metadata.tampered")
    assert sent["priority"] == "error"
    assert sent["payload"]["backup_id"] == BACKUP
    assert sent["payload"]["volume_id"] == TARGET
    assert sent["payload"]["source_volume_id"] == SOURCE
    assert sent["payload"]["project_id"] == PROJECT
    assert sent["payload"]["reason"] == "signature does not match"
    assert LICENCE[11:] not in repr(harness.notifications()) + captured_logs.text


def test_a_tampered_stored_document_is_caught(harness, exported):
    path = stored_path(harness)
    path.write_bytes(path.read_bytes().replace(b"image_id", b"image_iD"))

    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET)

    assert result["glance_verified"] is False
    assert result["metadata"] == {"tier": "gold"}
    assert len(harness.notifications("backup.metadata.tampered")) == 1


def test_stored_bytes_that_are_not_text_are_tampering(harness, exported):
    path = stored_path(harness)
    path.write_bytes(b"\xff" + path.read_bytes()[1:])

    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET)

    assert result["glance_verified"] is False
    assert result["metadata"] == {}
    assert len(harness.notifications("backup.metadata.tampered")) == 1


def test_a_signature_moved_from_another_backup_does_not_verify(harness, exported):
    ctxt = member_with_service()
    other_volume = str(uuid.uuid4())
    harness.api.backup_metadata_export(ctxt, OTHER_BACKUP, dict(VOLUME, id=other_volume))

    result = harness.api.backup_metadata_import(ctxt, OTHER_BACKUP, TARGET, exported)

    assert result["glance_verified"] is False
    assert harness.notifications("backup.metadata.tampered")[0]["payload"]["reason"] == (
        "signature belongs to another backup")


def test_a_signed_document_custos_has_no_record_of_does_not_verify(harness, exported):
    ctxt = member_with_service()
    harness.api.backup_metadata_delete(ctxt, BACKUP)

    result = harness.api.backup_metadata_import(ctxt, BACKUP, TARGET, exported)

    assert result["glance_verified"] is False
    assert result["metadata"] == {"tier": "gold"}


def test_a_document_signed_before_rotation_still_verifies(harness, exported):
    old_key = json.loads(exported)["signature"]["key_id"]
    new_key = db_api.run_in_transaction(lambda s: signing.create(s, harness.runtime.ring))

    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET)
    newer = harness.api.backup_metadata_export(member_with_service(), OTHER_BACKUP, VOLUME)

    assert result["glance_verified"] is True
    assert json.loads(newer)["signature"]["key_id"] == new_key != old_key


@pytest.fixture
def fail_on_tamper(migrated):
    migrated.set_override("tamper_policy", "fail", group="backup")


def test_tamper_policy_fail_refuses_and_writes_nothing(fail_on_tamper, harness, exported):
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, TARGET, {"old": "x"}, wait=True)
    forged = exported.replace(LICENCE, LICENCE.upper())

    with pytest.raises(exception.BackupMetadataTampered) as caught:
        harness.api.backup_metadata_import(ctxt, BACKUP, TARGET, forged)

    assert caught.value.code == "backup_metadata_tampered"
    assert harness.api.volume_glance_metadata_get(ctxt, TARGET) == {"old": "x"}
    (sent,) = harness.notifications("backup.metadata.tampered")
    assert sent["priority"] == "error"
    assert sent["payload"]["tamper_policy"] == "fail"
    assert harness.notifications("backup.metadata.import") == []
    assert harness.api.backup_metadata_import(ctxt, BACKUP, TARGET)["glance_verified"]


def test_cinder_version_2_imports_user_metadata_without_glance_by_default(harness):
    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET,
                                                CINDER_V2)

    assert result["metadata"] == {"owner": "alice"}
    assert result["glance_metadata"] == {}
    assert result["glance_verified"] is False
    assert result["bootable"] is False
    assert result["base"]["display_name"] == "old"
    assert harness.api.volume_glance_metadata_get(member(), TARGET) == {}
    assert harness.notifications("backup.metadata.tampered") == []


@pytest.fixture
def accept_unsigned(migrated):
    migrated.set_override("accept_unsigned_glance_metadata", True, group="backup")


def test_cinder_glance_metadata_comes_back_when_accepted(accept_unsigned, harness):
    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET,
                                                CINDER_V2)

    assert result["glance_metadata"] == {"image_id": "cirros", "license": LICENCE}
    assert result["glance_verified"] is False
    assert result["bootable"] is True
    assert harness.api.volume_glance_metadata_get(member(), TARGET)["license"] == LICENCE


def test_cinder_version_1_imports(harness):
    document = json.dumps({"version": 1, "volume-metadata": {"a": "b"}})

    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET, document)

    assert result["metadata"] == {"a": "b"}


def test_an_unsigned_document_for_a_signed_backup_is_a_downgrade(accept_unsigned, harness,
                                                                 exported):
    result = harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET,
                                                CINDER_V2)

    assert result["glance_verified"] is False
    assert result["glance_metadata"] == {}
    assert result["metadata"] == {"owner": "alice"}
    assert len(harness.notifications("backup.metadata.tampered")) == 1


@pytest.mark.parametrize("version", [0, 4, 99, "2", None])
def test_an_unknown_version_is_refused(harness, version):
    document = json.dumps({"version": version, "volume-metadata": {}})

    with pytest.raises(exception.BackupMetadataUnsupportedVersion):
        harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET, document)


@pytest.mark.parametrize("document", ["", "not json", "[]", '{"volume-metadata": {}}',
                                      7, ["x"]])
def test_garbage_documents_are_invalid_input(harness, document):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET, document)

    assert caught.value.kwargs["field"] == "document"
    assert harness.api.health(nobody())["database"] == "ok"


def test_import_without_a_document_of_an_unknown_backup_is_not_found(harness):
    with pytest.raises(exception.BackupNotFound):
        harness.api.backup_metadata_import(member_with_service(), BACKUP, TARGET)


# -- who may touch a SERVICE_ account -------------------------------------------

ONE_TOKEN = [member(), admin(), service_only(PROJECT), auditor(PROJECT), nobody()]
ONE_TOKEN_IDS = ["user-only", "admin-user-only", "service-only", "auditor", "nobody"]


@pytest.mark.parametrize("ctxt", ONE_TOKEN, ids=ONE_TOKEN_IDS)
def test_one_token_cannot_export_import_or_delete(harness, exported, ctxt):
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_export(ctxt, OTHER_BACKUP, VOLUME)
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_import(ctxt, BACKUP, TARGET)
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_delete(ctxt, BACKUP)

    assert stored_path(harness).read_text() == exported
    assert not stored_path(harness, OTHER_BACKUP).exists()
    assert harness.api.volume_glance_metadata_get(admin(), TARGET) == {}


@pytest.mark.parametrize("ctxt", [member(), admin(), service_only(PROJECT), nobody()],
                         ids=["user-only", "admin-user-only", "service-only", "nobody"])
def test_one_token_cannot_read_a_service_account(harness, exported, ctxt):
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_get(ctxt, BACKUP)


def test_both_tokens_and_the_auditor_read_the_stored_document(harness, exported):
    assert harness.api.backup_metadata_get(member_with_service(), BACKUP) == exported
    assert harness.api.backup_metadata_get(auditor(), BACKUP) == exported
    assert harness.api.backup_metadata_get(auditor(OTHER_PROJECT), BACKUP) == exported


@pytest.mark.parametrize("stranger", [member_with_service(OTHER_PROJECT),
                                      make_context(OTHER_PROJECT, ["admin"], ["service"])],
                         ids=["member-of-p2", "admin-of-p2"])
def test_recording_the_owners_ids_does_not_make_its_document_verify(harness, exported,
                                                                     stranger):
    harness.api.backup_metadata_export(stranger, BACKUP, VOLUME)

    stolen = harness.api.backup_metadata_import(stranger, BACKUP, TARGET, exported)
    owned = harness.api.backup_metadata_import(member_with_service(), BACKUP,
                                               str(uuid.uuid4()), exported)

    assert stolen["glance_verified"] is False and stolen["glance_metadata"] == {}
    assert harness.api.volume_glance_metadata_get(stranger, TARGET) == {}
    assert owned["glance_verified"] is True and owned["glance_metadata"] == GLANCE


def test_the_auditor_is_told_when_several_projects_hold_an_id(harness, exported):
    theirs = harness.api.backup_metadata_export(member_with_service(OTHER_PROJECT), BACKUP,
                                                dict(VOLUME, id=str(uuid.uuid4())))

    with pytest.raises(exception.BackupRecordedInSeveralProjects) as refused:
        harness.api.backup_metadata_get(auditor(), BACKUP)

    assert refused.value.kwargs["accounts"] == ", ".join(
        sorted([f"SERVICE_{PROJECT}", f"SERVICE_{OTHER_PROJECT}"]))
    assert harness.api.backup_metadata_get(member_with_service(), BACKUP) == exported
    assert harness.api.backup_metadata_get(member_with_service(OTHER_PROJECT),
                                           BACKUP) == theirs


def test_auditor_finds_a_document_whose_record_is_gone(harness, exported):
    path = stored_path(harness)
    saved = path.read_text()
    harness.api.backup_metadata_delete(member_with_service(), BACKUP)
    path.parent.mkdir(exist_ok=True)
    path.write_text(saved)

    assert harness.api.backup_metadata_get(auditor(), BACKUP) == exported


@pytest.mark.parametrize("stranger", [member_with_service(OTHER_PROJECT),
                                      make_context(OTHER_PROJECT, ["admin"], ["service"])],
                         ids=["member-of-p2", "admin-of-p2"])
def test_another_projects_operator_meets_the_backup_as_if_nobody_held_it(
        harness, exported, stranger):
    unknown = str(uuid.uuid4())
    answers = []
    for backup in (BACKUP, unknown):
        for call in (lambda: harness.api.backup_metadata_get(stranger, backup),
                     lambda: harness.api.backup_metadata_import(stranger, backup, TARGET)):
            with pytest.raises(exception.BackupNotFound) as refused:
                call()
            answers.append(refused.value.msg.replace(backup, "<id>"))
        answers.append(harness.api.backup_metadata_delete(stranger, backup))

    assert answers[:3] == answers[3:]
    assert answers[2] is None
    assert stored_path(harness).read_text() == exported
    assert harness.api.backup_metadata_get(member_with_service(), BACKUP) == exported


def test_get_of_an_unknown_backup_is_not_found(harness):
    for ctxt in (member_with_service(), auditor()):
        with pytest.raises(exception.BackupNotFound):
            harness.api.backup_metadata_get(ctxt, BACKUP)


def test_the_auditor_hears_of_a_bounded_number_of_accounts(harness, exported):
    projects = sorted([PROJECT] + [f"p{n:02d}" for n in range(metadata.LISTED_ACCOUNTS + 2)])
    for project in set(projects) - {PROJECT}:
        harness.api.backup_metadata_export(member_with_service(project), BACKUP,
                                           dict(VOLUME, id=str(uuid.uuid4())))

    with pytest.raises(exception.BackupRecordedInSeveralProjects) as refused:
        harness.api.backup_metadata_get(auditor(), BACKUP)

    listed = [f"SERVICE_{p}" for p in projects[:metadata.LISTED_ACCOUNTS]]
    assert refused.value.kwargs["accounts"] == ", ".join(listed + ["..."])


# -- delete -------------------------------------------------------------------------

def test_delete_removes_record_and_document_and_is_idempotent(harness, exported):
    ctxt = member_with_service()

    assert harness.api.backup_metadata_delete(ctxt, BACKUP) is None
    assert harness.api.backup_metadata_delete(ctxt, BACKUP) is None

    assert not stored_path(harness).exists()
    with pytest.raises(exception.BackupNotFound):
        harness.api.backup_metadata_get(ctxt, BACKUP)
    (sent,) = harness.notifications("backup.metadata.delete")
    assert sent["payload"] == {"backup_id": BACKUP, "volume_id": SOURCE,
                               "project_id": PROJECT, "account": f"SERVICE_{PROJECT}"}
