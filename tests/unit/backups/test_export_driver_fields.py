"""Backup export never carries what a volume's driver keeps in its base fields."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from agent import exception
from tests.common import PROJECT, make_context, member, member_with_service

CHAP = "CHAP chap-5f0e1d2c Zq8sP4wN2xY7vB3k"
# A base section as Cinder's BackupMetadataAPI writes it: every volumes column.
CINDER_BASE = {
    "display_name": "db", "display_description": "main", "encryption_key_id": None,
    "size": 10, "status": "backing-up", "volume_type_id": str(uuid.uuid4()),
    "provider_auth": CHAP,
    "provider_location": "192.0.2.10:3260,1 iqn.2010-10.org.openstack:volume-x 0",
    "provider_id": "lun-7", "provider_geometry": "512 512",
    "Provider_Auth": CHAP,
    "replication_driver_data": '{"secondary": "pool-b", "token": "repl-token-31"}',
}


def test_export_leaves_every_provider_field_and_replication_data_out(harness):
    backup_id, volume_id = str(uuid.uuid4()), str(uuid.uuid4())
    ctxt = member_with_service()

    text = harness.api.backup_metadata_export(
        ctxt, backup_id, {"id": volume_id, "base": CINDER_BASE, "metadata": {"tier": "gold"}})

    stored = (Path(harness.runtime.conf.state_path) / "backups" / f"SERVICE_{PROJECT}"
              / f"{backup_id}.json").read_text()
    for document in (text, stored, harness.api.backup_metadata_get(ctxt, backup_id)):
        base = json.loads(document)["volume-base-metadata"]
        assert base == {"display_name": "db", "display_description": "main",
                        "encryption_key_id": None, "size": 10, "status": "backing-up",
                        "volume_type_id": CINDER_BASE["volume_type_id"]}
        for secret in ("Zq8sP4wN2xY7vB3k", "repl-token-31", "lun-7", "iqn.2010-10"):
            assert secret not in document
    payloads = repr(harness.notifications())
    assert "Zq8sP4wN2xY7vB3k" not in payloads


@pytest.mark.parametrize("ctxt", [make_context(None, ["admin"], ["service"]),
                                  make_context(None, ["member"], ["service"])],
                         ids=["admin", "member"])
def test_a_context_without_a_project_exports_imports_and_deletes_nothing(harness, ctxt):
    backup_id, volume_id = str(uuid.uuid4()), str(uuid.uuid4())
    owner = member_with_service()
    harness.api.backup_metadata_export(owner, backup_id, {"id": volume_id, "base": {}})

    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_export(ctxt, str(uuid.uuid4()), {"id": volume_id})
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_import(ctxt, backup_id, str(uuid.uuid4()))
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_get(ctxt, backup_id)
    with pytest.raises(exception.Forbidden):
        harness.api.backup_metadata_delete(ctxt, backup_id)

    assert json.loads(harness.api.backup_metadata_get(owner, backup_id))["signature"]
    assert harness.api.volume_glance_metadata_get(member(), volume_id) == {}
