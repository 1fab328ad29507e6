"""Backup metadata documents: signing, reading back, and catching edits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import exception
from agent.backups import document

BACKUP_ID = "0e7c1a5f-7d7b-4b63-9a5d-2f1d8c3b9e10"
OTHER_BACKUP_ID = "4b1d9a2e-3c7f-4e18-8f35-6a0c2d9e7b51"
VOLUME_ID = "9a4f6c1e-2b8d-4d3f-a7e5-1c0b9d8e6f42"
OTHER_VOLUME_ID = "c3e8b7a2-6f1d-4a9e-b5c4-7d2e0f1a8b93"

# Two ids one flipped bit apart, so a flipped key id can name a real key.
ACTIVE_KEY_ID = "signing-1"
OLD_KEY_ID = "signing-0"
KEYS = {
    ACTIVE_KEY_ID: bytes(range(32)),
    OLD_KEY_ID: bytes(range(100, 132)),
}

BASE = {
    "id": VOLUME_ID,
    "display_name": "db-root",
    "display_description": "root disk of the db server",
    "size": 10,
    "bootable": True,
    "encryption_key_id": None,
    "volume_type_id": "5f0c8e3a-1d2b-4c6e-9a7f-3b8d2e1c0a94",
    "created_at": "2024-03-05T10:11:12.000000",
}
METADATA = {"purpose": "database", "owner": "team-a"}
GLANCE = {
    "image_id": "7e3b9c1d-5a2f-4e8b-b6d0-9c1a3f5e7d28",
    "image_name": "win-2019-caf\u00e9",
    "checksum": "2a0f5e1b4c3d6e7f8091a2b3c4d5e6f7",
    "container_format": "bare",
    "disk_format": "qcow2",
    "min_ram": "0",
    "billing_code": 'WIN/DC-2019 "licensed" \\ 4',
    "empty": "",
}

# Cinder's BackupMetadataAPI.get() output, through jsonutils.dumps (default
# separators, ensure_ascii, datetimes as ISO strings), for both versions.
CINDER_V1 = """{"version": 1, "volume-base-metadata": {"id": "9a4f6c1e-2b8d-4d3f-\
a7e5-1c0b9d8e6f42", "size": 1, "status": "backing-up", "display_name": "vol-a", \
"display_description": "first volume", "availability_zone": "nova", "host": \
"node-1@lvm#lvm", "user_id": "5c2d", "project_id": "8f1e", "bootable": true, \
"attach_status": "detached", "volume_type_id": null, "snapshot_id": null, \
"source_volid": null, "created_at": "2013-06-28T07:50:07.000000", "deleted": \
false}, "volume-metadata": {"purpose": "web", "tier": "gold"}, \
"volume-glance-metadata": {"image_id": "1f5a", "image_name": "cirros-0.3.1", \
"container_format": "bare", "disk_format": "qcow2", "min_disk": "0", \
"min_ram": "0", "size": "13147648", "billing_code": "linux-free"}}"""

CINDER_V2 = """{"version": 2, "volume-base-metadata": {"id": "9a4f6c1e-2b8d-4d3f-\
a7e5-1c0b9d8e6f42", "size": 20, "status": "backing-up", "display_name": "win", \
"display_description": "licensed image", "encryption_key_id": "b7c1e2d3-0000-4\
aaa-8bbb-123456789abc", "volume_type_id": "5f0c8e3a-1d2b-4c6e-9a7f-3b8d2e1c0a94", \
"multiattach": false, "bootable": true, "created_at": "2019-02-01T12:00:00.000000", \
"updated_at": null}, "volume-metadata": {"os": "windows"}, \
"volume-glance-metadata": {"image_id": "2c6b", "image_name": "win-2019", \
"checksum": "9e107d9d372bb6826bd81d3542a419d6", "container_format": "bare", \
"disk_format": "raw", "min_disk": "40", "min_ram": "2048", \
"billing_code": "WIN-DC-2019", "os_type": "windows"}}"""


def export(glance: dict[str, str] = GLANCE, key_id: str = ACTIVE_KEY_ID,
           backup_id: str = BACKUP_ID, volume_id: str = VOLUME_ID) -> str:
    return document.build(backup_id, volume_id, BASE, METADATA, glance,
                          key_id, KEYS[key_id])


def check(text: str | bytes, backup_id: str = BACKUP_ID,
          volume_id: str = VOLUME_ID) -> document.VerifyResult:
    return document.verify(document.parse(text), backup_id, volume_id, KEYS.get)


def member_range(text: str, name: str) -> range:
    """Byte range of a top-level member, from its key to its value's end."""
    token = json.dumps(name) + ":"
    start = text.index(token)
    _, end = json.JSONDecoder().raw_decode(text, start + len(token))
    return range(start, end)


