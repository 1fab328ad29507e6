"""Tests for agent.secrets.definition: libvirt secret XML in and out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import exception
from agent.secrets import definition
from agent.secrets.definition import SecretDefinition

CORPUS = (Path(__file__).resolve().parents[3].parent
          / "shared" / "corpus" / "libvirt-secretxml")
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason="libvirt secret XML corpus not found at %s" % CORPUS)

UUID = "f52a81b2-424e-490c-823d-6bd4235bc572"


def _corpus_outcomes() -> dict[str, str]:
    """Read the README's table: file name -> 'accepted' or 'rejected'."""
    outcomes = {}
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    for match in re.finditer(r"^\|\s*(\S+\.xml)\s*\|\s*(accepted|rejected)\b",
                             readme, re.MULTILINE):
        outcomes[match.group(1)] = match.group(2)
    return outcomes


def _refusal(xml: str | bytes) -> exception.InvalidSecretXML:
    with pytest.raises(exception.InvalidSecretXML) as info:
        definition.parse(xml)
    assert info.value.code == "invalid_secret_xml"
    assert info.value.kwargs["field"] == "xml"
    return info.value


def _secret(body: str = "", attributes: str = "") -> str:
    return "<secret%s>%s</secret>" % (attributes, body)


# -- libvirt's own documents -----------------------------------------------

@needs_corpus
def test_corpus_readme_covers_every_file():
    files = {path.name for path in CORPUS.glob("*.xml")}

    assert files
    assert set(_corpus_outcomes()) == files


@needs_corpus
def test_corpus_accepted_files_round_trip_byte_for_byte():
    accepted = [name for name, outcome in _corpus_outcomes().items()
                if outcome == "accepted"]
    assert accepted

    for name in accepted:
        text = (CORPUS / name).read_bytes().decode("utf-8")

        assert definition.format(definition.parse(text)) == text, name
        assert definition.parse(text.encode("utf-8")) == definition.parse(text), name


@needs_corpus
def test_corpus_rejected_files_are_refused():
    rejected = [name for name, outcome in _corpus_outcomes().items()
                if outcome == "rejected"]

    assert "usage-passphrase.xml" in rejected
    for name in rejected:
        _refusal((CORPUS / name).read_text(encoding="utf-8"))


@needs_corpus
def test_corpus_passphrase_refusal_names_the_usage_type():
    error = _refusal((CORPUS / "usage-passphrase.xml").read_text(encoding="utf-8"))

    assert "<usage>" in error.msg
    assert "passphrase" in error.msg


@needs_corpus
def test_corpus_volume_secret_reads_as_ephemeral_and_private():
    defn = definition.parse((CORPUS / "usage-volume.xml").read_text(encoding="utf-8"))

    assert defn == SecretDefinition(
        uuid="22e1353d-c27e-4d6d-bf15-465053e6ba0b", ephemeral=True, private=True,
        description="Ephemeral Private Secret", usage_type="volume",
        usage_id="/var/lib/libvirt/images/image.img")


# -- what parse accepts ----------------------------------------------------

def test_minimal_secret_has_defaults_and_no_usage():
    defn = definition.parse("<secret/>")

    assert defn == SecretDefinition(uuid=None, ephemeral=False, private=False,
                                    description=None, usage_type=None, usage_id=None)


@pytest.mark.parametrize("usage_type, child", [
    ("ceph", "name"), ("tls", "name"), ("vtpm", "name"), ("iscsi", "target"),
    ("volume", "volume"),
])
def test_each_usage_type_reads_its_own_child(usage_type, child):
    usage_id = "/dev/vg/lv" if usage_type == "volume" else "id-1"
    xml = _secret("<usage type='%s'><%s>%s</%s></usage>"
                  % (usage_type, child, usage_id, child))

    defn = definition.parse(xml)

    assert (defn.usage_type, defn.usage_id) == (usage_type, usage_id)


@pytest.mark.parametrize("raw", [
    "F52A81B2-424E-490C-823D-6BD4235BC572",
    "f52a81b2424e490c823d6bd4235bc572",
    "  f52a81b2-424e-490c-823d-6bd4235bc572\n",
    "f5 2a 81 b2 42 4e 49 0c 82 3d 6b d4 23 5b c5 72",
    "-f52a81b2--424e-490c-823d-6bd4235bc572",
])
def test_uuid_is_read_liberally_and_stored_canonical(raw):
    defn = definition.parse(_secret("<uuid>%s</uuid>" % raw))

    assert defn.uuid == UUID


