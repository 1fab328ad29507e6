"""custos-manage: operator tasks on the database and the keys.

Commands::

    custos-manage db sync            upgrade the schema to the newest revision
    custos-manage db version         print the schema revision
    custos-manage db purge           destroy purged rows older than
                                     [events] purge_grace
    custos-manage keys init          create the master key (never overwrites)
                                     and the first backup-signing key
    custos-manage keys stage         hold the next master key on this node
                                     (run on every node before rotating)
    custos-manage keys rotate-master promote the staged key, re-wrap data
                                     keys, retire the old key
    custos-manage keys forget-host HOST
                                     stop waiting for a node that is gone
    custos-manage keys rotate-signing new active signing key; the old one
                                     is deactivated and still verifies
    custos-manage keys list          key ids and states, never material
    custos-manage secret list        persistent secrets, never values
    custos-manage restore secret UUID
    custos-manage restore volume VOLUME_ID
    custos-manage restore instance INSTANCE_UUID
                                     bring back what a deletion event
                                     purged, within the grace

Output is JSON on standard output; a failure prints one line on standard
error and exits 1. A restore that brings secrets back announces each with
``secret.define`` on the agent's notification topic, publisher id
``custos-manage.<host>``.
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

from agent import context, exception, log, notifier, rpc, validation
from agent.cmd import common
from agent.events import grace, restore
from agent.keystore import keyset, masterkey, rotation, signing
from db import api as db_api
from db import migration, models

CONF = cfg.CONF


def _db_sync() -> Any:
    migration.db_sync()
    return {"revision": migration.db_version()}


def _db_version() -> Any:
    return {"revision": migration.db_version(), "head": migration.head_revision()}


def _db_purge() -> Any:
    events = CONF.events
    destroyed = grace.destroy_all(events.purge_grace, events.purge_batch)
    return {"destroyed": destroyed, "grace_seconds": events.purge_grace}


def _restore(kind: str, work: Callable[[Session, str], restore.Restored]) -> Callable[[], Any]:
    def run() -> Any:
        target = validation.uuid("id", CONF.command.id)
        restored = db_api.run_in_transaction(lambda session: work(session, target))
        _announce("secret.define", restored.announcements)
        return {"restored": restored.as_dict(), kind: target}

    return run


def _announce(event_type: str, payloads: list[dict[str, Any]],
              retry_deadline: float = notifier.RETRY_DEADLINE) -> None:
    """Publish one ``event_type`` notification per payload, as the agent publishes its own.

    The publisher id is ``custos-manage.<host>``. Each notification is
    retried as the agent retries one (:class:`agent.notifier.NotificationSender`).

    :param retry_deadline: seconds a notification is retried.
    :raises RestoreNotAnnounced: when one was not sent in that time; the
        change it announces is committed all the same.
    """
    if not payloads:
        return
    rpc.init(CONF)
    try:
        publisher = rpc.get_notifier(CONF.host, program="custos-manage")
        sender = notifier.NotificationSender(lambda: publisher, retry_deadline=retry_deadline)
        sender.submit(context.get_admin_context(),
                      [(event_type, payload, "info") for payload in payloads])
        # The retry deadline bounds the first; should the broker be away
        # that long, the rest would only wait as long again each.
        sent = sender.close(timeout=retry_deadline + 5)
    finally:
        rpc.cleanup()
    if not sent or sender.failed:
        raise exception.RestoreNotAnnounced(event_type=event_type)


def _keys_init() -> Any:
    path = masterkey.default_path()
    key_id = masterkey.init_key_file(path)
    ring = masterkey.get_ring()
    ring.load()

    def work(session: Session) -> str:
        keyset.state_row(session, ring)
        keyset.record_holder(session, CONF.host, ring.held())
        return signing.ensure_active(session, ring)

    signing_key = db_api.run_in_transaction(work)
    return {"master_key_file": path, "master_key_id": key_id,
            "signing_key_id": signing_key}


def _keys_stage() -> Any:
    return rotation.stage(masterkey.default_path(), CONF.host)


def _keys_rotate_master() -> Any:
    return rotation.rotate_master(masterkey.default_path(), CONF.host)


def _keys_forget_host() -> Any:
    host = CONF.command.node
    dropped = db_api.run_in_transaction(lambda s: keyset.forget_host(s, host))
    return {"host": host, "forgotten": dropped > 0}


def _keys_rotate_signing() -> Any:
    ring = masterkey.get_ring()
    key_id = db_api.run_in_transaction(lambda s: signing.create(s, ring))
    return {"signing_key_id": key_id}


def _keys_list() -> Any:
    ring = masterkey.get_ring()
    master = ring.load()

    def work(session: Session) -> dict[str, Any]:
        state = keyset.read_state(session)
        primary = state.primary_key_id if state else master.key_id
        return {"master_key": {"key_id": primary, "state": "primary", "file": ring.path},
                "staged_key_id": state.staged_key_id if state else None,
                "previous_key_id": state.previous_key_id if state else None,
                "holders": keyset.holders(session),
                "signing_keys": signing.describe(session)}

    return db_api.run_in_transaction(work)


def _secret_list() -> Any:
    def work(session: Session) -> list[dict[str, Any]]:
        rows = session.scalars(sa.select(models.Secret)
                               .where(models.Secret.deleted_at.is_(None))
                               .order_by(models.Secret.id))
        return [{"uuid": row.uuid, "project_id": row.project_id,
                 "driver_namespace": row.driver_namespace, "usage_type": row.usage_type, "usage_id": row.usage_id,
                 "private": row.private, "has_value": row.value is not None,
                 "master_key_id": row.master_key_id} for row in rows]

    return db_api.run_in_transaction(work)


COMMANDS: dict[str, dict[str, Callable[[], Any]]] = {
    "db": {"sync": _db_sync, "version": _db_version, "purge": _db_purge},
    "keys": {"init": _keys_init, "stage": _keys_stage, "rotate-master": _keys_rotate_master,
             "forget-host": _keys_forget_host, "rotate-signing": _keys_rotate_signing,
             "list": _keys_list},
    "secret": {"list": _secret_list},
    "restore": {"secret": _restore("secret", restore.restore_secret),
                "volume": _restore("volume", restore.restore_volume),
                "instance": _restore("instance", restore.restore_instance)},
}


def _add_parsers(subparsers: Any) -> None:
    for category, actions in COMMANDS.items():
        parser = subparsers.add_parser(category)
        action_parsers = parser.add_subparsers(dest="action")
        action_parsers.required = True
        for action in actions:
            sub = action_parsers.add_parser(action)
            if action == "forget-host":
                # Not "host": the sub-command's options share a namespace
                # with [DEFAULT] host, and oslo.config refuses the clash.
                sub.add_argument("node", metavar="HOST",
                                 help="the [DEFAULT] host of the node that is gone")
            if category == "restore":
                sub.add_argument("id", help=f"the {action}'s UUID")


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
