"""Hostile RPC arguments for every method the agent serves (SPEC §4).

:func:`rpc_methods` lists the methods from the agent's own endpoint
classes, so a method added later is abused without touching the tests.
:func:`call_arguments` draws keyword arguments for one method: each
parameter missing, of a wrong type, huge, full of unusual unicode, bad
base64, a bad UUID, or plausible enough to get past the first checks; and
sometimes an argument the method does not take.
"""

from __future__ import annotations

import base64
import inspect
import uuid
from typing import Any

from hypothesis import strategies as st

from agent.handlers import backups, connections, keys, secrets, service, vendordata
from tests.common import OTHER_PROJECT, PROJECT, make_context

ENDPOINT_CLASSES = (service.ServiceEndpoint, secrets.SecretEndpoint,
                    connections.ConnectionEndpoint, backups.BackupEndpoint,
                    vendordata.VendordataEndpoint, keys.KeyEndpoint)

# Values a caller must never be able to turn into anything but a named error.
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'
                            for i in range(1, 10))
                  + ']><secret ephemeral="no" private="no"><description>&lol9;</description>'
                  "</secret>")
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE secret [<!ENTITY xxe SYSTEM '
                   '"file:///etc/passwd">]><secret ephemeral="no" private="no">'
                   "<description>&xxe;</description></secret>")
EXTERNAL_DTD = ('<?xml version="1.0"?><!DOCTYPE secret SYSTEM "http://127.0.0.1:1/x.dtd">'
                '<secret ephemeral="no" private="no"/>')
OVERSIZE_XML = ('<secret ephemeral="no" private="no"><description>'
                + "x" * (70 * 1024) + "</description></secret>")
XML_ATTACKS = {"billion_laughs": BILLION_LAUGHS, "external_entity": EXTERNAL_ENTITY,
               "external_dtd": EXTERNAL_DTD, "oversize": OVERSIZE_XML}

# The backend the agents under abuse have (see backend_sections()).
BACKEND = "lvm-1"
BACKEND_OPTIONS = {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
                   "target_portal": "192.0.2.10:3260",
                   "target_iqn_prefix": "iqn.2010-10.org.example"}

BAD_UUIDS = ["", "not-a-uuid", "12345678-1234-1234-1234-1234567890az", "0" * 36,
             "{" + str(uuid.UUID(int=1)) + "}", str(uuid.UUID(int=2)) + "\n", "../" * 12]
BAD_BASE64 = ["!!!!", "abc", "a===", "=" * 8, "Zm9v\x00YmFy", "ä" * 8, "Zm9vYmFy" * 20000]
HUGE = [n * "x" for n in (256, 1025, 70 * 1024)] + ["é" * 256, "\U0001f512" * 300]


def rpc_methods() -> dict[str, list[tuple[str, bool]]]:
    """``{method: [(parameter, required), ...]}`` of every served RPC method."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for cls in ENDPOINT_CLASSES:
        for name, member in inspect.getmembers(cls, callable):
            if not getattr(member, "rpc_method", False):
                continue
            params = list(inspect.signature(inspect.unwrap(member)).parameters.values())[2:]
            found[name] = [(p.name, p.default is p.empty) for p in params]
    return found


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
nasty_strings = st.one_of(
    st.sampled_from(BAD_UUIDS + BAD_BASE64 + HUGE + list(XML_ATTACKS.values())),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0x80), min_size=1, max_size=40))


def _plausible(name: str) -> st.SearchStrategy[Any]:
    """Values shaped like what the parameter ``name`` wants, to get past type checks."""
    uuids = st.one_of(st.uuids().map(str), st.sampled_from(BAD_UUIDS))
    if name in ("uuid", "volume_id", "src_volume_id", "dst_volume_id", "backup_id",
                "instance_uuid"):
        return uuids
    if name == "value":
        return st.one_of(st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
                         st.sampled_from(BAD_BASE64))
    if name == "xml":
        return st.one_of(st.sampled_from(list(XML_ATTACKS.values())),
                         st.builds(lambda d: f'<secret ephemeral="no" private="no">'
                                             f"<description>{d}</description></secret>",
                                   st.text(alphabet="abc<>&'\"", max_size=20)))
    if name in ("volume", "instance", "connector"):
        keys = st.sampled_from(["id", "uuid", "initiator", "initiator", "host", "project_id", "image_id",
                                "hostname", "user_data", "metadata", "base", "wwpns"])
        return st.dictionaries(keys, st.one_of(uuids, nasty_strings, json_values), max_size=6)
    if name in ("metadata", "set_values"):
        return st.dictionaries(nasty_strings, st.one_of(nasty_strings, json_values), max_size=4)
    if name in ("roles", "remove_values"):
        return st.lists(st.one_of(nasty_strings, json_values), max_size=4)
    if name == "backend":
        return st.one_of(st.sampled_from([BACKEND, BACKEND, "lvm-2", ""]), nasty_strings)
    if name == "initiator":
        return st.one_of(st.sampled_from(["iqn.1993-08.org.debian:01:abuse",
                                          "iqn.2004-10.org.example:x"]), nasty_strings)
    if name == "namespace":
        return st.one_of(st.sampled_from(["lvm", "ISCSIChapDriver"]), nasty_strings)
    if name in ("usage_type",):
        return st.one_of(st.sampled_from(["volume", "ceph", "iscsi", "tls", "vtpm", "VOLUME",
                                          "nonsense"]), nasty_strings)
    if name == "object_type":
        return st.one_of(st.sampled_from(["symmetric", "public", "private", "certificate",
                                          "passphrase", "opaque", "Symmetric"]), nasty_strings)
    if name == "algorithm":
        return st.one_of(st.sampled_from(["AES", "aes", "RSA", "HMACSHA256", "DES"]),
                         nasty_strings)
    if name == "bit_length":
        return st.one_of(st.integers(), st.sampled_from([128, 256, 512, 2048, 2**63, -1]))
    if name in ("length",):
        return st.one_of(st.integers(), st.sampled_from([0, 15, 16, 1024, 1025, 2**63, -1]))
    if name in ("ephemeral", "private", "force", "metadata_only"):
        return st.one_of(st.booleans(), json_values)
    return st.one_of(nasty_strings, json_values)


def _argument(name: str) -> st.SearchStrategy[Any]:
    return st.one_of(_plausible(name), json_values, nasty_strings)


@st.composite
def call_arguments(draw: st.DrawFn, params: list[tuple[str, bool]]) -> dict[str, Any]:
    """Keyword arguments for one call of a method with ``params``."""
    kwargs: dict[str, Any] = {}
    for name, required in params:
        # Required parameters are present most of the time so that the
        # checks after the "missing argument" one get their share.
        if draw(st.integers(0, 9)) < (9 if required else 6):
            kwargs[name] = draw(_argument(name))
    if draw(st.integers(0, 9)) == 0:
        # ctxt and method are the client call's own parameters: no
        # oslo.messaging client can send arguments of those names.
        extra = draw(st.text(min_size=1, max_size=20).filter(
            lambda n: n not in {p for p, _ in params} | {"ctxt", "method"}))
        kwargs[extra] = draw(json_values)
    return kwargs


contexts = st.sampled_from([
    make_context(PROJECT, ["admin"], ["service"]),
    make_context(PROJECT, ["member"], ["service"]),
    make_context(PROJECT, ["member"], []),
    make_context(OTHER_PROJECT, ["member"], ["service"]),
    make_context(None, [], ["service"]),
    make_context(None, [], ["service_auditor"]),
    make_context(PROJECT, [], []),
])
