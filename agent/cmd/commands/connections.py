"""``custos connection ...`` and ``custos initiator-data ...``.

``custos connection initialize --volume-id ID --initiator IQN`` prints the
connection info as JSON (for iscsi_chap, including the CHAP password: it is
the caller's reply). ``custos initiator-data chap-rotate IQN NAMESPACE``
marks an initiator so that its next attach gets new CHAP credentials.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent import wire
from agent.cmd.commands import argtypes


def _volume_and_connector(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    volume: dict[str, Any] = {"id": args.volume_id}
    if args.volume_project_id:
        volume["project_id"] = args.volume_project_id
    connector = dict(args.connector or {})
    for name in ("initiator", "host"):
        value = getattr(args, name)
        if value is not None:
            connector[name] = value
    return volume, connector


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--volume-id", required=True, help="the volume's UUID")
    parser.add_argument("--volume-project-id", help="the volume's project, when not the caller's")
    parser.add_argument("--initiator", help="the host's iSCSI initiator IQN")
    parser.add_argument("--host", help="the host's name")
    parser.add_argument("--connector", type=argtypes.json_object,
                        help="further connector fields as a JSON object")
    parser.add_argument("--backend", help="backend section (default: the only one)")


def _initialize(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    volume, connector = _volume_and_connector(args)
    return api.initialize_connection(ctxt, volume, connector, backend=args.backend,
                                     server=args.server)


def _terminate(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    volume, connector = _volume_and_connector(args)
    return api.terminate_connection(ctxt, volume, connector, backend=args.backend,
                                    force=args.force, server=args.server)


def _data_get(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.initiator_data_get(ctxt, args.initiator, args.namespace, server=args.server)


def _data_update(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.initiator_data_update(ctxt, args.initiator, args.namespace,
                                     set_values=dict(args.set) if args.set else None,
                                     remove_values=args.remove or None, server=args.server)


def _chap_rotate(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.initiator_data_update(ctxt, args.initiator, args.namespace,
                                     set_values={wire.CHAP_KEY_ROTATE: "true"},
                                     server=args.server)


def register(subparsers: Any) -> None:
    """Add the ``connection`` and ``initiator-data`` sub-commands."""
    connection = subparsers.add_parser("connection", help="attach and detach volumes")
    actions = connection.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    initialize = actions.add_parser("initialize", help="initialize_connection")
    _add_connection_arguments(initialize)
    initialize.set_defaults(method="initialize_connection", handler=_initialize)
    terminate = actions.add_parser("terminate", help="terminate_connection")
    _add_connection_arguments(terminate)
    terminate.add_argument("--force", action="store_true")
    terminate.set_defaults(method="terminate_connection", handler=_terminate)

    data = subparsers.add_parser("initiator-data", help="drivers' private data per initiator")
    data_actions = data.add_subparsers(dest="action", metavar="ACTION")
    data_actions.required = True
    get = data_actions.add_parser("get", help="initiator_data_get (admin)")
    update = data_actions.add_parser("update", help="initiator_data_update (operator and service)")
    rotate = data_actions.add_parser(
        "chap-rotate", help="give the initiator new CHAP credentials on its next attach")
    for parser in (get, update, rotate):
        parser.add_argument("initiator")
        parser.add_argument("namespace")
    update.add_argument("--set", action="append", type=argtypes.key_value, metavar="KEY=VALUE",
                        help="a key to set (repeatable)")
    update.add_argument("--remove", action="append", metavar="KEY",
                        help="a key to remove (repeatable)")
    get.set_defaults(method="initiator_data_get", handler=_data_get)
    update.set_defaults(method="initiator_data_update", handler=_data_update)
    rotate.set_defaults(method="initiator_data_update", handler=_chap_rotate)
