"""The backup metadata document: build it, read it back, check its signature.

Cinder backs a volume's metadata up as a small JSON document
(``BackupMetadataAPI`` in ``cinder/backup/driver.py``) and stores it in the
user's own object storage, so a user can edit the glance metadata it carries
(image properties that drive billing and licensing) before a restore
(cinder bug 1137908).  custos writes the same layout at a version of its
own and signs the glance metadata.

Layout
------

Cinder's version 1 and 2 documents are one JSON object::

    {"version": 2,
     "volume-base-metadata":   {...the volume's own fields...},
     "volume-metadata":        {...user metadata...},
     "volume-glance-metadata": {...image properties, all strings...}}

Cinder leaves a section out when it is empty and writes the sections as
objects (never as JSON text inside a string).  custos' version 3 keeps those
three sections, always present, and adds a ``signature`` object::

    "signature": {"algorithm": "HMAC-SHA256", "format": 1,
                  "key_id": "<name of the signing key>",
                  "backup_id": "...", "volume_id": "...",
                  "mac": "<64 lowercase hex digits>"}

The MAC is HMAC-SHA256 over a fixed context string followed by the
canonical JSON of ``algorithm``, ``format``, the document ``version``,
``backup_id``, ``volume_id``, ``key_id`` and the glance metadata; a
signature therefore cannot be moved to another backup or volume, nor
relabelled with another key id.  Base fields and user metadata are carried
as given and are not signed: a user may change those on the volume anyway.
The exception is what a volume's driver keeps in its base fields: Cinder's
``provider_auth`` holds ``CHAP <user> <password>`` for every iSCSI volume
ever exported, so no ``provider_*`` field and no
``replication_driver_data`` is ever written (:func:`exportable_base`).

Canonical form
--------------

A version 3 document is encoded once, with sorted keys, ``(",", ":")``
separators and ``ensure_ascii=True``, so it is plain ASCII and every byte of
it means something.  Reading it back rejects duplicate keys and the
non-JSON constants (``NaN``, ``Infinity``), and :func:`verify` also refuses
a document whose signed members (``version``, ``volume-glance-metadata`` and
``signature``, each with its key) are not byte-for-byte their canonical
re-encoding.  Without that, edits that keep the decoded value (``\\u00E9``
for ``\\u00e9``, ``\\/`` for ``/``, an upper-case MAC digit) would pass.

Garbage or tampering
--------------------

:func:`parse` raises :class:`agent.exception.BackupMetadataInvalid` (an
``InvalidInput`` on field ``document``) for text that is not a backup
metadata document at all, and its subclass
:class:`agent.exception.BackupMetadataDamaged` when the text is, or bears
the marks of, a custos-signed document whose structure is broken: a version
3 object of the wrong shape, a Cinder version carrying a ``signature``, or
undecodable text that still contains a custos signature's mark.  An
importer treats ``BackupMetadataDamaged`` exactly like a failed signature
(tampered), and plain ``BackupMetadataInvalid`` as a bad argument.  A
document read back from custos' own store was written by custos, so any
failure to parse it is tampering whatever the class.

A document that parses but whose signed part is wrong (bad MAC, unknown
key, other ids, non-canonical bytes) is not an error here: :func:`parse`
returns it, so the user metadata can still be restored, and :func:`verify`
answers ``ok=False`` with a short reason.  Reasons and exception messages
never carry key material nor text taken from the document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from agent import exception

FORMAT_VERSION = 3
CINDER_VERSIONS = (1, 2)
SUPPORTED_VERSIONS = CINDER_VERSIONS + (FORMAT_VERSION,)

ALGORITHM = "HMAC-SHA256"
SIGNATURE_FORMAT = 1

MAX_DOCUMENT_BYTES = 1024 * 1024

VERSION = "version"
BASE = "volume-base-metadata"
METADATA = "volume-metadata"
GLANCE = "volume-glance-metadata"
SIGNATURE = "signature"
# Where a chunked backup driver's metadata object keeps the document.
CHUNKED_DOCUMENT = "volume_meta"

# Cinder's restore factories: the base fields that go back onto the volume.
# Version 3 follows Cinder's version 2.
RESTORED_BASE_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("display_name", "display_description"),
    2: ("display_name", "display_description", "encryption_key_id"),
    3: ("display_name", "display_description", "encryption_key_id"),
}

# Base fields that hold a driver's connection data and credentials.
_DRIVER_FIELD_PREFIX = "provider_"
_DRIVER_FIELDS = frozenset({"replication_driver_data"})

_V3_REQUIRED = frozenset({VERSION, BASE, METADATA, GLANCE})
_V3_ALLOWED = _V3_REQUIRED | {SIGNATURE}
_SIGNED_MEMBERS = (VERSION, GLANCE, SIGNATURE)
_SIGNATURE_FIELDS = frozenset(
    {"algorithm", "format", "key_id", "backup_id", "volume_id", "mac"})

_MAC_CONTEXT = b"custos backup metadata signature\n"
_HEX_MAC = re.compile(r"[0-9a-f]{64}")
_MAX_ID_LENGTH = 255
_JSON_WHITESPACE = " \t\n\r"

# Marks that only a custos-signed document carries.  One changed byte can
# break at most one of them, so damaged text still shows at least one.
_SIGNED_MARKS = ('"signature"', '"HMAC-SHA256"', '"version":3')


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    """The ``signature`` object of a version 3 document, as read."""

    algorithm: str
    format: int
    key_id: str
    backup_id: str
    volume_id: str
    mac: str


@dataclasses.dataclass(frozen=True)
class ParsedDocument:
    """A backup metadata document, read but not yet verified.

    ``signature`` is None for Cinder's unsigned versions and for a version 3
    document whose signature was removed.  ``signed_part_canonical`` is
    False when the signed members of a version 3 document are not
    byte-identical to their canonical encoding; :func:`verify` then fails.
    """

    version: int
    base: dict[str, Any]
    metadata: dict[str, Any]
    glance: dict[str, str]
    signature: SignatureInfo | None = None
    signed_part_canonical: bool = True


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`; truthy only when ``ok``."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class _DuplicateKey(ValueError):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey("duplicate key in an object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_without_duplicates,
                            parse_constant=_reject_constant)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def _mac(key: bytes, *, version: int, backup_id: str, volume_id: str,
         key_id: str, glance: Mapping[str, str]) -> str:
    signed = {
        "algorithm": ALGORITHM,
        "format": SIGNATURE_FORMAT,
        "version": version,
        "backup_id": backup_id,
        "volume_id": volume_id,
        "key_id": key_id,
        "glance": dict(glance),
    }
    message = _MAC_CONTEXT + _canonical(signed).encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _check_id(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise exception.InvalidInput(field=field, reason="must be a non-empty string")
    if len(value) > _MAX_ID_LENGTH:
        raise exception.InvalidInput(
            field=field, reason=f"longer than {_MAX_ID_LENGTH} characters")
    return value


def _check_section(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise exception.InvalidInput(field=field, reason="must be an object")
    if not all(isinstance(k, str) for k in value):
        raise exception.InvalidInput(field=field, reason="keys must be strings")
    return dict(value)


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def exportable_base(base: dict[str, Any]) -> dict[str, Any]:
    """Return the base fields a document may carry: all but the driver's own.

    ``provider_auth``, ``provider_location``, ``provider_id`` and every
    other ``provider_*`` field, and ``replication_driver_data``, are left
    out: they hold what the volume's driver needs to reach it, CHAP
    credentials included, and are never written into a document or the
    backup store.
    """
    return {name: value for name, value in base.items()
            if not (isinstance(name, str)
                    and (name.lower().startswith(_DRIVER_FIELD_PREFIX)
                         or name.lower() in _DRIVER_FIELDS))}


def build(backup_id: str, volume_id: str, base: dict[str, Any],
          metadata: dict[str, Any], glance: dict[str, str], key_id: str,
          key: bytes) -> str:
    """Return the signed version 3 document of one backup as JSON text.

    :param backup_id: the backup the document belongs to.
    :param volume_id: the volume the backup was taken from.
    :param base: the volume's own fields, carried unsigned without the
        driver's (:func:`exportable_base`).
    :param metadata: the volume's user metadata, carried unsigned.
    :param glance: the volume's glance metadata (strings only), signed.
    :param key_id: name of the signing key, written into the document.
    :param key: the signing key itself; never written anywhere.
    :returns: canonical ASCII JSON text (sorted keys, no whitespace).
    :raises agent.exception.InvalidInput: an id is not a non-empty string
        of at most 255 characters, a section is not an object with string
        keys, the glance metadata holds a non-string, or a section does not
        encode as JSON.
    :raises ValueError: ``key`` is empty or not bytes.
    """
    _check_id("backup_id", backup_id)
    _check_id("volume_id", volume_id)
    _check_id("key_id", key_id)
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError("the signing key must be non-empty bytes")
    base = exportable_base(_check_section("volume.base", base))
    metadata = _check_section("volume.metadata", metadata)
    glance = _check_section("glance_metadata", glance)
    if not all(isinstance(v, str) for v in glance.values()):
        raise exception.InvalidInput(field="glance_metadata",
                                     reason="values must be strings")

    mac = _mac(bytes(key), version=FORMAT_VERSION, backup_id=backup_id,
               volume_id=volume_id, key_id=key_id, glance=glance)
    document = {
        VERSION: FORMAT_VERSION,
        BASE: base,
        METADATA: metadata,
        GLANCE: glance,
        SIGNATURE: {
            "algorithm": ALGORITHM,
            "format": SIGNATURE_FORMAT,
            "key_id": key_id,
            "backup_id": backup_id,
            "volume_id": volume_id,
            "mac": mac,
        },
    }
    try:
        return _canonical(document)
    except (TypeError, ValueError):
        raise exception.InvalidInput(
            field="volume", reason="base fields or metadata do not encode as JSON")


def _invalid(reason: str) -> exception.BackupMetadataInvalid:
    return exception.BackupMetadataInvalid(field="document", reason=reason)


def _damaged(reason: str) -> exception.BackupMetadataDamaged:
    return exception.BackupMetadataDamaged(field="document", reason=reason)


def _broken(marked: bool, reason: str) -> exception.BackupMetadataInvalid:
    return _damaged(reason) if marked else _invalid(reason)


def _has_signed_marks(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return any(mark.encode("ascii") in text for mark in _SIGNED_MARKS)
    return any(mark in text for mark in _SIGNED_MARKS)


def _as_text(text: Any, max_bytes: int) -> str:
    if isinstance(text, str):
        # A character is at least one byte, so the cheap test comes first.
        if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise _invalid(f"larger than {max_bytes} bytes")
        return text
    if isinstance(text, (bytes, bytearray)):
        data = bytes(text)
        if len(data) > max_bytes:
            raise _invalid(f"larger than {max_bytes} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _broken(_has_signed_marks(data), "not UTF-8 text") from None
    raise _invalid("must be a string")


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_WHITESPACE:
        index += 1
    return index


def _member_spans(text: str) -> dict[str, tuple[int, int]]:
    """Map each top-level key of a decoded object to its raw member span.

    The span runs from the key's opening quote to the end of its value.
    Only called on text that already decoded as one JSON object.
    """
    spans: dict[str, tuple[int, int]] = {}
    index = _skip_whitespace(text, 0) + 1
    index = _skip_whitespace(text, index)
    if text[index] == "}":
        return spans
    while True:
        start = index
        key, index = _DECODER.raw_decode(text, index)
        index = _skip_whitespace(text, index) + 1
        index = _skip_whitespace(text, index)
        _, index = _DECODER.raw_decode(text, index)
        spans[key] = (start, index)
        index = _skip_whitespace(text, index)
        if text[index] == "}":
            return spans
        index = _skip_whitespace(text, index + 1)


def _shown_version(version: Any) -> str:
    shown = repr(version)
    return shown if len(shown) <= 20 else shown[:17] + "..."


def _chunked_driver_object(decoded: dict[str, Any]) -> bool:
    """True for the ``<prefix>_metadata`` object of a Cinder chunked backup driver.

    Those drivers (posix, NFS, Swift, S3, GCS) write the backup's own
    record with the driver's version as a string (``"1.0.0"``) and the
    volume's metadata document, as JSON text, under ``volume_meta``.
    """
    return CHUNKED_DOCUMENT in decoded and isinstance(decoded.get(VERSION), str)


def parse(text: str | bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> ParsedDocument:
    """Read a backup metadata document of any supported version.

    Nothing is verified here; pass the result to :func:`verify`.  A Cinder
    chunked driver's ``<prefix>_metadata`` object is read for the document
    it carries as text under ``volume_meta``.

    :param text: the document, as text or UTF-8 bytes.
    :param max_bytes: refuse documents longer than this many bytes.
    :returns: the decoded document; a Cinder document's missing sections
        read as empty objects.
    :raises agent.exception.BackupMetadataUnsupportedVersion: the
        ``version`` is not 1, 2 or 3 (or not an integer).
    :raises agent.exception.BackupMetadataDamaged: the document is, or
        bears the marks of, a custos-signed document whose structure is
        broken; the caller treats it as tampered.
    :raises agent.exception.BackupMetadataInvalid: the text is too large,
        not JSON, not an object, has no version, or has sections of the
        wrong type.
    """
    raw = _as_text(text, max_bytes)
    try:
        decoded = _DECODER.decode(raw)
    except _DuplicateKey:
        raise _broken(_has_signed_marks(raw), "duplicate key in an object") from None
    except json.JSONDecodeError as exc:
        raise _broken(_has_signed_marks(raw),
                      f"not valid JSON ({exc.msg} at offset {exc.pos})") from None
    except (ValueError, RecursionError):
        raise _broken(_has_signed_marks(raw), "not valid JSON") from None
    if not isinstance(decoded, dict):
        raise _invalid("not a JSON object")
    if _chunked_driver_object(decoded):
        inner = decoded[CHUNKED_DOCUMENT]
        if not isinstance(inner, str):
            raise _invalid(f"{CHUNKED_DOCUMENT} of a backup driver's object is not JSON text")
        parsed = parse(inner, max_bytes)
        return parsed

    claims_signature = SIGNATURE in decoded
    if VERSION not in decoded:
        raise _broken(claims_signature, "no version")
    version = decoded[VERSION]
    # bool is an int in Python; Cinder never wrote true for a version.
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise exception.BackupMetadataUnsupportedVersion(
            version=_shown_version(version))
    if version == FORMAT_VERSION:
        return _parse_signed(raw, decoded)
    if claims_signature:
        raise _damaged(f"a version {version} document carries a signature")
    return _parse_cinder(decoded, version)


def _parse_cinder(decoded: dict[str, Any], version: int) -> ParsedDocument:
    sections: dict[str, dict[str, Any]] = {}
    for name in (BASE, METADATA, GLANCE):
        value = decoded.get(name, {})
        if not isinstance(value, dict):
            raise _invalid(f"section {name} is not an object")
        sections[name] = value
    if not _is_string_map(sections[GLANCE]):
        raise _invalid(f"section {GLANCE} holds a value that is not a string")
    return ParsedDocument(version=version, base=sections[BASE],
                          metadata=sections[METADATA], glance=sections[GLANCE])


def _parse_signed(raw: str, decoded: dict[str, Any]) -> ParsedDocument:
    members = set(decoded)
    if not _V3_REQUIRED <= members:
        raise _damaged("a required section is missing")
    if not members <= _V3_ALLOWED:
        raise _damaged("an unknown section is present")
    for name in (BASE, METADATA):
        if not isinstance(decoded[name], dict):
            raise _damaged(f"section {name} is not an object")
    if not _is_string_map(decoded[GLANCE]):
        raise _damaged(f"section {GLANCE} is not an object of strings")

    signature = None
    if SIGNATURE in decoded:
        signature = _parse_signature(decoded[SIGNATURE])

    spans = _member_spans(raw)
    canonical = all(
        raw[spans[name][0]:spans[name][1]]
        == _canonical(name) + ":" + _canonical(decoded[name])
        for name in _SIGNED_MEMBERS if name in decoded)

    return ParsedDocument(version=FORMAT_VERSION, base=decoded[BASE],
                          metadata=decoded[METADATA], glance=decoded[GLANCE],
                          signature=signature, signed_part_canonical=canonical)


def _parse_signature(value: Any) -> SignatureInfo:
    if not isinstance(value, dict) or set(value) != _SIGNATURE_FIELDS:
        raise _damaged("the signature object does not have the expected fields")
    if type(value["format"]) is not int:
        raise _damaged("the signature format is not an integer")
    for name in ("algorithm", "key_id", "backup_id", "volume_id", "mac"):
        field = value[name]
        if not isinstance(field, str) or not field or len(field) > _MAX_ID_LENGTH:
            raise _damaged(f"signature field {name} is not a short string")
    return SignatureInfo(algorithm=value["algorithm"], format=value["format"],
                         key_id=value["key_id"], backup_id=value["backup_id"],
                         volume_id=value["volume_id"], mac=value["mac"])


def verify(parsed: ParsedDocument, backup_id: str, volume_id: str,
           lookup_key: Callable[[str], bytes | None]) -> VerifyResult:
    """Check the signature of a parsed document against where it belongs.

    :param parsed: the result of :func:`parse`.
    :param backup_id: the backup being restored.
    :param volume_id: the volume the backup was taken from, as custos
        recorded it (not the restore target, and not read from a document
        the user could have edited).
    :param lookup_key: returns the signing key named by a key id, active or
        deactivated, or None (or raises ``KeyNotFound``) when there is no
        such key.  The key id from the document is only ever passed here as
        a name.
    :returns: ``VerifyResult(True, "verified")``, or ``ok=False`` with a
        short reason that names no key material and no document text.
    :raises: whatever ``lookup_key`` raises other than ``KeyNotFound``
        (a key store that is down is not a tampered document).
    """
    signature = parsed.signature
    if parsed.version != FORMAT_VERSION or signature is None:
        return VerifyResult(False, "document is not signed")
    if not parsed.signed_part_canonical:
        return VerifyResult(False, "signed part is not in canonical form")
    if signature.algorithm != ALGORITHM:
        return VerifyResult(False, "unsupported signature algorithm")
    if signature.format != SIGNATURE_FORMAT:
        return VerifyResult(False, "unsupported signature format")
    if not _HEX_MAC.fullmatch(signature.mac):
        return VerifyResult(False, "malformed signature value")
    # Ids are not secret; only the MAC needs a constant-time comparison.
    if signature.backup_id != backup_id:
        return VerifyResult(False, "signature belongs to another backup")
    if signature.volume_id != volume_id:
        return VerifyResult(False, "signature belongs to another volume")

    try:
        key = lookup_key(signature.key_id)
    except exception.KeyNotFound:
        key = None
    if not key:
        return VerifyResult(False, "unknown signing key")

    expected = _mac(bytes(key), version=parsed.version, backup_id=backup_id,
                    volume_id=volume_id, key_id=signature.key_id,
                    glance=parsed.glance)
    if not hmac.compare_digest(expected, signature.mac):
        return VerifyResult(False, "signature does not match")
    return VerifyResult(True, "verified")


def restorable_base(base: dict[str, Any], *, version: int = FORMAT_VERSION,
                    target_display_name: str | None = None) -> dict[str, Any]:
    """Return the base fields that a restore puts back onto the volume.

    Follows Cinder's restore factories: ``display_name`` and
    ``display_description`` (version 1), plus ``encryption_key_id`` (version
    2, and custos' version 3).  As in Cinder, the name and description are
    left out when the backed-up name is empty, or when the target volume
    already has a name of its own (one not starting with
    ``restore_backup_``, the name Cinder gives a volume it creates for a
    restore).  When an encryption key id is restored, ``volume_type_id``
    comes with it: Cinder restores an encrypted volume only onto the volume
    type it had, so the caller needs both.

    :param base: the document's ``volume-base-metadata`` section.
    :param version: the document's version.
    :param target_display_name: the current name of the restore target.
    :returns: a new dict holding only the fields to restore.
    :raises agent.exception.BackupMetadataUnsupportedVersion: unknown
        ``version``.
    """
    fields = RESTORED_BASE_FIELDS.get(version)
    if fields is None:
        raise exception.BackupMetadataUnsupportedVersion(
            version=_shown_version(version))
    excluded: set[str] = set()
    if "display_name" in base:
        if not base.get("display_name") or (
                target_display_name
                and not target_display_name.startswith("restore_backup_")):
            excluded = {"display_name", "display_description"}
    restored = {name: base[name] for name in fields
                if name in base and name not in excluded}
    if restored.get("encryption_key_id") is not None and "volume_type_id" in base:
        restored["volume_type_id"] = base["volume_type_id"]
    return restored
