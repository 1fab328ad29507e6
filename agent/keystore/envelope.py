"""Envelope encryption: a fresh data key per object, wrapped by the master key.

A value is sealed with AES-256-GCM under its own random data key, with the
object's id as associated data, so ciphertext copied onto another object
fails to open. The data key is sealed the same way under the active master
key. Deleting the wrapped data key makes the value unreadable for good
(crypto-shredding).

Stored forms are ``nonce (12 bytes) || ciphertext || tag``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent import exception
from agent.keystore.masterkey import MasterKey, MasterKeyRing

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

NONCE_BYTES = 12
DATA_KEY_BYTES = 32


@dataclass(frozen=True)
class Sealed:
    """A sealed value and what is needed to open it again."""

    ciphertext: bytes
    wrapped_key: bytes
    master_key_id: str

    def __repr__(self) -> str:
        return f"Sealed(master_key_id={self.master_key_id!r}, {len(self.ciphertext)} bytes)"


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes, object_id: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise exception.DecryptionFailed(object_id=object_id) from None


def _value_aad(kind: str, object_id: str) -> bytes:
    return f"custos:{kind}:value:{object_id}".encode()


def _key_aad(kind: str, object_id: str) -> bytes:
    return f"custos:{kind}:data-key:{object_id}".encode()


def seal(ring: MasterKeyRing, kind: str, object_id: str, plaintext: bytes,
         session: Session | None = None) -> Sealed:
    """Encrypt ``plaintext`` for the object ``kind``/``object_id``.

    :param ring: the master key ring holding the key that wraps the data key.
    :param session: the transaction that will store the result. Through
        it the wrapping key is the database's primary, read under a shared
        lock that a rotation's promotion waits for
        (:func:`agent.keystore.keyset.wrapping_key`); without it, the
        ring's primary file.
    :param kind: the object's family (``secret``, ``signing-key``), part
        of the associated data.
    :param object_id: the object's id (a secret's UUID), bound to both
        ciphertexts.
    :returns: the ciphertext and the wrapped data key.
    :raises MasterKeyUnavailable: when no master key can be read, or this
        node does not hold the database's primary key.
    """
    if session is not None:
        from agent.keystore import keyset

        master = keyset.wrapping_key(session, ring)
    else:
        master = ring.active()
    data_key = AESGCM.generate_key(bit_length=256)
    return Sealed(ciphertext=_seal(data_key, plaintext, _value_aad(kind, object_id)),
                  wrapped_key=_seal(master.material, data_key, _key_aad(kind, object_id)),
                  master_key_id=master.key_id)


def unwrap_data_key(ring: MasterKeyRing, kind: str, object_id: str,
                    wrapped_key: bytes, master_key_id: str) -> bytes:
    """Return the data key of an object, unwrapped with the master key it names.

    :raises KeyNotFound: when that master key is not in the ring.
    :raises DecryptionFailed: when the wrapped key fails its integrity check.
    """
    master = ring.get(master_key_id)
    return _open(master.material, wrapped_key, _key_aad(kind, object_id), object_id)


def open_sealed(ring: MasterKeyRing, kind: str, object_id: str, sealed: Sealed) -> bytes:
    """Decrypt a value sealed by :func:`seal` for the same object.

    :raises DecryptionFailed: when the value or its key was altered or
        belongs to another object.
    :raises KeyNotFound: when its master key is not in the ring.
    """
    data_key = unwrap_data_key(ring, kind, object_id, sealed.wrapped_key,
                               sealed.master_key_id)
    return _open(data_key, sealed.ciphertext, _value_aad(kind, object_id), object_id)


def rewrap(ring: MasterKeyRing, kind: str, object_id: str, wrapped_key: bytes,
           master_key_id: str, master: MasterKey) -> tuple[bytes, str]:
    """Re-wrap an object's data key under ``master``.

    The value's ciphertext is untouched; only the small wrapped key changes.

    :returns: ``(new wrapped key, master's id)``.
    :raises KeyNotFound: when the ring does not hold the key it is under now.
    """
    data_key = unwrap_data_key(ring, kind, object_id, wrapped_key, master_key_id)
    return _seal(master.material, data_key, _key_aad(kind, object_id)), master.key_id


def _master_aad(key_id: str) -> bytes:
    return f"custos:master-key:{key_id}".encode()


def wrap_master_key(wrapping: MasterKey, material: bytes, key_id: str) -> bytes:
    """Seal a staged master key under the primary one, for the other nodes."""
    return _seal(wrapping.material, material, _master_aad(key_id))


def unwrap_master_key(wrapping: MasterKey, wrapped: bytes, key_id: str) -> bytes:
    """Open what :func:`wrap_master_key` sealed.

    :raises DecryptionFailed: when it was altered or names another key.
    """
    return _open(wrapping.material, wrapped, _master_aad(key_id), f"master key {key_id}")
