"""The on-disk backup store: service accounts, atomic writes, safe paths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent import exception
from agent.backups import store as store_module
from agent.backups.store import BackupStore

PROJECT = "8f1e2d3c4b5a69788796a5b4c3d2e1f0"
OTHER_PROJECT = "1a2b3c4d5e6f708192a3b4c5d6e7f809"
BACKUP_ID = "0e7c1a5f-7d7b-4b63-9a5d-2f1d8c3b9e10"
OTHER_BACKUP_ID = "4b1d9a2e-3c7f-4e18-8f35-6a0c2d9e7b51"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def store(root: Path) -> BackupStore:
    return BackupStore(root)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- accounts -----------------------------------------------------------------

def test_account_is_the_service_account_of_the_project(store):
    assert store.account_for(PROJECT) == f"SERVICE_{PROJECT}"


def test_account_prefix_is_configurable(root):
    assert BackupStore(root, account_prefix="CUSTOS_").account_for(PROJECT) == (
        f"CUSTOS_{PROJECT}")


@pytest.mark.parametrize("prefix", ["AUTH_", "auth_", "", "../", "SERVICE/"])
def test_user_or_unsafe_account_prefix_is_a_configuration_error(root, prefix):
    with pytest.raises(exception.ConfigurationError):
        BackupStore(root, account_prefix=prefix)


@pytest.mark.parametrize("account", [f"AUTH_{PROJECT}", PROJECT, "SERVICE_",
                                     "SERVICE_../x", "../SERVICE_x", "SERVICE_a/b"])
def test_accounts_outside_the_service_prefix_are_refused(store, root, account):
    with pytest.raises(exception.InvalidInput) as info:
        store.write(account, BACKUP_ID, "{}")

    assert info.value.kwargs["field"] == "account"
    assert not root.exists()


# -- writing and reading --------------------------------------------------------

def test_written_document_reads_back(store):
    account = store.account_for(PROJECT)

    path = store.write(account, BACKUP_ID, '{"version": 3, "x": "caf\u00e9"}')

    assert path == store.root / account / f"{BACKUP_ID}.json"
    assert store.read(account, BACKUP_ID) == '{"version": 3, "x": "caf\u00e9"}'


def test_rewrite_replaces_the_whole_document_and_leaves_no_temp_file(store):
    account = store.account_for(PROJECT)
    store.write(account, BACKUP_ID, "x" * 10000)

    store.write(account, BACKUP_ID, "short")

    assert store.read(account, BACKUP_ID) == "short"
    assert os.listdir(store.root / account) == [f"{BACKUP_ID}.json"]


def test_failed_rename_keeps_the_old_document_and_cleans_up(store, monkeypatch):
    account = store.account_for(PROJECT)
    store.write(account, BACKUP_ID, "old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", refuse)
    with pytest.raises(OSError):
        store.write(account, BACKUP_ID, "new")

    assert store.read(account, BACKUP_ID) == "old"
    assert os.listdir(store.root / account) == [f"{BACKUP_ID}.json"]


def test_write_syncs_the_file_before_the_rename_and_the_directory_after(
        store, monkeypatch):
    account = store.account_for(PROJECT)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    monkeypatch.setattr(store_module.os, "replace", replace)
    store.write(account, BACKUP_ID, "doc")

    assert events[-3:] == ["file", "rename", "dir"]


def test_files_are_0600_and_directories_0700(store, open_umask):
    account = store.account_for(PROJECT)

    path = store.write(account, BACKUP_ID, "doc")

    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(store.root) == 0o700


def test_non_text_document_is_refused(store):
    with pytest.raises(exception.InvalidInput):
        store.write(store.account_for(PROJECT), BACKUP_ID, b"{}")  # type: ignore[arg-type]


def test_reading_an_absent_document_is_backup_not_found(store):
    account = store.account_for(PROJECT)

    with pytest.raises(exception.BackupNotFound) as info:
        store.read(account, BACKUP_ID)
    assert info.value.kwargs == {"backup_id": BACKUP_ID}

    store.write(account, OTHER_BACKUP_ID, "doc")
    with pytest.raises(exception.BackupNotFound):
        store.read(account, BACKUP_ID)


def test_stored_bytes_that_are_not_utf8_are_damage(store):
    account = store.account_for(PROJECT)
    path = store.write(account, BACKUP_ID, "doc")
    path.write_bytes(b"\xff\xfe")

    with pytest.raises(exception.BackupMetadataDamaged):
        store.read(account, BACKUP_ID)


def test_delete_is_idempotent(store):
    account = store.account_for(PROJECT)
    store.write(account, BACKUP_ID, "doc")

    assert store.delete(account, BACKUP_ID) is True
    assert store.delete(account, BACKUP_ID) is False
    assert store.delete(store.account_for(OTHER_PROJECT), BACKUP_ID) is False
    with pytest.raises(exception.BackupNotFound):
        store.read(account, BACKUP_ID)


# -- path safety ---------------------------------------------------------------

BAD_IDS = ["../x", "a/b", "/etc/passwd", "..", ".", "", ".hidden", "-rf",
           "a\x00b", "a b", "caf\u00e9", "x" * 251]


@pytest.mark.parametrize("backup_id", BAD_IDS)
def test_unsafe_backup_ids_are_refused_before_touching_the_disk(store, root, backup_id):
    account = store.account_for(PROJECT)

    for call in (lambda: store.write(account, backup_id, "doc"),
                 lambda: store.read(account, backup_id),
                 lambda: store.delete(account, backup_id),
                 lambda: store.find(backup_id)):
        with pytest.raises(exception.InvalidInput) as info:
            call()
        assert info.value.kwargs["field"] == "backup_id"
    assert not root.exists()


@pytest.mark.parametrize("project_id", BAD_IDS[:-1] + ["p" * 256, None])
def test_unsafe_project_ids_are_refused(store, project_id):
    with pytest.raises(exception.InvalidInput) as info:
        store.account_for(project_id)

    assert info.value.kwargs["field"] == "project_id"


def test_longest_allowed_backup_id_fits_a_file_name(store):
    account = store.account_for(PROJECT)
    backup_id = "b" * store_module.MAX_BACKUP_ID_LENGTH

    store.write(account, backup_id, "doc")

    assert store.read(account, backup_id) == "doc"


def test_account_directory_that_is_a_symlink_out_of_root_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir()
    account = store.account_for(PROJECT)
    (store.root / account).symlink_to(outside)

    with pytest.raises(exception.ConfigurationError):
        store.write(account, BACKUP_ID, "doc")
    with pytest.raises(exception.ConfigurationError):
        store.read(account, BACKUP_ID)
    assert list(outside.iterdir()) == []
    assert store.find(BACKUP_ID) is None


def test_document_that_is_a_symlink_is_not_followed(store, tmp_path):
    secret = tmp_path / "elsewhere.json"
    secret.write_text("not for you")
    account = store.account_for(PROJECT)
    store.write(account, OTHER_BACKUP_ID, "doc")
    (store.root / account / f"{BACKUP_ID}.json").symlink_to(secret)

    with pytest.raises(exception.ConfigurationError):
        store.read(account, BACKUP_ID)
    assert store.find(BACKUP_ID) is None


# -- finding across accounts ----------------------------------------------------

def test_find_looks_in_every_service_account(store):
    first = store.account_for(PROJECT)
    second = store.account_for(OTHER_PROJECT)
    store.write(first, BACKUP_ID, "one")
    store.write(second, OTHER_BACKUP_ID, "two")

    assert store.find(BACKUP_ID) == (first, store.root / first / f"{BACKUP_ID}.json")
    assert store.find(OTHER_BACKUP_ID) == (
        second, store.root / second / f"{OTHER_BACKUP_ID}.json")
    assert store.find("0" * 32) is None


def test_find_ignores_user_accounts_and_temp_files(store):
    store.write(store.account_for(OTHER_PROJECT), OTHER_BACKUP_ID, "doc")
    user_account = store.root / f"AUTH_{PROJECT}"
    user_account.mkdir()
    (user_account / f"{BACKUP_ID}.json").write_text("forged")

    assert store.find(BACKUP_ID) is None


def test_find_in_an_absent_store_finds_nothing(store, root):
    assert store.find(BACKUP_ID) is None
    assert not root.exists()
