"""The master key files: 32-byte keys that wrap every data key.

A node keeps up to three files (Keystone keeps its fernet keys the same
way): the primary key (``[keystore] master_key_file``), the staged key
that the next rotation promotes (``.staged``) and, while a rotation
finishes, the previous key (``.previous``).  The ring loads all of them
and unwraps with any key it holds; which key wraps new data keys is the
database's word (:mod:`agent.keystore.keyset`), falling back to the
primary file before the first rotation.  Keys are known by an id derived
one-way from the material, so an id can be stored and shown without
revealing the key.

A rotation is safe while agents serve: an unwrap that names an unknown
id reloads the files once before giving up, and keys seen earlier stay
known for the life of the process.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import threading
from dataclasses import dataclass

from oslo_config import cfg

from agent import exception

CONF = cfg.CONF

KEY_BYTES = 32
PREVIOUS_SUFFIX = ".previous"
STAGED_SUFFIX = ".staged"


def key_id_of(material: bytes) -> str:
    """Return the public id of a master key: a one-way digest of it."""
    return hashlib.sha256(b"custos-master-key-id\0" + material).hexdigest()[:16]


def default_path(conf: cfg.ConfigOpts | None = None) -> str:
    """Return ``[keystore] master_key_file`` or its default under state_path."""
    conf = conf or CONF
    return conf.keystore.master_key_file or os.path.join(conf.state_path, "master.key")


# Group and other permission bits: a key file with any of them is refused.
LOOSE_BITS = 0o077


def _read_key(path: str) -> bytes:
    """Return the key in ``path``.

    :raises MasterKeyPermissions: group or others have any access to it.
    :raises MasterKeyUnavailable: it is missing, unreadable or not
        :data:`KEY_BYTES` long.
    """
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & LOOSE_BITS:
                raise exception.MasterKeyPermissions(path=path,
                                                     mode=oct(stat.S_IMODE(mode)))
            material = handle.read(KEY_BYTES + 1)
    except FileNotFoundError:
        raise exception.MasterKeyUnavailable(reason=f"no key file at {path}") from None
    except OSError as error:
        raise exception.MasterKeyUnavailable(
            reason=f"cannot read {path}: {error.strerror}") from None
    if len(material) != KEY_BYTES:
        raise exception.MasterKeyUnavailable(
            reason=f"{path} does not hold exactly {KEY_BYTES} bytes")
    return material


def write_key_file(path: str, material: bytes, overwrite: bool = False) -> None:
    """Write ``material`` to ``path`` atomically with mode 0600.

    :raises MasterKeyExists: when ``path`` exists and ``overwrite`` is False.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not overwrite and os.path.exists(path):
        raise exception.MasterKeyExists(path=path)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, material)
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(tmp, path)
    else:
        try:
            # link() fails when the target exists, closing the window that
            # an exists() check followed by rename() would leave open.
            os.link(tmp, path)
        except FileExistsError:
            raise exception.MasterKeyExists(path=path) from None
        finally:
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def init_key_file(path: str) -> str:
    """Create a new random master key at ``path``; never overwrite one.

    :returns: the new key's id.
    :raises MasterKeyExists: when a key file is already there.
    """
    material = secrets.token_bytes(KEY_BYTES)
    write_key_file(path, material)
    return key_id_of(material)


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    material: bytes

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


class MasterKeyRing:
    """The keys a node holds: primary, staged and previous files."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys: dict[str, MasterKey] = {}
        self._active: MasterKey | None = None
        self._stamp: tuple[int, int] | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_ino)

    def load(self) -> MasterKey:
        """(Re)read the key files.

        :returns: the key of the primary file.
        :raises MasterKeyUnavailable: when the primary file is missing or
            bad, or a staged or previous file is bad.
        """
        with self._lock:
            stamp = self._file_stamp()
            active = MasterKey(key_id_of(material := _read_key(self.path)), material)
            keys = {active.key_id: active}
            for suffix in (PREVIOUS_SUFFIX, STAGED_SUFFIX):
                if os.path.exists(self.path + suffix):
                    other = _read_key(self.path + suffix)
                    keys[key_id_of(other)] = MasterKey(key_id_of(other), other)
            # Keys seen earlier stay known: an in-flight unwrap may still
            # need one after its file is retired.
            self._keys.update(keys)
            self._active = active
            self._stamp = stamp
            return active

    def file_key(self, suffix: str = "") -> MasterKey | None:
        """Return the key a file of this node holds now, or None.

        :param suffix: ``""`` (primary), :data:`STAGED_SUFFIX` or
            :data:`PREVIOUS_SUFFIX`.
        :raises MasterKeyUnavailable: when the file is there but bad.
        """
        if not os.path.exists(self.path + suffix):
            return None
        material = _read_key(self.path + suffix)
        return MasterKey(key_id_of(material), material)

    def held(self) -> list[str]:
        """Return the ids of every key this ring holds, sorted."""
        return sorted(self._keys)

    def active(self) -> MasterKey:
        """Return the primary file's key, reloading if the file changed.

        Before the first rotation this key wraps new data keys; after it,
        :func:`agent.keystore.keyset.wrapping_key` names the one to use.
        """
        if self._active is None or self._file_stamp() != self._stamp:
            return self.load()
        return self._active

    def get(self, key_id: str) -> MasterKey:
        """Return the key with ``key_id``, reloading once if it is unknown.

        :raises KeyNotFound: when no key file holds that id.
        """
        key = self._keys.get(key_id)
        if key is None:
            self.load()
            key = self._keys.get(key_id)
        if key is None:
            raise exception.KeyNotFound(key_id=key_id)
        return key

    @property
    def loaded(self) -> bool:
        """True once a key has been read successfully."""
        return self._active is not None


_ring: MasterKeyRing | None = None
_ring_lock = threading.Lock()


def get_ring() -> MasterKeyRing:
    """Return the process's key ring for the configured key file."""
    global _ring
    with _ring_lock:
        path = default_path()
        if _ring is None or _ring.path != path:
            _ring = MasterKeyRing(path)
        return _ring


def reset_ring() -> None:
    """Forget the process's key ring (tests, configuration reload)."""
    global _ring
    with _ring_lock:
        _ring = None
