"""custos: a command line client over :mod:`rpcapi` for people and scripts.

``custos --config-file custos.conf health`` prints the agent's answer as
JSON. Any failure prints one line, ``custos: <code>: <message>``, on
standard error and exits 1: a custos error by its code, ``timeout`` when
no agent replied in time, ``broker_unreachable`` when RabbitMQ did not
take the message, ``remote_error`` for an unexpected agent failure.

The caller authenticates as the ``openstack`` client does: keystoneauth1's
``--os-*`` options or the ``OS_*`` environment variables (``OS_AUTH_URL``,
``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME``, ... or ``OS_TOKEN``
with ``--os-auth-type token``), and the request carries that token, which
the agent validates with Keystone. A configuration file whose
``[service_user]`` has ``send_service_user_token = true`` adds that service
token too. ``health`` needs no token.

Only for an agent that believes claimed contexts (``[auth] strategy =
trusted`` in the configuration file) may the context be written by hand:
``--project-id``, ``--user-id``, ``--roles`` (user token) and
``--service-roles`` (service token), with no role unless given.

The client loads :mod:`rpcapi`, :mod:`agent.exception`, :mod:`agent.wire`
and oslo libraries only (no database, cryptography, policy or drivers), so
it starts quickly; it reads ``transport_url`` and ``[upgrade_levels]
custos`` from the configuration file and leaves ``control_exchange`` alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import agent.cmd  # noqa: F401  first: library notices and eventlet's DNS resolver off
import oslo_messaging as messaging
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from agent import exception, wire
from agent.cmd import commands, output
from agent.cmd.commands import argtypes
from rpcapi import CustosAPI

CONF = cfg.CONF

# Seconds past a call's own timeout after which the broker is deemed unreachable.
BROKER_GRACE = 5.0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command.

    :param argv: the command line, from which keystoneauth1 reads
        ``--os-auth-type`` to know which plugin's options to offer.
    """
    parser = argparse.ArgumentParser(prog="custos", description="custos-agent client")
    parser.add_argument("--config-file", action="append", default=[],
                        help="configuration file naming transport_url (repeatable)")
    parser.add_argument("--debug", action="store_true",
                        help="log what the client and oslo.messaging do to standard error")
    parser.add_argument("--server", help="address one agent by its host name")
    parser.add_argument("--format", "-f", choices=output.FORMATS,
                        help="how to print the answer (default: table on a terminal, "
                             "json otherwise)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for a reply (default 30)")
    claimed = parser.add_argument_group(
        "claimed identity", "only for an agent with [auth] strategy = trusted, which "
                            "believes what a message claims")
    claimed.add_argument("--project-id")
    claimed.add_argument("--user-id")
    claimed.add_argument("--roles", type=argtypes.comma_list,
                         help="comma-separated user-token roles (default: none)")
    claimed.add_argument("--service-roles", type=argtypes.comma_list,
                         help="comma-separated service-token roles (default: none)")
    parser.add_argument("--os-cacert", default=os.environ.get("OS_CACERT"),
                        help="CA bundle that signed Keystone's certificate (env OS_CACERT)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify Keystone's TLS certificate")
    ks_loading.register_auth_argparse_arguments(parser, list(argv or []), default="password")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in commands.MODULES:
        module.register(subparsers)
    _name_policies(subparsers)
    return parser


def _name_policies(subparsers: argparse._SubParsersAction) -> None:
    """Say in each command's ``--help`` which policy rule it must pass."""
    for parser in subparsers.choices.values():
        method = parser.get_default("method")
        if method:
            parser.epilog = (f"Policy: custos:{method} (its default and any override: "
                             "etc/custos/policy.yaml.sample, [oslo_policy] policy_file).")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _name_policies(action)


_CLAIMS = ("project_id", "user_id", "roles", "service_roles")


