"""Every custos option listed once, and the defaults custos gives libraries.

:data:`MODULES` names the option modules; :mod:`agent.conf` registers them
and :func:`list_opts` lists them for oslo-config-generator (``custos``
namespace). :func:`set_defaults` is the one place custos changes library
defaults: oslo.log's levels and oslo.messaging's ``control_exchange``. The
agent's start-up (``custos-agent``, ``custos-manage``) applies it; the
client never does, so a service importing :mod:`rpcapi` keeps its own
exchange. Nothing here imports :mod:`agent.log` or :mod:`agent.rpc`.
"""

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as oslo_log

from agent import wire
from agent.conf import (auth, backup, database, default, events, keystone_authtoken, keystore,
                        metrics, profiler, secrets, vendordata)
from rpcapi import base as rpcapi_base

#: The option modules of custos' own areas, in registration order.
MODULES = (default, database, keystore, auth, keystone_authtoken, backup, secrets, vendordata,
           events, metrics, profiler)

#: Library loggers kept quiet unless an operator asks otherwise.
QUIET_LOGGERS = ["amqp=WARN", "kombu=WARN", "oslo.messaging=INFO",
                 "oslo_messaging=INFO", "oslo_policy=WARN", "urllib3=WARN",
                 "keystoneauth=WARN", "stevedore=WARN", "alembic=WARN",
                 "sqlalchemy=WARN", "iso8601=WARN"]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return ``(group, options)`` pairs of every custos area and the client."""
    result: list[tuple[str, list[cfg.Opt]]] = []
    for module in MODULES:
        result.extend(module.list_opts())
    result.extend(rpcapi_base.list_opts())
    # Backend sections are named by the operator; the sample shows one.
    from agent.connections import backends

    result.extend(backends.list_opts())
    return result


def set_defaults() -> None:
    """Apply custos' defaults to library options (log levels, exchange).

    The ``oslo.config.opts.defaults`` entry point, so the generated sample
    shows what custos actually runs with.
    """
    levels: dict[str, str] = {}
    for item in [*oslo_log.get_default_log_levels(), *QUIET_LOGGERS]:
        name, level = item.split("=", 1)
        levels[name] = level
    oslo_log.set_defaults(default_log_levels=[f"{name}={level}" for name, level in levels.items()])
    messaging.set_transport_defaults(control_exchange=wire.EXCHANGE)
