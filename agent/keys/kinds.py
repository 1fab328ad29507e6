"""What a managed object may be, and how new key material is made.

castellan knows six object types; their names here are castellan's own
``managed_type()`` strings, so a client maps them one to one.  Stored
objects are kept byte for byte whatever they hold; only generated keys
are bound to the algorithms and sizes below:

* symmetric keys: AES of 128, 192, 256 bits, and 512 bits for XTS modes
  (Cinder's ``aes-xts-plain64`` with ``key_size = 512``), or HMAC keys;
* key pairs: RSA of 2048, 3072 or 4096 bits, the private key as PKCS#8
  DER and the public key as SubjectPublicKeyInfo DER, the encodings
  castellan's ``PrivateKey`` and ``PublicKey`` declare.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent import exception, wire

SYMMETRIC = "symmetric"
PUBLIC = "public"
PRIVATE = "private"
CERTIFICATE = "certificate"
PASSPHRASE = "passphrase"
OPAQUE = "opaque"

#: Every object type, as castellan names it.
OBJECT_TYPES = wire.KEY_OBJECT_TYPES

#: Symmetric algorithms a key can be generated for (lowercase) and their sizes.
SYMMETRIC_BIT_LENGTHS: dict[str, tuple[int, ...]] = {
    "aes": (128, 192, 256, 512),
    "hmacsha1": (160,),
    "hmacsha256": (256,),
    "hmacsha384": (384,),
    "hmacsha512": (512,),
}

#: Asymmetric algorithms a pair can be generated for (lowercase) and their sizes.
PAIR_BIT_LENGTHS: dict[str, tuple[int, ...]] = {"rsa": (2048, 3072, 4096)}

#: Largest object kept, in bytes (a certificate chain fits easily).
MAX_VALUE_BYTES = wire.MAX_KEY_VALUE_BYTES


def _check(field_bits: dict[str, tuple[int, ...]], algorithm: str, bit_length: int) -> None:
    sizes = field_bits.get(algorithm.lower())
    if sizes is None:
        raise exception.InvalidInput(
            field="algorithm", reason=f"must be one of {', '.join(sorted(field_bits))}")
    if bit_length not in sizes:
        raise exception.InvalidInput(
            field="bit_length",
            reason=f"must be one of {', '.join(str(s) for s in sizes)} for {algorithm.lower()}")


def generate_symmetric(algorithm: str, bit_length: int) -> bytes:
    """Return fresh random key bytes for ``algorithm`` of ``bit_length`` bits.

    :raises InvalidInput: an unknown algorithm (field ``algorithm``) or a
        size it does not have (field ``bit_length``).
    """
    _check(SYMMETRIC_BIT_LENGTHS, algorithm, bit_length)
    return os.urandom(bit_length // 8)


def generate_pair(algorithm: str, bit_length: int) -> tuple[bytes, bytes]:
    """Return a new ``(private PKCS#8 DER, public SubjectPublicKeyInfo DER)`` pair.

    :raises InvalidInput: an algorithm other than RSA, or an RSA size other
        than 2048, 3072 or 4096.
    """
    _check(PAIR_BIT_LENGTHS, algorithm, bit_length)
    private = rsa.generate_private_key(public_exponent=65537, key_size=bit_length)
    private_der = private.private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_der, public_der