def without_key_material(reason: str) -> bool:
    return all(key.hex() not in reason and repr(key) not in reason
               for key in KEYS.values())


# -- round trip --------------------------------------------------------------

def test_round_trip_verifies_and_keeps_every_section():
    text = export()

    parsed = document.parse(text)
    result = document.verify(parsed, BACKUP_ID, VOLUME_ID, KEYS.get)

    assert result.ok and result.reason == "verified"
    assert bool(result) is True
    assert parsed.version == document.FORMAT_VERSION == 3
    assert parsed.base == BASE
    assert parsed.metadata == METADATA
    assert parsed.glance == GLANCE
    assert parsed.signature is not None
    assert parsed.signature.key_id == ACTIVE_KEY_ID
    assert parsed.signature.algorithm == "HMAC-SHA256"
    assert (parsed.signature.backup_id, parsed.signature.volume_id) == (BACKUP_ID, VOLUME_ID)


def test_document_is_encoded_once_and_canonical():
    text = export()

    decoded = json.loads(text)

    assert text.isascii()
    assert text == json.dumps(decoded, sort_keys=True, separators=(",", ":"))
    for section in (document.BASE, document.METADATA, document.GLANCE):
        assert isinstance(decoded[section], dict)
    assert decoded["version"] == 3
    assert set(decoded["signature"]) == {
        "algorithm", "format", "key_id", "backup_id", "volume_id", "mac"}


def test_parse_accepts_bytes():
    assert check(export().encode("ascii")).ok


def test_key_material_never_appears_in_the_document():
    text = export()

    for key in KEYS.values():
        assert key.hex() not in text


# -- every changed byte of the signed part is caught -------------------------

def _variants(byte: int) -> set[int]:
    replacements = {byte ^ 0x01, byte ^ 0x20}
    replacements.update(ord(c) for c in 'xE0A "\\}:,')
    replacements.discard(byte)
    return replacements


def test_every_single_byte_change_of_the_signed_part_is_caught():
    text = export()
    data = text.encode("ascii")
    signed = [i for name in (document.GLANCE, document.SIGNATURE)
              for i in member_range(text, name)]
    assert check(data).ok
    # The signed part must hold the spellings that decode alike.
    signed_text = "".join(text[i] for i in signed)
    assert "\\u00e9" in signed_text and "\\\\" in signed_text

    missed = []
    tried = 0
    for index in signed:
        for replacement in _variants(data[index]):
            mutated = bytearray(data)
            mutated[index] = replacement
            tried += 1
            try:
                result = check(bytes(mutated))
            except exception.BackupMetadataDamaged:
                continue
            if result.ok:
                missed.append((index, chr(data[index]), chr(replacement)))
            assert without_key_material(result.reason)

    assert tried > 3000
    assert missed == []


@pytest.mark.parametrize("old, new", [
    ("caf\\u00e9", "caf\\u00E9"),
    ("WIN/DC", "WIN\\/DC"),
    ('"container_format":"bare"', '"container_format": "bare"'),
    ('"min_ram":"0"', '"min_ram":"\\u0030"'),
    ('"key_id":', '"key_\\u0069d":'),
    ('"volume-glance-metadata":', '"volume-glance-metadat\\u0061":'),
])
def test_spellings_that_decode_alike_are_refused(old, new):
    text = export()
    assert old in text

    result = check(text.replace(old, new, 1))

    assert not result.ok
    assert result.reason == "signed part is not in canonical form"


def test_upper_case_mac_is_refused():
    text = export()
    mac = json.loads(text)["signature"]["mac"]

    result = check(text.replace(mac, mac.upper()))

    assert not result.ok


