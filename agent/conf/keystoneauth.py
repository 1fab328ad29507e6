"""keystoneauth1's options in a section of custos' own, and the session they describe.

``[keystone_authtoken]`` (the agent's service user, validating tokens)
and ``[vendordata_auth]`` (its token for vendordata targets) each hold
keystoneauth1's session and auth plugin options, as Nova's and Cinder's
sections do.
"""

from __future__ import annotations

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from agent import exception


def register_opts(conf: cfg.ConfigOpts, group: str) -> None:
    """Register keystoneauth1's session and auth plugin options in ``group``."""
    ks_loading.register_session_conf_options(conf, group)
    ks_loading.register_auth_conf_options(conf, group)


def list_opts() -> list[cfg.Opt]:
    """Return the options the sample shows: the session's and the password plugin's."""
    return (ks_loading.get_session_conf_options()
            + ks_loading.get_auth_common_conf_options()
            + ks_loading.get_auth_plugin_conf_options("password"))


def load_session(conf: cfg.ConfigOpts, group: str) -> ks_session.Session | None:
    """Return a session authenticated as ``group`` describes, or None without ``auth_type``.

    :raises ConfigurationError: ``auth_type`` names no keystoneauth1 plugin,
        or the plugin's required options are missing.
    """
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, group)
    except ks_exceptions.NoMatchingPlugin:
        raise exception.ConfigurationError(
            reason=f"[{group}] auth_type names no keystoneauth1 plugin") from None
    except ks_exceptions.MissingRequiredOptions as error:
        names = ", ".join(opt.dest for opt in error.options)
        raise exception.ConfigurationError(
            reason=f"[{group}] lacks required options: {names}") from None
    if auth is None:
        return None
    session: ks_session.Session = ks_loading.load_session_from_conf_options(conf, group,
                                                                            auth=auth)
    return session