def _context(args: argparse.Namespace) -> wire.RequestContext:
    """Return the request context: a Keystone token, or claims for a trusted agent.

    :raises ConfigurationError: role flags for an agent that validates
        tokens, or keystoneauth1 options that do not describe a plugin.
    :raises Unauthorized: Keystone refused the credentials.
    :raises AuthUnavailable: Keystone could not be reached.
    """
    CONF.register_opt(wire.AUTH_STRATEGY_OPT, group="auth")
    trusted = CONF.auth.strategy == wire.AUTH_TRUSTED
    claims = {name: getattr(args, name) for name in _CLAIMS if getattr(args, name) is not None}
    if claims and not trusted:
        flags = ", ".join("--" + name.replace("_", "-") for name in claims)
        raise exception.ConfigurationError(
            reason=f"{flags}: a claimed identity is believed only by an agent with "
                   "[auth] strategy = trusted; authenticate with OS_* variables instead")
    token = _token(args, required=not trusted and getattr(args, "method", None) != "health")
    return wire.RequestContext(auth_token=token, project_id=claims.get("project_id"),
                               user_id=claims.get("user_id"),
                               roles=claims.get("roles") or [],
                               service_roles=claims.get("service_roles") or [],
                               overwrite=False)


def _token(args: argparse.Namespace, required: bool) -> str | None:
    """Return a token for the keystoneauth1 options given, or None when none are."""
    try:
        auth = ks_loading.load_auth_from_argparse_arguments(args)
    except ks_exceptions.MissingRequiredOptions as error:
        if not required:
            return None
        names = ", ".join("OS_" + opt.dest.upper() for opt in error.options)
        raise exception.ConfigurationError(
            reason=f"authenticate with Keystone: set {names} (or the --os-* options)") from None
    except ks_exceptions.NoMatchingPlugin as error:
        raise exception.ConfigurationError(reason=str(error)) from None
    session = ks_session.Session(auth=auth,
                                 verify=False if args.insecure else (args.os_cacert or True))
    try:
        return str(session.get_token())
    except ks_exceptions.Unauthorized:
        raise exception.Unauthorized(reason="Keystone refused the credentials") from None
    except ks_exceptions.ClientException as error:
        raise exception.AuthUnavailable() from error


def _fail(code: str, message: str) -> int:
    print(f"custos: {code}: {message.splitlines()[0] if message else ''}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one client command.

    :returns: 0 when the agent answered, 1 on any failure.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    # Standard error carries one line per failure; library chatter such as
    # reconnect attempts only with --debug.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL + 1,
                        stream=sys.stderr)
    logging.captureWarnings(True)
    try:
        CONF([], project="custos", prog="custos", default_config_files=args.config_file)
        transport = messaging.get_rpc_transport(
            CONF, allowed_remote_exmods=wire.ALLOWED_EXMODS)
    except (cfg.Error, OSError, messaging.MessagingException) as error:
        return _fail("configuration_error", str(error))

    try:
        ctxt = _context(args)
    except (exception.CustosException, cfg.Error) as error:
        code = getattr(error, "code", "configuration_error")
        return _fail(code, getattr(error, "msg", str(error)))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            api = CustosAPI(transport=transport, timeout=args.timeout, retry=2)
            outcome["result"] = args.handler(api, ctxt, args)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="custos-call", daemon=True)
    worker.start()
    # oslo.messaging's reply listener retries an unreachable broker forever,
    # whatever the call's timeout says; a call still running well after its
    # own timeout therefore never got its message onto the bus.
    worker.join(args.timeout + BROKER_GRACE)
    if worker.is_alive():
        code = _fail("broker_unreachable",
                     f"the message broker did not answer within {args.timeout + BROKER_GRACE:g} s")
        sys.stderr.flush()
        os._exit(code)
    transport.cleanup()
    raised = outcome.get("error")
    if raised is None:
        fmt = args.format or output.default_format(sys.stdout.isatty())
        text = output.render(outcome["result"], fmt)
        if text:
            print(text)
        return 0
    try:
        raise raised
    except exception.CustosException as failure:
        return _fail(failure.code, failure.msg)
    except messaging.MessagingTimeout:
        return _fail("timeout", f"no reply from custos-agent within {args.timeout:g} s")
    except messaging.MessageDeliveryFailure:
        return _fail("broker_unreachable", "the message broker did not accept the request")
    except messaging.RemoteError as failure:
        return _fail("remote_error", f"{failure.exc_type} in custos-agent")
    except messaging.MessagingException as failure:
        return _fail("messaging_error", type(failure).__name__)
    except cfg.Error as failure:
        # oslo.config checks a value's type when it is first read.
        return _fail("configuration_error", str(failure))
    except OSError as failure:
        return _fail("io_error", f"{failure.strerror}: {failure.filename}")


if __name__ == "__main__":
    sys.exit(main())