def test_reordered_glance_keys_are_refused():
    decoded = json.loads(export())
    glance = decoded[document.GLANCE]
    reordered = dict(reversed(list(glance.items())))
    text = export().replace(json.dumps(glance, sort_keys=True, separators=(",", ":")),
                            json.dumps(reordered, separators=(",", ":")))

    assert not check(text).ok


def test_duplicate_glance_key_is_damage():
    text = export().replace('"empty":""', '"empty":"","image_id":"other"')

    with pytest.raises(exception.BackupMetadataDamaged):
        document.parse(text)


def test_changed_glance_value_with_valid_spelling_fails_the_mac():
    text = export().replace('"min_ram":"0"', '"min_ram":"1"')

    result = check(text)

    assert not result.ok and result.reason == "signature does not match"


# -- binding to backup, volume and key ---------------------------------------

def test_signature_does_not_verify_for_another_backup():
    text = export()

    assert not check(text, backup_id=OTHER_BACKUP_ID).ok


def test_signature_does_not_verify_for_another_volume():
    text = export()

    assert not check(text, volume_id=OTHER_VOLUME_ID).ok


def test_relabelled_backup_and_volume_ids_fail_the_mac():
    text = export().replace(BACKUP_ID, OTHER_BACKUP_ID).replace(VOLUME_ID, OTHER_VOLUME_ID)

    result = check(text, backup_id=OTHER_BACKUP_ID, volume_id=OTHER_VOLUME_ID)

    assert not result.ok and result.reason == "signature does not match"


def test_swapped_key_id_fails_even_when_the_other_key_exists():
    text = export().replace(f'"key_id":"{ACTIVE_KEY_ID}"', f'"key_id":"{OLD_KEY_ID}"')

    result = check(text)

    assert not result.ok and result.reason == "signature does not match"


def test_unknown_key_id_fails_and_is_only_used_as_a_name():
    text = export()
    asked: list[str] = []

    def lookup(key_id: str) -> bytes | None:
        asked.append(key_id)
        return None

    result = document.verify(document.parse(text), BACKUP_ID, VOLUME_ID, lookup)

    assert not result.ok and result.reason == "unknown signing key"
    assert asked == [ACTIVE_KEY_ID]


def test_lookup_raising_key_not_found_counts_as_unknown_key():
    def lookup(key_id: str) -> bytes | None:
        raise exception.KeyNotFound(key_id=key_id)

    result = document.verify(document.parse(export()), BACKUP_ID, VOLUME_ID, lookup)

    assert not result.ok and result.reason == "unknown signing key"


def test_lookup_failure_other_than_not_found_is_not_hidden():
    def lookup(key_id: str) -> bytes | None:
        raise exception.DatabaseUnavailable()

    with pytest.raises(exception.DatabaseUnavailable):
        document.verify(document.parse(export()), BACKUP_ID, VOLUME_ID, lookup)


