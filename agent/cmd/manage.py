"""custos-manage: operator tasks on the database and the keys.

Commands::

    custos-manage db sync            upgrade the schema to the newest revision
    custos-manage db version         print the schema revision
    custos-manage keys init          create the master key (never overwrites)
                                     and the first backup-signing key
    custos-manage keys rotate-master replace the master key, re-wrap data keys
    custos-manage keys rotate-signing new active signing key; the old one
                                     is deactivated and still verifies
    custos-manage keys list          key ids and states, never material
    custos-manage secret list        persistent secrets, never values

Output is JSON on standard output; a failure prints one line on standard
error and exits 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import exception, log
from agent.cmd import common
from agent.keystore import masterkey, rotation, signing
from db import api as db_api
from db import migration, models

CONF = cfg.CONF


def _db_sync() -> Any:
    migration.db_sync()
    return {"revision": migration.db_version()}


def _db_version() -> Any:
    return {"revision": migration.db_version(), "head": migration.head_revision()}


def _keys_init() -> Any:
    path = masterkey.default_path()
    key_id = masterkey.init_key_file(path)
    ring = masterkey.get_ring()
    ring.load()
    signing_key = db_api.run_in_transaction(lambda s: signing.ensure_active(s, ring))
    return {"master_key_file": path, "master_key_id": key_id,
            "signing_key_id": signing_key}


def _keys_rotate_master() -> Any:
    return rotation.rotate_master(masterkey.default_path(), grace=CONF.command.grace)


def _keys_rotate_signing() -> Any:
    ring = masterkey.get_ring()
    key_id = db_api.run_in_transaction(lambda s: signing.create(s, ring))
    return {"signing_key_id": key_id}


def _keys_list() -> Any:
    ring = masterkey.get_ring()
    master = ring.load()
    return {"master_key": {"key_id": master.key_id, "state": "active",
                           "file": ring.path},
            "signing_keys": db_api.run_in_transaction(signing.describe)}


def _secret_list() -> Any:
    def work(session: Session) -> list[dict[str, Any]]:
        rows = session.scalars(sa.select(models.Secret).order_by(models.Secret.id))
        return [{"uuid": row.uuid, "project_id": row.project_id,
                 "driver_namespace": row.driver_namespace, "usage_type": row.usage_type, "usage_id": row.usage_id,
                 "private": row.private, "has_value": row.value is not None,
                 "master_key_id": row.master_key_id} for row in rows]

    return db_api.run_in_transaction(work)


COMMANDS: dict[str, dict[str, Callable[[], Any]]] = {
    "db": {"sync": _db_sync, "version": _db_version},
    "keys": {"init": _keys_init, "rotate-master": _keys_rotate_master,
             "rotate-signing": _keys_rotate_signing, "list": _keys_list},
    "secret": {"list": _secret_list},
}


def _add_parsers(subparsers: Any) -> None:
    for category, actions in COMMANDS.items():
        parser = subparsers.add_parser(category)
        action_parsers = parser.add_subparsers(dest="action")
        action_parsers.required = True
        for action in actions:
            sub = action_parsers.add_parser(action)
            if action == "rotate-master":
                sub.add_argument("--grace", type=float, default=2.0,
                                 help="seconds to wait before the last re-wrap pass")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one custos-manage command.

    :returns: 0 on success, 1 on a failure (printed as one line).
    """
    command_opt = cfg.SubCommandOpt("command", handler=_add_parsers)
    CONF.register_cli_opt(command_opt)
    try:
        common.parse_args(sys.argv[1:] if argv is None else argv, name="custos-manage")
        # Standard output carries the JSON result alone; logs go to stderr
        # unless a log file is configured.
        CONF.set_default("use_stderr", True)
        log.setup(CONF, "custos-manage")
        db_api.configure()
        result = COMMANDS[CONF.command.name][CONF.command.action]()
    except exception.CustosException as error:
        print(f"custos-manage: {error.code}: {error.msg}", file=sys.stderr)
        return 1
    except sa_exc.DBAPIError as error:
        print(f"custos-manage: database error: {type(error.orig).__name__}",
              file=sys.stderr)
        return 1
    finally:
        # Leave the global CONF as it was, so main() can run again in-process.
        CONF.reset()
        CONF.unregister_opt(command_opt)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
