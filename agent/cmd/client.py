"""custos: a command line client over :mod:`rpcapi` for people and scripts.

``custos --config-file custos.conf health`` prints the agent's answer as
JSON. Any failure prints one line, ``custos: <code>: <message>``, on
standard error and exits 1: a custos error by its code, ``timeout`` when
no agent replied in time, ``broker_unreachable`` when RabbitMQ did not
take the message, ``remote_error`` for an unexpected agent failure.

The request context is built from the options: ``--project-id``,
``--user-id``, ``--roles`` (user token) and ``--service-roles`` (service
token). Whoever can publish on the bus can claim any context, so the bus
credentials are the real boundary, as for every OpenStack RPC service.

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
from oslo_config import cfg

from agent import exception, wire
from agent.cmd import commands, output
from agent.cmd.commands import argtypes
from rpcapi import CustosAPI

CONF = cfg.CONF

# Seconds past a call's own timeout after which the broker is deemed unreachable.
BROKER_GRACE = 5.0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command."""
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
    parser.add_argument("--project-id", default=os.environ.get("OS_PROJECT_ID"))
    parser.add_argument("--user-id", default=os.environ.get("OS_USER_ID"))
    parser.add_argument("--roles", type=argtypes.comma_list, default=argtypes.comma_list("admin"),
                        help="comma-separated user-token roles (default: admin)")
    parser.add_argument("--service-roles", type=argtypes.comma_list, default=argtypes.comma_list("service"),
                        help="comma-separated service-token roles (default: service)")
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


def _fail(code: str, message: str) -> int:
    print(f"custos: {code}: {message.splitlines()[0] if message else ''}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one client command.

    :returns: 0 when the agent answered, 1 on any failure.
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
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

    ctxt = wire.RequestContext(project_id=args.project_id, user_id=args.user_id,
                               roles=args.roles, service_roles=args.service_roles,
                               overwrite=False)
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
