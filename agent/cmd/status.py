"""custos-status: checks an operator runs before and after an upgrade.

``custos-status --config-file FILE upgrade check [--json]`` looks at what
this node's agent needs and prints one result per check, as
``cinder-status`` and ``nova-status`` do (oslo.upgradecheck). The exit
status is the worst result: 0 success, 1 warning, 2 failure, 255 when a
check itself broke.

The checks read the database, the files and the broker directly; none of
them changes anything or needs a running agent.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Sequence

from oslo_config import cfg
from oslo_policy import opts as policy_opts
from oslo_upgradecheck import common_checks, upgradecheck
from oslo_upgradecheck.upgradecheck import Code, Result
from sqlalchemy import exc as sa_exc

import agent.cmd  # noqa: F401  silences library deprecation notices first
from agent import exception, log, metrics, policy, rpc
from agent.conf import auth as auth_conf
from agent.connections.backends import load_backends
from agent.identity import tokenless
from agent.keystore import keyset, masterkey
from db import api as db_api
from db import migration

CONF = cfg.CONF

# Seconds to wait for one broker node to accept a TCP connection.
BROKER_CONNECT_TIMEOUT = 3.0


def check_schema() -> Result:
    """The database is reachable and at the newest revision."""
    try:
        db_api.configure()
        current = migration.db_version()
    except sa_exc.DBAPIError as error:
        return Result(Code.FAILURE, "the database is not reachable "
                                    f"({type(error.orig).__name__})")
    finally:
        db_api.dispose()
    expected = migration.head_revision()
    if current != expected:
        return Result(Code.FAILURE, f"the schema is at {current or 'no revision'}, "
                                    f"not {expected}: run 'custos-manage db sync'")
    return Result(Code.SUCCESS)


def check_master_key() -> Result:
    """The master key file exists, holds a key and no one else can read it."""
    path = masterkey.default_path()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return Result(Code.FAILURE, f"no master key at {path}: run 'custos-manage keys init' "
                                    "or copy the deployment's key to this node")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Result(Code.FAILURE, f"{path} is open to group or others "
                                    f"(mode {stat.S_IMODE(mode):04o}); make it 0600")
    try:
        masterkey.MasterKeyRing(path).load()
    except exception.MasterKeyUnavailable as error:
        return Result(Code.FAILURE, error.msg)
    return Result(Code.SUCCESS)


def check_staged_key() -> Result:
    """When a rotation is staged, this node holds the staged key.

    ``keys rotate-master`` refuses while a node lacks it; this says which
    node to fix before anyone tries.
    """
    try:
        db_api.configure()
        state = db_api.run_in_transaction(keyset.read_state)
    except sa_exc.DBAPIError as error:
        return Result(Code.FAILURE, "the database is not reachable "
                                    f"({type(error.orig).__name__})")
    finally:
        db_api.dispose()
    if state is None or state.staged_key_id is None:
        return Result(Code.SUCCESS, "no rotation is staged")
    try:
        held = masterkey.MasterKeyRing(masterkey.default_path()).file_key(
            masterkey.STAGED_SUFFIX)
    except exception.MasterKeyUnavailable as error:
        return Result(Code.FAILURE, error.msg)
    if held is None or held.key_id != state.staged_key_id:
        return Result(Code.FAILURE, f"key {state.staged_key_id} is staged but this node "
                                    "does not hold it: run 'custos-manage keys stage' here")
    return Result(Code.SUCCESS, f"this node holds the staged key {held.key_id}")


def check_backends() -> Result:
    """Every backend in ``enabled_backends`` names a driver that loads."""
    try:
        backends = load_backends(CONF)
    except exception.CustosException as error:
        return Result(Code.FAILURE, error.msg)
    if not backends:
        return Result(Code.SUCCESS, "no volume backend is enabled")
    return Result(Code.SUCCESS, "loaded: " + ", ".join(sorted(backends)))


def check_broker() -> Result:
    """At least one broker node of ``transport_url`` accepts connections.

    A node that does not answer while another does is a warning: the
    agent and its callers fail over, but the cluster is degraded.
    """
    hosts = rpc.broker_hosts(CONF)
    down = [f"{host}:{port}" for host, port in hosts
            if not _accepts(host, port)]
    if len(down) == len(hosts):
        return Result(Code.FAILURE, "no broker node answers: " + ", ".join(down))
    if down:
        return Result(Code.WARNING, "broker nodes not answering: " + ", ".join(down))
    return Result(Code.SUCCESS)


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), BROKER_CONNECT_TIMEOUT).close()
    except OSError:
        return False
    return True


def check_policy_file() -> Result:
    """The policy file, when there is one, parses and names known rules."""
    path = CONF.find_file(CONF.oslo_policy.policy_file)
    if path is None:
        return Result(Code.SUCCESS, "no policy file: the defaults in code apply")
    policy.reset()
    try:
        enforcer = policy.get_enforcer()
        enforcer.load_rules(force_reload=True)
        valid = enforcer.check_rules(raise_on_violation=False)
    except Exception as error:  # noqa: BLE001 - any parse error is the finding
        return Result(Code.FAILURE, f"{path} cannot be read as a policy file "
                                    f"({type(error).__name__})")
    finally:
        policy.reset()
    if not valid:
        return Result(Code.FAILURE, f"{path} refers to rules that do not exist "
                                    "(see the agent log for which)")
    return Result(Code.SUCCESS)


def check_identity() -> Result:
    """The agent validates tokens; a trusted agent says who would be refused.

    With ``[auth] strategy = trusted`` anyone who can publish on the bus
    acts as any project, which is a warning. The requests that agent saw
    without a token (counted per claimed user and method in
    ``$state_path/tokenless_requests.json``) are the callers that switching
    to ``keystone`` would refuse; none means the switch refuses nobody.
    """
    if CONF.auth.strategy != auth_conf.TRUSTED:
        if not CONF.keystone_authtoken.auth_type:
            return Result(Code.FAILURE, "[auth] strategy = keystone needs the agent's service "
                                        "user in [keystone_authtoken] (auth_type, auth_url, "
                                        "username, ...)")
        return Result(Code.SUCCESS, "tokens are validated by Keystone")
    message = ("[auth] strategy = trusted: the agent believes whatever a message claims, so "
               "anyone who can publish on the bus acts as any project or the administrator")
    try:
        counts = tokenless.read(tokenless.path(CONF.state_path))
    except (OSError, ValueError) as error:
        return Result(Code.WARNING, f"{message}; the tokenless request counts cannot be "
                                    f"read ({type(error).__name__})")
    if not counts:
        return Result(Code.WARNING, f"{message}. Every request seen carried a token: "
                                    "switching to strategy = keystone refuses nobody")
    callers = "; ".join(f"user {c.get('user_id')} {c.get('method')} x{c.get('requests')}"
                        for c in counts[:20])
    more = f" and {len(counts) - 20} more" if len(counts) > 20 else ""
    return Result(Code.WARNING, f"{message}. Requests without a token, which strategy = "
                                f"keystone would refuse: {callers}{more}")


def check_metrics() -> Result:
    """The metrics endpoint stays on loopback unless the configuration says it is meant.

    Metrics hold no id or secret, but tell whoever reaches them how busy
    the agent is and which calls fail. A bind beyond loopback is a
    warning until ``[metrics] allow_remote = true`` records that it is
    meant (a management network, a firewalled port).
    """
    bind = CONF.metrics.bind
    if not bind:
        return Result(Code.SUCCESS, "no metrics endpoint ([metrics] bind is empty)")
    try:
        host, _port = metrics.parse_bind(bind)
    except exception.ConfigurationError as error:
        return Result(Code.FAILURE, error.msg)
    if metrics.is_loopback(host) or CONF.metrics.allow_remote:
        return Result(Code.SUCCESS)
    return Result(Code.WARNING, f"[metrics] bind = {bind} serves metrics beyond loopback; "
                                "set [metrics] allow_remote = true if that is meant, or "
                                "bind to 127.0.0.1")


class Checks(upgradecheck.UpgradeCommands):
    """The checks of ``custos-status upgrade check``, in the order they run."""

    _upgrade_checks = (
        ("Database schema", lambda self: check_schema()),
        ("Master key", lambda self: check_master_key()),
        ("Staged master key", lambda self: check_staged_key()),
        ("Volume backends", lambda self: check_backends()),
        ("Message broker", lambda self: check_broker()),
        ("Policy file", lambda self: check_policy_file()),
        ("Identity", lambda self: check_identity()),
        ("Metrics endpoint", lambda self: check_metrics()),
        ("Policy file format", (common_checks.check_policy_json, {"conf": CONF})),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run custos-status.

    :returns: the worst check result (0, 1 or 2), or 255 on an error.
    """
    log.register_options(CONF)
    rpc.register_opts(CONF)
    policy_opts.set_defaults(CONF)
    return upgradecheck.main(CONF, project="custos", upgrade_command=Checks(),
                             argv=list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
