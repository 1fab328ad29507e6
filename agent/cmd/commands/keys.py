"""``custos key ...``: castellan's managed objects from the command line.

Object bytes are never taken from the command line, where other users of
the machine would see them in the process list: ``key store`` reads them
from ``--file`` or, by default, standard input (raw bytes).  ``key get``
prints them as base64 in the JSON output, and ``key list`` only with
``--with-values`` (a listing prints metadata by default).
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

from agent import wire

# The agent refuses more than its limit; reading one byte past it lets
# the agent name the limit rather than the client truncate silently.
READ_LIMIT = wire.MAX_KEY_VALUE_BYTES + 1
OBJECT_TYPES = wire.KEY_OBJECT_TYPES


def _read_input(path: str | None) -> bytes:
    if path in (None, "-"):
        return sys.stdin.buffer.read(READ_LIMIT)
    with open(path, "rb") as handle:
        return handle.read(READ_LIMIT)


def _printable(found: dict[str, Any]) -> dict[str, Any]:
    value = found.get("value")
    return {**found, "value": None if value is None else base64.b64encode(value).decode("ascii")}


def _store(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.key_store(ctxt, args.object_type, _read_input(args.file),
                         algorithm=args.algorithm, bit_length=args.bit_length,
                         name=args.name, expiration=args.expiration)


def _add_metadata(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--expiration", help="ISO 8601 date and time")


def _add_consumer(actions: Any, action: str, help_text: str, method: str) -> None:
    parser = actions.add_parser(action, help=help_text)
    parser.add_argument("uuid")
    parser.add_argument("service")
    parser.add_argument("resource_type")
    parser.add_argument("resource_id")
    parser.set_defaults(method=method, handler=lambda api, ctxt, args: getattr(api, method)(
        ctxt, args.uuid, args.service, args.resource_type, args.resource_id))


def register(subparsers: Any) -> None:
    """Add ``key create|create-pair|store|get|list|delete|consumer-add|consumer-remove``."""
    parser = subparsers.add_parser("key", help="managed keys (castellan's objects)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="generate a symmetric key (AES, HMAC)")
    create.add_argument("algorithm")
    create.add_argument("bit_length", type=int)
    _add_metadata(create)
    create.set_defaults(method="key_create", handler=lambda api, ctxt, args: api.key_create(
        ctxt, args.algorithm, args.bit_length, name=args.name, expiration=args.expiration))

    pair = actions.add_parser("create-pair", help="generate an RSA key pair; prints "
                                                  "[private uuid, public uuid]")
    pair.add_argument("algorithm")
    pair.add_argument("bit_length", type=int)
    _add_metadata(pair)
    pair.set_defaults(method="key_create_pair", handler=lambda api, ctxt, args: list(api.key_create_pair(
        ctxt, args.algorithm, args.bit_length, name=args.name, expiration=args.expiration)))

    store = actions.add_parser("store", help="keep an object read from a file or standard input")
    store.add_argument("object_type", choices=OBJECT_TYPES)
    store.add_argument("--file", help="file holding the bytes (default: standard input)")
    store.add_argument("--algorithm")
    store.add_argument("--bit-length", type=int)
    _add_metadata(store)
    store.set_defaults(method="key_store", handler=_store)

    get = actions.add_parser("get", help="print an object, its bytes as base64")
    get.add_argument("uuid")
    get.add_argument("--metadata-only", action="store_true")
    get.set_defaults(method="key_get", handler=lambda api, ctxt, args: _printable(api.key_get(
        ctxt, args.uuid, metadata_only=args.metadata_only)))

    listing = actions.add_parser("list", help="list the project's objects")
    listing.add_argument("--object-type", choices=OBJECT_TYPES)
    listing.add_argument("--with-values", action="store_true",
                         help="also print each object's bytes, base64 (default: metadata only)")
    listing.set_defaults(method="key_list", handler=lambda api, ctxt, args: [_printable(found) for found in (
        api.key_list(ctxt, object_type=args.object_type, metadata_only=not args.with_values))])

    delete = actions.add_parser("delete", help="delete an object and its data key")
    delete.add_argument("uuid")
    delete.add_argument("--force", action="store_true", help="even when it has consumers")
    delete.set_defaults(method="key_delete", handler=lambda api, ctxt, args: api.key_delete(
        ctxt, args.uuid, force=args.force))

    _add_consumer(actions, "consumer-add", "record a resource that uses an object",
                  "key_consumer_add")
    _add_consumer(actions, "consumer-remove", "forget a resource that uses an object",
                  "key_consumer_remove")
