"""``custos backup ...`` and ``custos glance-metadata ...`` sub-commands.

Documents are printed as a JSON string holding the exact text: a signed
document only verifies byte for byte, so scripts should pass it on with
``json.loads`` of the output, never re-encode it.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cmd.commands import argtypes


def _read_document(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _export(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    volume = {"id": args.volume_id, "base": args.base, "metadata": args.metadata}
    return api.backup_metadata_export(ctxt, args.backup_id, volume)


def _import(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.backup_metadata_import(ctxt, args.backup_id, args.volume_id,
                                      _read_document(args.document_file))


def _glance_set(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.volume_glance_metadata_set(ctxt, args.volume_id, dict(args.property),
                                          wait=not args.no_wait)


def _glance_copy(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.volume_glance_metadata_copy(ctxt, args.src_volume_id, args.dst_volume_id,
                                           wait=not args.no_wait)


def _register_backup(subparsers: Any) -> None:
    parser = subparsers.add_parser("backup", help="signed backup metadata")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    export = actions.add_parser("export", help="sign and store a backup's metadata")
    export.add_argument("backup_id")
    export.add_argument("volume_id")
    export.add_argument("--base", type=argtypes.json_object, default={},
                        help="the volume's own fields, a JSON object")
    export.add_argument("--metadata", type=argtypes.json_object, default={},
                        help="the volume's user metadata, a JSON object of strings")
    export.set_defaults(method="backup_metadata_export", handler=_export)

    restore = actions.add_parser("import", help="verify and restore a backup's metadata")
    restore.add_argument("backup_id")
    restore.add_argument("volume_id", help="the restore target")
    restore.add_argument("--document-file",
                         help="the document kept with the backup (default: "
                              "custos' own copy)")
    restore.set_defaults(method="backup_metadata_import", handler=_import)

    get = actions.add_parser("get", help="print a stored document")
    get.add_argument("backup_id")
    get.set_defaults(method="backup_metadata_get",
                     handler=lambda api, ctxt, args: api.backup_metadata_get(
        ctxt, args.backup_id))

    delete = actions.add_parser("delete", help="forget a backup's document")
    delete.add_argument("backup_id")
    delete.set_defaults(method="backup_metadata_delete",
                        handler=lambda api, ctxt, args: api.backup_metadata_delete(
        ctxt, args.backup_id))


def _register_glance(subparsers: Any) -> None:
    parser = subparsers.add_parser("glance-metadata", help="glance metadata of volumes")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    set_ = actions.add_parser("set", help="create or overwrite keys")
    set_.add_argument("volume_id")
    set_.add_argument("property", nargs="+", type=argtypes.key_value, metavar="KEY=VALUE")
    set_.add_argument("--no-wait", action="store_true", help="cast and return at once")
    set_.set_defaults(method="volume_glance_metadata_set", handler=_glance_set)

    get = actions.add_parser("get", help="print a volume's glance metadata")
    get.add_argument("volume_id")
    get.set_defaults(method="volume_glance_metadata_get",
                     handler=lambda api, ctxt, args: api.volume_glance_metadata_get(
        ctxt, args.volume_id))

    copy = actions.add_parser("copy", help="give a volume another's glance metadata")
    copy.add_argument("src_volume_id")
    copy.add_argument("dst_volume_id")
    copy.add_argument("--no-wait", action="store_true", help="cast and return at once")
    copy.set_defaults(method="volume_glance_metadata_copy", handler=_glance_copy)


def register(subparsers: Any) -> None:
    """Add ``backup {export,import,get,delete}`` and ``glance-metadata {set,get,copy}``."""
    _register_backup(subparsers)
    _register_glance(subparsers)