def test_empty_uuid_and_description_count_as_absent():
    defn = definition.parse(_secret("<uuid/><description></description>"))

    assert defn.uuid is None
    assert defn.description is None


def test_unknown_elements_and_attributes_are_ignored():
    xml = _secret("<uuid>%s</uuid><owner>x</owner><usage type='ceph' extra='1'>"
                  "<name>n</name><pool>p</pool></usage>" % UUID,
                  " ephemeral='no' colour='blue'")

    defn = definition.parse(xml)

    assert defn == SecretDefinition(uuid=UUID, usage_type="ceph", usage_id="n")


def test_text_is_kept_verbatim_including_escapes_and_whitespace():
    xml = _secret("<description> a &amp; b &lt;c&gt; &quot;d&quot; \u00e9 </description>"
                  "<usage type='ceph'><name> spaced name </name></usage>")

    defn = definition.parse(xml)

    assert defn.description == ' a & b <c> "d" \u00e9 '
    assert defn.usage_id == " spaced name "


def test_document_of_exactly_64_kib_is_accepted():
    head = "<secret><description>x</description>"
    tail = "</secret>"
    padding = " " * (definition.MAX_XML_BYTES - len(head) - len(tail))
    xml = head + padding + tail
    assert len(xml.encode("utf-8")) == 65536

    assert definition.parse(xml).description == "x"
    assert definition.parse(xml.encode("utf-8")).description == "x"


def test_bytes_with_utf8_bom_are_accepted():
    defn = definition.parse(b"\xef\xbb\xbf<secret><description>\xc3\xa9</description></secret>")

    assert defn.description == "\u00e9"


