"""Backup metadata as Cinder's own chunked backup drivers store it, imported over RPC.

The documents here are built the way Cinder builds them, step by step:

* ``BackupMetadataAPI.get`` (``cinder/backup/driver.py``) starts a dict
  with ``{"version": CONF.backup_metadata_version}`` (2 by default, 1 on
  old deployments), then adds, in this order and only when not empty,
  ``volume-base-metadata`` (``_save_vol_base_meta``: every column of the
  volume's ``volumes`` row from ``db.volume_get``, datetimes turned into
  strings by ``jsonutils``), ``volume-metadata`` (``_save_vol_meta``: the
  user metadata as key -> value) and ``volume-glance-metadata``
  (``_save_vol_glance_meta``: the image properties as key -> value); and
  returns ``jsonutils.dumps`` of it: JSON *text*, default separators.
* ``ChunkedBackupDriver._write_metadata`` (``cinder/backup/chunkeddriver.py``,
  shared by the posix, NFS, Swift, S3 and GCS drivers) writes the object
  ``<prefix>_metadata`` as ``json.dumps(metadata, sort_keys=True,
  indent=2)`` of a dict holding ``version`` (the driver's
  ``DRIVER_VERSION``, the string ``"1.0.0"``), ``backup_id``, ``volume_id``,
  ``backup_name`` and ``backup_description`` (the backup's display name
  and description), ``created_at`` (``str()`` of the backup's datetime),
  ``objects`` (one ``{object name: {offset, length, md5, compression}}``
  per chunk, named ``<prefix>-00001`` and on), ``parent_id`` (the
  incremental backup's parent, or None) and ``volume_meta`` (the text
  above, as a string).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from agent import exception
from tests.common import PROJECT, member, member_with_service

USER = "4f0b6c2e1d9a4b7c8e5f3a2d1c0b9a8e"
VOLUME_TYPE = "5f0c8e3a-1d2b-4c6e-9a7f-3b8d2e1c0a94"
ENCRYPTION_KEY = "b7c1e2d3-0e4f-4aaa-8bbb-123456789abc"
GLANCE = {"image_id": "5e4c6ad2-3a54-4f3c-9d1a-6b7b2f0c1e55", "image_name": "win2019",
          "license": "WIN-DC-2019", "min_disk": "40"}


def volumes_row(volume_id: str, *, encrypted: bool) -> dict[str, Any]:
    """The ``volumes`` row of one volume, column by column, as ``db.volume_get`` reads it.

    ``provider_auth`` is what Cinder's iSCSI target helpers put there on
    export; ``jsonutils`` has turned the datetimes into ISO strings.
    """
    return {
        "created_at": "2026-01-02T03:04:05.000000", "updated_at": "2026-01-02T03:09:00.000000",
        "deleted_at": None, "deleted": False, "id": volume_id, "_name_id": None,
        "ec2_id": None, "user_id": USER, "project_id": PROJECT, "snapshot_id": None,
        "cluster_name": None, "host": "volume-1@lvm#lvm", "size": 40,
        "availability_zone": "nova", "status": "backing-up", "attach_status": "detached",
        "migration_status": None, "scheduled_at": "2026-01-02T03:04:05.000000",
        "launched_at": "2026-01-02T03:04:30.000000", "terminated_at": None,
        "display_name": "win-root", "display_description": "licensed root disk",
        "provider_location": f"192.0.2.10:3260,1 iqn.2010-10.org.openstack:volume-{volume_id} 1",
        "provider_auth": "CHAP kx3Qp2a9 Zt8rB4mWq7nV2cL5",
        "provider_geometry": None, "provider_id": None, "volume_type_id": VOLUME_TYPE,
        "source_volid": None,
        "encryption_key_id": ENCRYPTION_KEY if encrypted else None,
        "consistencygroup_id": None, "group_id": None, "bootable": True,
        "multiattach": False, "replication_status": None,
        "replication_extended_status": None, "replication_driver_data": None,
        "previous_status": "available", "service_uuid": str(uuid.uuid4()),
        "shared_targets": True, "use_quota": True,
    }


def volume_meta(volume_id: str, *, version: int = 2, encrypted: bool = False) -> str:
    """``BackupMetadataAPI.get(volume_id)``: the document as JSON text."""
    container: dict[str, Any] = {"version": version}
    container["volume-base-metadata"] = volumes_row(volume_id, encrypted=encrypted)
    container["volume-metadata"] = {"tier": "gold", "owner": "alice"}
    container["volume-glance-metadata"] = GLANCE
    return json.dumps(container)


def metadata_object(backup_id: str, volume_id: str, volume_meta_text: Any) -> str:
    """``ChunkedBackupDriver._write_metadata``: the ``<prefix>_metadata`` object."""
    prefix = f"volume_{volume_id}/20260102030500/az_nova_backup_{backup_id}"
    metadata = {
        "version": "1.0.0",
        "backup_id": backup_id,
        "volume_id": volume_id,
        "backup_name": "nightly",
        "backup_description": None,
        "created_at": "2026-01-02 03:05:00",
        "objects": [{f"{prefix}-{n:05d}": {"offset": (n - 1) * 52428800, "length": 52428800,
                                            "md5": "0" * 32, "compression": "zlib"}}
                    for n in (1, 2)],
        "parent_id": None,
        "volume_meta": volume_meta_text,
    }
    return json.dumps(metadata, sort_keys=True, indent=2)


@pytest.fixture
def accepting(migrated):
    migrated.set_override("accept_unsigned_glance_metadata", True, group="backup")


def test_a_chunked_drivers_metadata_object_restores_user_metadata_and_base(harness):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    text = metadata_object(backup, source, volume_meta(source))

    result = harness.api.backup_metadata_import(member_with_service(), backup, target, text)

    assert result == {"metadata": {"tier": "gold", "owner": "alice"},
                      "glance_metadata": {}, "bootable": False, "glance_verified": False,
                      "base": {"display_name": "win-root",
                               "display_description": "licensed root disk",
                               "encryption_key_id": None}}
    assert harness.api.volume_glance_metadata_get(member(), target) == {}


def test_its_glance_metadata_is_restored_when_unsigned_documents_are_trusted(accepting,
                                                                             harness):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    text = metadata_object(backup, source, volume_meta(source))

    result = harness.api.backup_metadata_import(member_with_service(), backup, target, text)

    assert result["glance_metadata"] == GLANCE
    assert result["bootable"] is True
    assert harness.api.volume_glance_metadata_get(member(), target) == GLANCE


def test_an_encrypted_volumes_base_carries_its_volume_type_beside_the_key(harness):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    text = metadata_object(backup, source, volume_meta(source, encrypted=True))

    result = harness.api.backup_metadata_import(member_with_service(), backup, target, text)

    assert result["base"] == {"display_name": "win-root",
                              "display_description": "licensed root disk",
                              "encryption_key_id": ENCRYPTION_KEY,
                              "volume_type_id": VOLUME_TYPE}


def test_a_version_1_document_inside_restores_name_and_description_only(harness):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    text = metadata_object(backup, source, volume_meta(source, version=1, encrypted=True))

    result = harness.api.backup_metadata_import(member_with_service(), backup, target, text)

    assert result["base"] == {"display_name": "win-root",
                              "display_description": "licensed root disk"}
    assert result["metadata"] == {"tier": "gold", "owner": "alice"}


def test_the_bare_document_imports_alike(harness):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    bare = volume_meta(source, encrypted=True)
    wrapped = metadata_object(backup, source, bare)

    from_bare = harness.api.backup_metadata_import(member_with_service(), backup, target, bare)
    from_object = harness.api.backup_metadata_import(member_with_service(), backup, target,
                                                     wrapped)

    assert from_bare == from_object


@pytest.mark.parametrize("inner", [None, 2, {"version": 2}, ["x"]])
def test_an_object_whose_volume_meta_is_not_text_is_refused(harness, inner):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    text = metadata_object(backup, source, inner)

    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.backup_metadata_import(member_with_service(), backup, target, text)

    assert caught.value.kwargs["field"] == "document"
    assert harness.api.volume_glance_metadata_get(member(), target) == {}


def test_an_object_whose_volume_meta_is_not_a_document_is_refused(harness):
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    text = metadata_object(backup, source, "not json at all")

    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.backup_metadata_import(member_with_service(), backup, target, text)

    assert caught.value.kwargs["field"] == "document"


def test_a_signed_custos_document_kept_by_a_chunked_driver_still_verifies(harness):
    """cinder-backup may store custos' export as the volume_meta of its object."""
    backup, source, target = (str(uuid.uuid4()) for _ in range(3))
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, source, GLANCE, wait=True)
    exported = harness.api.backup_metadata_export(ctxt, backup, {
        "id": source, "base": {"display_name": "db", "encryption_key_id": ENCRYPTION_KEY,
                               "volume_type_id": VOLUME_TYPE},
        "metadata": {"tier": "gold"}})

    result = harness.api.backup_metadata_import(ctxt, backup, target,
                                                metadata_object(backup, source, exported))

    assert result["glance_verified"] is True
    assert result["glance_metadata"] == GLANCE
    assert result["base"] == {"display_name": "db", "encryption_key_id": ENCRYPTION_KEY,
                              "volume_type_id": VOLUME_TYPE}
    forged = metadata_object(backup, source, exported.replace("WIN-DC-2019", "WIN-DC-2022"))
    result = harness.api.backup_metadata_import(ctxt, backup, target, forged)
    assert result["glance_verified"] is False
    assert result["glance_metadata"] == {}
