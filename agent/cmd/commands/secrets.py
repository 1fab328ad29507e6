"""``custos secret ...``: libvirt secrets from the command line.

A value is never taken from the command line, where other users of the
machine would see it in the process list: ``secret set-value`` reads it
from ``--file`` or, by default, standard input (raw bytes, up to 64 KiB).
``secret get-value`` prints it as base64. ``secret define FILE`` reads the
XML document from FILE, as ``virsh secret-define`` does, or from
``--file`` or standard input.
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

from agent import wire


def _read_input(path: str | None, limit: int) -> bytes:
    """Read at most ``limit`` bytes from ``path`` or standard input ('-' or None)."""
    if path in (None, "-"):
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(27, f"input larger than {limit} bytes", path or "-")
    return data


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise argparse.ArgumentTypeError("must be yes or no")
    return text == "yes"


def _define(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    xml = _read_input(args.file or args.path, wire.MAX_SECRET_XML_BYTES + 1).decode("utf-8", errors="replace")
    return api.secret_define_xml(ctxt, xml, server=args.server)


def _set_value(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    value = _read_input(args.file, wire.MAX_SECRET_VALUE_BYTES)
    return api.secret_set_value(ctxt, args.uuid, value, server=args.server)


def _get_value(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    value = api.secret_get_value(ctxt, args.uuid, server=args.server)
    return base64.b64encode(value).decode("ascii")


def register(subparsers: Any) -> None:
    """Add ``secret define|get-xml|set-value|get-value|undefine|list|lookup|generate``."""
    parser = subparsers.add_parser("secret", help="libvirt secrets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    define = actions.add_parser("define", help="define a secret from libvirt XML")
    define.add_argument("path", nargs="?", metavar="FILE",
                        help="XML file, as virsh secret-define takes it "
                             "(default: standard input)")
    define.add_argument("--file", help="the same as FILE")
    define.set_defaults(method="secret_define_xml", handler=_define)

    get_xml = actions.add_parser("get-xml", help="print a secret's XML definition")
    get_xml.add_argument("uuid")
    get_xml.set_defaults(method="secret_get_xml_desc",
                         handler=lambda api, ctxt, args: api.secret_get_xml_desc(
        ctxt, args.uuid, server=args.server))

    set_value = actions.add_parser("set-value",
                                   help="set a secret's value from a file or standard input")
    set_value.add_argument("uuid")
    set_value.add_argument("--file", help="file holding the value (default: standard input)")
    set_value.set_defaults(method="secret_set_value", handler=_set_value)

    get_value = actions.add_parser("get-value", help="print a secret's value as base64")
    get_value.add_argument("uuid")
    get_value.set_defaults(method="secret_get_value", handler=_get_value)

    undefine = actions.add_parser("undefine", help="delete a secret and its value")
    undefine.add_argument("uuid")
    undefine.set_defaults(method="secret_undefine",
                          handler=lambda api, ctxt, args: api.secret_undefine(
        ctxt, args.uuid, server=args.server))

    listing = actions.add_parser("list", help="list secrets")
    listing.add_argument("--ephemeral", type=_yes_no, metavar="yes|no")
    listing.add_argument("--private", type=_yes_no, metavar="yes|no")
    listing.add_argument("--usage-type")
    listing.set_defaults(method="secret_list", handler=lambda api, ctxt, args: api.secret_list(
        ctxt, ephemeral=args.ephemeral, private=args.private, usage_type=args.usage_type,
        server=args.server))

    lookup = actions.add_parser("lookup", help="find a secret by its usage")
    lookup.add_argument("usage_type")
    lookup.add_argument("usage_id")
    lookup.set_defaults(method="secret_lookup_by_usage",
                        handler=lambda api, ctxt, args: api.secret_lookup_by_usage(
        ctxt, args.usage_type, args.usage_id, server=args.server))

    generate = actions.add_parser("generate", help="define a secret with a random passphrase")
    generate.add_argument("usage_type")
    generate.add_argument("usage_id", help="for volume: an absolute path or a volume id")
    generate.add_argument("--length", type=int, default=32)
    generate.add_argument("--private", action="store_true")
    generate.add_argument("--ephemeral", action="store_true")
    generate.set_defaults(method="secret_generate",
                          handler=lambda api, ctxt, args: api.secret_generate(
        ctxt, args.usage_type, args.usage_id, length=args.length, private=args.private,
        ephemeral=args.ephemeral, server=args.server))