# -- what parse refuses ----------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE secret [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<secret><description>&lol4;</description></secret>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE secret [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<secret><description>&xxe;</description></secret>
"""


def test_billion_laughs_is_refused():
    error = _refusal(BILLION_LAUGHS)

    assert "DTD" in error.msg
    assert "lol" not in error.msg


def test_external_entity_is_refused_without_reading_it():
    error = _refusal(EXTERNAL_ENTITY)

    assert "DTD" in error.msg
    assert "passwd" not in error.msg
    assert "root:" not in error.msg


def test_any_doctype_is_refused():
    _refusal("<!DOCTYPE secret><secret/>")
    _refusal('<!DOCTYPE secret SYSTEM "http://example.com/secret.dtd"><secret/>')


def test_undeclared_entity_is_refused():
    _refusal(_secret("<description>&xxe;</description>"))


def test_one_byte_over_64_kib_is_refused_before_parsing(monkeypatch):
    def parser_must_not_run(*args, **kwargs):
        raise AssertionError("the parser ran on an oversize document")

    monkeypatch.setattr(definition.defused_et, "fromstring", parser_must_not_run)
    xml = "<secret>" + " " * (definition.MAX_XML_BYTES + 1 - 17) + "</secret>"
    assert len(xml.encode("utf-8")) == 65537

    for document in (xml, xml.encode("utf-8")):
        error = _refusal(document)
        assert "65536 bytes" in error.msg


def test_size_is_measured_in_utf8_bytes_not_characters():
    # 'é' takes two bytes: fewer than 64 Ki characters, more than 64 KiB.
    xml = "<secret><!--" + "\u00e9" * 33000 + "--></secret>"
    assert len(xml) < 65536 < len(xml.encode("utf-8"))

    _refusal(xml)


@pytest.mark.parametrize("xml", [
    "<secret><usage type='" + "z" * 60000 + "'/></secret>",
    "<secret ephemeral='" + "z" * 60000 + "'/>",
    "<" + "z" * 60000 + "/>",
])
def test_large_documents_are_not_echoed_back(xml):
    error = _refusal(xml)

    assert len(error.msg) < 300


@pytest.mark.parametrize("junk", [
    b"<secret><description>\xff\xfe\x80</description></secret>",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "<?xml version='1.0' encoding='latin-1'?><secret><description>\u00e9"
    "</description></secret>".encode("latin-1"),
])
def test_non_utf8_bytes_are_refused(junk):
    error = _refusal(junk)

    assert "UTF-8" in error.msg


def test_unpaired_surrogate_text_is_refused():
    _refusal("<secret><description>\udc80</description></secret>")


@pytest.mark.parametrize("xml", [
    "", "not xml at all", "<secret>", "<secret></secrets>", "<secret/><secret/>",
    "<secret>\x00</secret>",
])
def test_malformed_documents_are_refused(xml):
    error = _refusal(xml)

    assert "well-formed" in error.msg


def test_wrong_root_is_refused_and_named():
    error = _refusal("<domain><uuid>%s</uuid></domain>" % UUID)

    assert "<secret>" in error.msg and "<domain>" in error.msg


def test_namespaced_root_is_refused():
    _refusal("<x:secret xmlns:x='urn:example'/>")


@pytest.mark.parametrize("attribute", ["ephemeral", "private"])
@pytest.mark.parametrize("value", ["YES", "true", "1", "", " yes"])
def test_yes_no_attributes_refuse_other_values(attribute, value):
    error = _refusal(_secret(attributes=" %s='%s'" % (attribute, value)))

    assert attribute in error.msg


@pytest.mark.parametrize("raw", [
    "f52a81b2-424e-490c-823d-6bd4235bc57",     # 31 digits
    "f52a81b2-424e-490c-823d-6bd4235bc5722",   # 33 digits
    "f-52a81b2-424e-490c-823d-6bd4235bc572",   # separator inside a pair
    "f52a81b2-424e-490c-823d-6bd4235bc572-",   # trailing separator
    "g52a81b2-424e-490c-823d-6bd4235bc572",
    "f52a81b2_424e_490c_823d_6bd4235bc572",
    "\uff10" * 32,                             # fullwidth digits are not hex
    " ",
])
def test_bad_uuid_is_refused(raw):
    error = _refusal(_secret("<uuid>%s</uuid>" % raw))

    assert "<uuid>" in error.msg


@pytest.mark.parametrize("path", ["var/lib/image.img", "./image.img", "~/image.img"])
def test_relative_volume_path_is_refused(path):
    error = _refusal(_secret("<usage type='volume'><volume>%s</volume></usage>" % path))

    assert "<volume>" in error.msg and "absolute" in error.msg


def test_volume_id_is_accepted_as_volume_usage():
    volume_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

    defn = definition.parse(_secret("<usage type='volume'><volume>%s</volume></usage>"
                                    % volume_id))

    assert (defn.usage_type, defn.usage_id) == ("volume", volume_id)
    assert definition.parse(definition.format(defn)) == defn


@pytest.mark.parametrize("volume_id", ["0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
                                       "0a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d",
                                       "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d "])
def test_volume_id_in_another_form_is_refused(volume_id):
    error = _refusal(_secret("<usage type='volume'><volume>%s</volume></usage>" % volume_id))

    assert "<volume>" in error.msg


@pytest.mark.parametrize("usage", [
    "<usage type='volume'/>",
    "<usage type='volume'><name>/var/lib/x</name></usage>",
    "<usage type='ceph'><target>t</target></usage>",
    "<usage type='iscsi'><name>n</name></usage>",
    "<usage type='tls'></usage>",
    "<usage type='vtpm'><name></name></usage>",
])
def test_usage_without_its_child_is_refused(usage):
    error = _refusal(_secret(usage))

    assert "<usage type=" in error.msg


@pytest.mark.parametrize("usage_type", ["passphrase", "none", "Ceph", "", "volume "])
def test_unknown_usage_type_is_refused(usage_type):
    error = _refusal(_secret("<usage type='%s'><name>n</name></usage>" % usage_type))

    assert "<usage>" in error.msg


def test_usage_without_type_is_refused():
    error = _refusal(_secret("<usage><name>n</name></usage>"))

    assert "'type'" in error.msg


def test_usage_id_of_255_characters_is_accepted_and_256_refused():
    fits = _secret("<usage type='ceph'><name>%s</name></usage>" % ("n" * 255))
    too_long = _secret("<usage type='ceph'><name>%s</name></usage>" % ("n" * 256))

    assert definition.parse(fits).usage_id == "n" * 255
    error = _refusal(too_long)
    assert "255" in error.msg and "column" in error.msg


def test_description_of_1024_characters_is_accepted_and_1025_refused():
    fits = _secret("<description>%s</description>" % ("d" * 1024))
    too_long = _secret("<description>%s</description>" % ("d" * 1025))

    assert definition.parse(fits).description == "d" * 1024
    error = _refusal(too_long)
    assert "1024" in error.msg and "column" in error.msg


@pytest.mark.parametrize("body", [
    "<uuid>%s</uuid><uuid>%s</uuid>" % (UUID, UUID),
    "<description>a</description><description>b</description>",
    "<usage type='ceph'><name>a</name></usage><usage type='tls'><name>b</name></usage>",
    "<usage type='ceph'><name>a</name><name>b</name></usage>",
])
def test_repeated_elements_are_refused(body):
    error = _refusal(_secret(body))

    assert "more than one" in error.msg


@pytest.mark.parametrize("body", [
    "<description>a<b>bold</b></description>",
    "<usage type='ceph'><name>a<x/></name></usage>",
])
def test_nested_markup_in_text_elements_is_refused(body):
    error = _refusal(_secret(body))

    assert "text only" in error.msg


def test_non_text_input_is_refused():
    _refusal(None)  # type: ignore[arg-type]


# -- format ------------------------------------------------------------------

def test_format_writes_libvirt_layout():
    defn = SecretDefinition(uuid=UUID, ephemeral=True, private=False,
                            description="d", usage_type="iscsi", usage_id="iqn.x")

    assert definition.format(defn) == (
        "<secret ephemeral='yes' private='no'>\n"
        "  <uuid>f52a81b2-424e-490c-823d-6bd4235bc572</uuid>\n"
        "  <description>d</description>\n"
        "  <usage type='iscsi'>\n"
        "    <target>iqn.x</target>\n"
        "  </usage>\n"
        "</secret>\n")


def test_format_leaves_out_what_is_absent():
    assert definition.format(SecretDefinition(uuid=None)) == (
        "<secret ephemeral='no' private='no'>\n</secret>\n")


def test_format_escapes_markup_characters():
    defn = SecretDefinition(uuid=UUID, description="a&b <c> 'd' \"e\" ]]> \r\n",
                            usage_type="ceph", usage_id="&lt;")

    xml = definition.format(defn)

    assert "<description>a&amp;b &lt;c&gt; &apos;d&apos; &quot;e&quot; ]]&gt; &#13;\n" in xml
    assert "<name>&amp;lt;</name>" in xml
    assert definition.parse(xml) == defn


@pytest.mark.parametrize("defn, field", [
    (SecretDefinition(uuid=UUID, usage_type="passphrase", usage_id="x"), "usage_type"),
    (SecretDefinition(uuid=UUID, usage_type=None, usage_id="x"), "usage_type"),
    (SecretDefinition(uuid=UUID, usage_type="ceph", usage_id=None), "usage_id"),
    (SecretDefinition(uuid=UUID, description="bell \x07"), "description"),
    (SecretDefinition(uuid=UUID, usage_type="tls", usage_id="nul\x00"), "usage_id"),
])
def test_format_refuses_what_xml_cannot_carry(defn, field):
    with pytest.raises(exception.InvalidInput) as info:
        definition.format(defn)

    assert info.value.kwargs["field"] == field


# -- round trip --------------------------------------------------------------

# Any character XML 1.0 can carry.
xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",),
                           blacklist_characters="\ufffe\uffff").filter(
        lambda char: char in "\t\n\r" or char >= " "),
    min_size=1)


@settings(max_examples=300)
@given(description=xml_text.filter(lambda text: len(text) <= 1024),
       usage_id=xml_text.filter(lambda text: len(text) <= 255),
       usage_type=st.sampled_from(["ceph", "iscsi", "tls", "vtpm"]),
       ephemeral=st.booleans(), private=st.booleans(), uuid=st.uuids())
def test_format_then_parse_gives_back_the_definition(description, usage_id, usage_type,
                                                     ephemeral, private, uuid):
    defn = SecretDefinition(uuid=str(uuid), ephemeral=ephemeral, private=private,
                            description=description, usage_type=usage_type,
                            usage_id=usage_id)

    xml = definition.format(defn)

    assert definition.parse(xml) == defn
    assert definition.parse(xml.encode("utf-8")) == defn
    assert definition.format(definition.parse(xml)) == xml


@given(path=xml_text.filter(lambda text: len(text) < 255).map(lambda text: "/" + text))
def test_volume_paths_round_trip(path):
    defn = SecretDefinition(uuid=UUID, usage_type="volume", usage_id=path)

    assert definition.parse(definition.format(defn)) == defn