class KeyRing:
    """The active key signs; deactivated keys still verify."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.active: str | None = None

    def rotate(self, key_id: str, key: bytes) -> None:
        self.keys[key_id] = key
        self.active = key_id

    def signing_key(self) -> tuple[str, bytes]:
        assert self.active is not None
        return self.active, self.keys[self.active]

    def lookup(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)


def test_document_signed_before_a_rotation_still_verifies():
    ring = KeyRing()
    ring.rotate("2024-01", KEYS[OLD_KEY_ID])
    key_id, key = ring.signing_key()
    text = document.build(BACKUP_ID, VOLUME_ID, BASE, METADATA, GLANCE, key_id, key)

    ring.rotate("2024-07", KEYS[ACTIVE_KEY_ID])
    result = document.verify(document.parse(text), BACKUP_ID, VOLUME_ID, ring.lookup)

    assert ring.signing_key()[0] == "2024-07"
    assert result.ok


def test_missing_signature_is_not_verified():
    decoded = json.loads(export())
    del decoded["signature"]
    text = json.dumps(decoded, sort_keys=True, separators=(",", ":"))

    parsed = document.parse(text)
    result = document.verify(parsed, BACKUP_ID, VOLUME_ID, KEYS.get)

    assert parsed.signature is None
    assert parsed.metadata == METADATA
    assert not result.ok and result.reason == "document is not signed"


@pytest.mark.parametrize("field, value, reason", [
    ("algorithm", "HMAC-SHA1", "unsupported signature algorithm"),
    ("format", 2, "unsupported signature format"),
    ("mac", "00", "malformed signature value"),
])
def test_unexpected_signature_values_are_refused(field, value, reason):
    decoded = json.loads(export())
    decoded["signature"][field] = value
    text = json.dumps(decoded, sort_keys=True, separators=(",", ":"))

    result = check(text)

    assert not result.ok and result.reason == reason


def test_failure_reasons_carry_no_key_material():
    text = export()
    results = [
        check(text, backup_id=OTHER_BACKUP_ID),
        check(text.replace('"min_ram":"0"', '"min_ram":"1"')),
        document.verify(document.parse(text), BACKUP_ID, VOLUME_ID, lambda _: None),
    ]

    assert all(not r.ok and without_key_material(r.reason) for r in results)


# -- Cinder's unsigned documents -------------------------------------------

def test_cinder_version_1_document_parses_unsigned():
    parsed = document.parse(CINDER_V1)

    assert parsed.version == 1
    assert parsed.metadata == {"purpose": "web", "tier": "gold"}
    assert parsed.glance["image_name"] == "cirros-0.3.1"
    assert parsed.glance["billing_code"] == "linux-free"
    assert parsed.signature is None
    assert not document.verify(parsed, BACKUP_ID, VOLUME_ID, KEYS.get).ok
    assert document.restorable_base(parsed.base, version=1) == {
        "display_name": "vol-a", "display_description": "first volume"}


def test_cinder_version_2_document_parses_unsigned():
    parsed = document.parse(CINDER_V2)

    assert parsed.version == 2
    assert parsed.metadata == {"os": "windows"}
    assert parsed.glance["billing_code"] == "WIN-DC-2019"
    assert parsed.signature is None
    assert document.verify(parsed, BACKUP_ID, VOLUME_ID, KEYS.get).reason == (
        "document is not signed")
    assert document.restorable_base(parsed.base, version=2) == {
        "display_name": "win", "display_description": "licensed image",
        "encryption_key_id": "b7c1e2d3-0000-4aaa-8bbb-123456789abc",
        "volume_type_id": "5f0c8e3a-1d2b-4c6e-9a7f-3b8d2e1c0a94"}


def test_cinder_document_without_sections_reads_them_as_empty():
    parsed = document.parse('{"version": 2}')

    assert (parsed.base, parsed.metadata, parsed.glance) == ({}, {}, {})


def test_cinder_version_carrying_a_signature_is_damage():
    text = export().replace('"version":3', '"version":2')

    with pytest.raises(exception.BackupMetadataDamaged):
        document.parse(text)


# -- versions, garbage, size ---------------------------------------------------

@pytest.mark.parametrize("version", [0, 4, 99, "3", 3.0, True, None])
def test_unknown_version_is_refused(version):
    text = json.dumps({"version": version, "volume-metadata": {}})

    with pytest.raises(exception.BackupMetadataUnsupportedVersion) as info:
        document.parse(text)

    assert info.value.kwargs["version"] == repr(version)
    assert info.value.code == "backup_metadata_unsupported_version"


@pytest.mark.parametrize("text", [
    "",
    "not json",
    b"\xff\xfe{}",
    "[1, 2]",
    '"a string"',
    "{}",
    '{"version": 2, "volume-metadata": "{\\"purpose\\": \\"web\\"}"}',
    '{"version": 2, "volume-glance-metadata": {"min_ram": 0}}',
    '{"version": 2, "volume-base-metadata": []}',
    '{"version": 2, "volume-metadata": {"a": "1", "a": "2"}}',
    '{"version": 2, "volume-metadata": {"size": NaN}}',
    "[" * 100000,
])
def test_garbage_is_invalid_but_not_tampering(text):
    with pytest.raises(exception.BackupMetadataInvalid) as info:
        document.parse(text)

    assert not isinstance(info.value, exception.BackupMetadataDamaged)
    assert isinstance(info.value, exception.InvalidInput)
    assert info.value.kwargs["field"] == "document"


@pytest.mark.parametrize("edit", [
    lambda d: d.__setitem__(document.BASE, ["not", "an", "object"]),
    lambda d: d.__setitem__(document.GLANCE, {"min_ram": 0}),
    lambda d: d.__delitem__(document.GLANCE),
    lambda d: d.__setitem__("extra", {}),
    lambda d: d["signature"].__delitem__("key_id"),
    lambda d: d.__setitem__("signature", "HMAC-SHA256:abc"),
])
def test_custos_document_of_the_wrong_shape_is_damage(edit):
    decoded = json.loads(export())
    edit(decoded)

    with pytest.raises(exception.BackupMetadataDamaged):
        document.parse(json.dumps(decoded))


def test_truncated_custos_document_is_damage():
    text = export()

    with pytest.raises(exception.BackupMetadataDamaged):
        document.parse(text[: len(text) // 2])


def test_document_over_the_size_limit_is_refused_before_parsing():
    text = '{"version": 2, "volume-metadata": {"pad": "' + "x" * 200 + '"}}'

    with pytest.raises(exception.BackupMetadataInvalid, match="larger than 100 bytes"):
        document.parse(text, max_bytes=100)
    with pytest.raises(exception.BackupMetadataInvalid):
        document.parse(" " * (document.MAX_DOCUMENT_BYTES + 1))
    with pytest.raises(exception.BackupMetadataInvalid):
        document.parse(b" " * (document.MAX_DOCUMENT_BYTES + 1))


def test_non_text_document_is_invalid():
    with pytest.raises(exception.BackupMetadataInvalid):
        document.parse({"version": 3})  # type: ignore[arg-type]


# -- building ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"glance": {"min_ram": 0}}, "glance_metadata"),
    ({"glance": ["a"]}, "glance_metadata"),
    ({"metadata": {1: "a"}}, "volume.metadata"),
    ({"base": {"size": float("nan")}}, "volume"),
    ({"base": {"created_at": object()}}, "volume"),
    ({"backup_id": ""}, "backup_id"),
    ({"volume_id": "v" * 256}, "volume_id"),
    ({"key_id": None}, "key_id"),
])
def test_build_refuses_bad_input_by_field(kwargs, field):
    args = {"backup_id": BACKUP_ID, "volume_id": VOLUME_ID, "base": BASE,
            "metadata": METADATA, "glance": GLANCE, "key_id": ACTIVE_KEY_ID,
            "key": KEYS[ACTIVE_KEY_ID]}
    args.update(kwargs)

    with pytest.raises(exception.InvalidInput) as info:
        document.build(**args)

    assert info.value.kwargs["field"] == field


def test_build_refuses_an_empty_key():
    with pytest.raises(ValueError):
        document.build(BACKUP_ID, VOLUME_ID, BASE, METADATA, GLANCE, ACTIVE_KEY_ID, b"")


def test_empty_glance_metadata_is_signed_too():
    text = export(glance={})

    assert check(text).ok
    assert not check(text.replace('"volume-glance-metadata":{}',
                                  '"volume-glance-metadata":{"a":"b"}')).ok


@settings(max_examples=200, deadline=None)
@given(glance=st.dictionaries(st.text(max_size=40), st.text(max_size=80), max_size=12))
def test_any_glance_metadata_of_strings_round_trips_and_verifies(glance):
    text = export(glance=glance)

    parsed = document.parse(text)

    assert parsed.glance == glance
    assert document.verify(parsed, BACKUP_ID, VOLUME_ID, KEYS.get).ok


# -- restoring base fields --------------------------------------------------

def test_restorable_base_follows_cinder_version_2_fields():
    assert document.restorable_base(BASE) == {
        "display_name": "db-root",
        "display_description": "root disk of the db server",
        "encryption_key_id": None,
    }


def test_restorable_base_skips_name_when_backed_up_name_is_empty():
    base = dict(BASE, display_name="")

    assert document.restorable_base(base) == {"encryption_key_id": None}


def test_restorable_base_keeps_a_named_target_volume_name():
    assert "display_name" not in document.restorable_base(
        BASE, target_display_name="my-volume")
    assert document.restorable_base(
        BASE, target_display_name="restore_backup_0e7c")["display_name"] == "db-root"


def test_restorable_base_refuses_unknown_version():
    with pytest.raises(exception.BackupMetadataUnsupportedVersion):
        document.restorable_base(BASE, version=7)
