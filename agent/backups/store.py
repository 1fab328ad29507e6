"""The backup store: one signed metadata document per backup, on disk.

The tree is ``<root>/<account>/<backup_id>.json``, where ``<account>`` is a
service account, ``SERVICE_<project_id>`` by default.  Swift's composite
tokens keep such an account out of the user's reach: the user owns
``AUTH_<project_id>`` and can only read or write the service account with a
service token alongside.  This module never builds a user account name and
refuses any account without the service prefix.

Every name that reaches the file system is checked first: project and
backup ids may only hold ASCII letters, digits, ``-`` and ``_`` and start
with a letter or digit, so ``/``, ``..`` and absolute paths cannot form.
Paths are also resolved and must stay under the root, and neither an
account directory nor a document may be a symbolic link.

Writes are atomic: the document goes to a temporary file in the same
directory, is flushed and fsynced, renamed over the old one and the
directory is fsynced, so a reader (or a crash) sees the old document or the
new one whole, never a mix.  Directories are created 0700, documents 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from agent import exception

_SUFFIX = ".json"
_NAME_MAX = 255
# The file name is the backup id plus the suffix and must fit in NAME_MAX.
MAX_BACKUP_ID_LENGTH = _NAME_MAX - len(_SUFFIX)
MAX_PROJECT_ID_LENGTH = 255
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_SAFE_PREFIX = re.compile(r"[A-Za-z0-9_-]+")
_USER_ACCOUNT_PREFIX = "AUTH_"
_TEMP_PREFIX = "."
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def _check_name(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not value:
        raise exception.InvalidInput(field=field, reason="must be a non-empty string")
    if len(value) > max_length:
        raise exception.InvalidInput(
            field=field, reason=f"longer than {max_length} characters")
    if not _SAFE_NAME.fullmatch(value):
        raise exception.InvalidInput(
            field=field,
            reason="only letters, digits, '-' and '_' are allowed, "
                   "starting with a letter or digit")
    return value


class BackupStore:
    """Signed backup metadata documents under one root directory.

    :param root: the store's root directory (``[backup] store_path``);
        created 0700 on first write when absent.
    :param account_prefix: prefix of service account names
        (``[backup] service_account_prefix``).
    :raises agent.exception.ConfigurationError: the prefix is empty, holds
        characters other than letters, digits, ``-`` and ``_``, or is the
        user account prefix ``AUTH_``.
    """

    def __init__(self, root: str | Path, account_prefix: str = "SERVICE_") -> None:
        if not isinstance(account_prefix, str) or not _SAFE_PREFIX.fullmatch(account_prefix):
            raise exception.ConfigurationError(
                reason="the backup service account prefix must be letters, "
                       "digits, '-' or '_'")
        if account_prefix.upper() == _USER_ACCOUNT_PREFIX:
            raise exception.ConfigurationError(
                reason="the backup service account prefix cannot be the "
                       "user account prefix AUTH_")
        self.root = Path(os.path.abspath(root))
        self.account_prefix = account_prefix

    # -- names -------------------------------------------------------------

    def account_for(self, project_id: str) -> str:
        """Return the service account that holds a project's documents.

        :param project_id: the project owning the backup.
        :returns: ``<prefix><project_id>``, e.g. ``SERVICE_<project_id>``.
        :raises agent.exception.InvalidInput: (field ``project_id``) the id
            is empty, too long or holds unsafe characters.
        """
        project_id = _check_name("project_id", project_id, MAX_PROJECT_ID_LENGTH)
        account = self.account_prefix + project_id
        if len(account) > _NAME_MAX:
            raise exception.InvalidInput(
                field="project_id",
                reason=f"the account name would be longer than {_NAME_MAX} characters")
        return account

    def _check_account(self, account: object) -> str:
        if not isinstance(account, str) or not account.startswith(self.account_prefix):
            raise exception.InvalidInput(
                field="account", reason="not a service account of this store")
        _check_name("account", account[len(self.account_prefix):], MAX_PROJECT_ID_LENGTH)
        if len(account) > _NAME_MAX:
            raise exception.InvalidInput(
                field="account", reason=f"longer than {_NAME_MAX} characters")
        return account

    @staticmethod
    def _file_name(backup_id: object) -> str:
        return _check_name("backup_id", backup_id, MAX_BACKUP_ID_LENGTH) + _SUFFIX

    def _inside_root(self, path: Path) -> Path:
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root or real == real_root:
            raise exception.ConfigurationError(
                reason="a backup store path resolves outside the store root")
        return path

    def _existing_account_dir(self, account: str) -> Path | None:
        directory = self.root / account
        try:
            info = os.lstat(directory)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            raise exception.ConfigurationError(
                reason=f"backup store account {account} is not a plain directory")
        return self._inside_root(directory)

    # -- directories -------------------------------------------------------

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _make_dir(self, directory: Path) -> None:
        try:
            os.mkdir(directory, _DIR_MODE)
        except FileExistsError:
            return
        # mkdir's mode is filtered by the umask; make it exactly 0700.
        os.chmod(directory, _DIR_MODE)
        self._fsync_dir(directory.parent)

    def _account_dir_for_write(self, account: str) -> Path:
        if not self.root.parent.exists():
            os.makedirs(self.root.parent, mode=_DIR_MODE, exist_ok=True)
        self._make_dir(self.root)
        self._make_dir(self.root / account)
        directory = self._existing_account_dir(account)
        if directory is None:
            # Removed between mkdir and lstat by someone else.
            raise FileNotFoundError(errno.ENOENT, "account directory vanished",
                                    str(self.root / account))
        return directory

    # -- documents ---------------------------------------------------------

    def write(self, account: str, backup_id: str, text: str) -> Path:
        """Store a backup's document atomically, replacing any older one.

        :param account: a service account, from :meth:`account_for`.
        :param backup_id: the backup the document belongs to.
        :param text: the document.
        :returns: the path of the stored document.
        :raises agent.exception.InvalidInput: a bad account, backup id or a
            document that is not a string; nothing was written.
        :raises agent.exception.ConfigurationError: the account directory
            is a symbolic link or leads outside the root.
        :raises OSError: the file system refused; the old document, if any,
            is still in place and no temporary file is left.
        """
        account = self._check_account(account)
        name = self._file_name(backup_id)
        if not isinstance(text, str):
            raise exception.InvalidInput(field="document", reason="must be a string")
        data = text.encode("utf-8")

        directory = self._account_dir_for_write(account)
        target = directory / name
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=_TEMP_PREFIX,
                                         suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as temp:
                os.fchmod(temp.fileno(), _FILE_MODE)
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        self._fsync_dir(directory)
        return target

    def read(self, account: str, backup_id: str) -> str:
        """Return a backup's stored document.

        :param account: a service account, from :meth:`account_for`.
        :param backup_id: the backup to read.
        :returns: the document text.
        :raises agent.exception.InvalidInput: a bad account or backup id.
        :raises agent.exception.BackupNotFound: no document is stored.
        :raises agent.exception.BackupMetadataDamaged: the stored bytes are
            not UTF-8 (custos only writes UTF-8, so they were altered).
        :raises agent.exception.ConfigurationError: the document or its
            directory is a symbolic link or leads outside the root.
        """
        account = self._check_account(account)
        name = self._file_name(backup_id)
        directory = self._existing_account_dir(account)
        if directory is None:
            raise exception.BackupNotFound(backup_id=backup_id)
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise exception.BackupNotFound(backup_id=backup_id) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise exception.ConfigurationError(
                    reason=f"stored document of backup {backup_id} is a symbolic link"
                ) from None
            raise
        with os.fdopen(fd, "rb") as stored:
            data = stored.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise exception.BackupMetadataDamaged(
                field="document", reason="the stored document is not UTF-8 text") from None

    def delete(self, account: str, backup_id: str) -> bool:
        """Remove a backup's document; removing an absent one is not an error.

        Idempotent because the RPC layer may deliver a delete twice (a
        retried call after a lost reply) and the second must not fail.

        :param account: a service account, from :meth:`account_for`.
        :param backup_id: the backup whose document goes.
        :returns: True when a document was removed, False when none was
            stored.
        :raises agent.exception.InvalidInput: a bad account or backup id.
        :raises agent.exception.ConfigurationError: the account directory
            is a symbolic link or leads outside the root.
        """
        account = self._check_account(account)
        name = self._file_name(backup_id)
        directory = self._existing_account_dir(account)
        if directory is None:
            return False
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            return False
        self._fsync_dir(directory)
        return True

    def find(self, backup_id: str) -> tuple[str, Path] | None:
        """Look a backup's document up in every service account.

        For callers that do not know the project, such as an auditor who
        may read every service account.  Accounts are searched in name
        order and the first hit wins; other directories, symbolic links and
        temporary files are ignored.

        :param backup_id: the backup to look for.
        :returns: ``(account, path)``, or None when no account holds it.
        :raises agent.exception.InvalidInput: a bad backup id.
        """
        name = self._file_name(backup_id)
        try:
            entries = sorted(os.scandir(self.root), key=lambda entry: entry.name)
        except FileNotFoundError:
            return None
        for entry in entries:
            if not entry.name.startswith(self.account_prefix):
                continue
            try:
                self._check_account(entry.name)
            except exception.InvalidInput:
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            candidate = Path(entry.path) / name
            try:
                info = os.lstat(candidate)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                return entry.name, candidate
        return None


def from_conf(conf: Any) -> BackupStore:
    """Return the backup store ``[backup]`` describes.

    :raises agent.exception.ConfigurationError: a bad account prefix.
    """
    root = conf.backup.store_path or os.path.join(conf.state_path, "backups")
    return BackupStore(root, conf.backup.service_account_prefix)
