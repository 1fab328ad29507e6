"""Every custos option, for oslo-config-generator (``custos`` namespace)."""

from oslo_config import cfg

from agent.conf import auth, backup, database, default, keystore, secrets, vendordata


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return ``(group, options)`` pairs of every custos area."""
    result: list[tuple[str, list[cfg.Opt]]] = []
    for module in (default, database, keystore, auth, backup, secrets, vendordata):
        result.extend(module.list_opts())
    # Backend sections are named by the operator; the sample shows one.
    from agent.connections import backends

    result.extend(backends.list_opts())
    return result


def set_defaults() -> None:
    """Apply custos' defaults to library options (log levels, exchange).

    The ``oslo.config.opts.defaults`` entry point, so the generated sample
    shows what custos actually runs with.
    """
    from oslo_log import log as oslo_log

    import oslo_messaging as messaging

    from agent.log import QUIET_LOGGERS
    from agent.rpc import CONTROL_EXCHANGE

    levels: dict[str, str] = {}
    for item in [*oslo_log.get_default_log_levels(), *QUIET_LOGGERS]:
        name, level = item.split("=", 1)
        levels[name] = level
    oslo_log.set_defaults(default_log_levels=[f"{name}={level}" for name, level in levels.items()])
    messaging.set_transport_defaults(control_exchange=CONTROL_EXCHANGE)
