"""``custos vendordata roles-set`` and ``custos vendordata get``."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cmd.commands import argtypes


def _roles_set(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    return api.instance_boot_roles_set(ctxt, args.instance_uuid, roles=args.boot_roles,
                                       wait=args.wait, server=args.server)


def _get(api: Any, ctxt: Any, args: argparse.Namespace) -> Any:
    instance = {"uuid": args.instance_uuid,
                "project_id": args.instance_project or ctxt.project_id,
                "image_id": args.image_id, "hostname": args.hostname,
                "user_data": args.user_data, "metadata": dict(args.meta)}
    return api.vendordata_get(ctxt, instance, server=args.server)


def register(subparsers: Any) -> None:
    """Add ``vendordata roles-set`` and ``vendordata get``."""
    parser = subparsers.add_parser("vendordata", help="boot roles and dynamic vendordata")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    roles_set = actions.add_parser(
        "roles-set", help="record the roles an instance booted with (kept once)")
    roles_set.add_argument("instance_uuid")
    roles_set.add_argument("--boot-roles", type=argtypes.comma_list, default=None,
                           help="comma-separated roles (default: the --roles of the request)")
    roles_set.add_argument("--wait", action="store_true",
                           help="wait until the roles are stored (a call, not a cast)")
    roles_set.set_defaults(method="instance_boot_roles_set", handler=_roles_set)

    get = actions.add_parser("get", help="fetch an instance's dynamic vendordata")
    get.add_argument("instance_uuid")
    get.add_argument("--instance-project",
                     help="the instance's project (default: --project-id)")
    get.add_argument("--image-id")
    get.add_argument("--hostname")
    get.add_argument("--user-data", help="user data as base64 text")
    get.add_argument("--meta", type=argtypes.key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="instance metadata (repeatable)")
    get.set_defaults(method="vendordata_get", handler=_get)
