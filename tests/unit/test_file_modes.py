"""Files the agent keeps are its own: state directory 0700, data and keys 0600."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import sqlalchemy as sa

import pytest

from agent import exception, rpc
from agent.backups.store import BackupStore
from agent.keystore import masterkey
from agent.service import AgentService
from db import api as db_api
from db import migration


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def fresh_state(conf, tmp_path):
    """A state directory the agent has to create itself, under a loose umask."""
    state = tmp_path / "var" / "custos"
    conf.set_override("state_path", str(state))
    previous = os.umask(0o022)
    try:
        yield state
    finally:
        os.umask(previous)


def test_state_directory_database_wal_and_key_are_for_the_owner_only(fresh_state):
    db_api.configure()
    migration.db_sync()
    masterkey.init_key_file(masterkey.default_path())
    with db_api.transaction() as session:
        session.execute(sa.text("CREATE TABLE probe (x INTEGER)"))

    database = fresh_state / "custos.sqlite"
    assert mode(fresh_state) == 0o700
    assert mode(database) == 0o600
    wal_files = [fresh_state / "custos.sqlite-wal", fresh_state / "custos.sqlite-shm"]
    assert any(path.exists() for path in wal_files)
    for path in wal_files:
        if path.exists():
            assert mode(path) == 0o600
    assert mode(fresh_state / "master.key") == 0o600


def test_a_loose_database_file_of_ours_is_tightened(fresh_state):
    fresh_state.mkdir(parents=True, mode=0o700)
    database = fresh_state / "custos.sqlite"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)

    db_api.configure()
    migration.db_sync()

    assert mode(database) == 0o600


def test_backup_store_directories_and_documents_are_for_the_owner_only(fresh_state):
    store = BackupStore(str(fresh_state / "backups"), "SERVICE_")
    backup_id = str(uuid.uuid4())

    path = store.write(store.account_for("p1"), backup_id, "{}")

    assert mode(fresh_state) == 0o700
    assert mode(fresh_state / "backups") == 0o700
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660, 0o644])
def test_the_agent_refuses_to_start_on_a_key_file_others_can_read(migrated, loose):
    path = masterkey.default_path()
    masterkey.init_key_file(path)
    os.chmod(path, loose)
    migrated.set_override("transport_url", "fake:/")

    try:
        with pytest.raises(exception.MasterKeyPermissions) as caught:
            AgentService(migrated).start()
    finally:
        rpc.cleanup()

    assert caught.value.code == "master_key_permissions"
    assert path in caught.value.msg and oct(loose) in caught.value.msg
    assert mode(Path(path)) == loose
