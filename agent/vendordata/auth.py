"""The agent's own service token for vendordata targets (``[vendordata_auth]``).

Targets learn who is asking from an ``X-Auth-Token`` that belongs to the
agent's service user, obtained with keystoneauth1 from the
``[vendordata_auth]`` options, never from the token of the user whose
instance it is (Nova's vendordata v2 made the same choice).  The
keystoneauth session lives as long as the agent: its auth plugin keeps the
token and fetches a new one shortly before the old one expires.

Without ``auth_type`` the targets are asked without a token; the agent
says so once, at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from agent import exception

LOG = logging.getLogger(__name__)

GROUP = "vendordata_auth"


def token_headers(conf: cfg.ConfigOpts) -> Callable[[], dict[str, str]] | None:
    """Return a callable giving ``{"X-Auth-Token": <service token>}``.

    :param conf: the agent's configuration.
    :returns: the callable, or ``None`` when no ``auth_type`` is set (and
        then a warning has been logged).
    :raises agent.exception.ConfigurationError: when ``auth_type`` names an
        unknown plugin or leaves out a required option.
    """
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
    except ks_exceptions.NoMatchingPlugin:
        raise exception.ConfigurationError(
            reason=f"[{GROUP}] auth_type names no keystoneauth1 plugin") from None
    except ks_exceptions.MissingRequiredOptions as error:
        names = ", ".join(opt.dest for opt in error.options)
        raise exception.ConfigurationError(
            reason=f"[{GROUP}] lacks required options: {names}") from None
    if auth is None:
        LOG.warning("[%s] has no auth_type: vendordata targets are asked "
                    "without a service token", GROUP)
        return None
    session = ks_loading.load_session_from_conf_options(conf, GROUP, auth=auth)

    def headers() -> dict[str, str]:
        token = session.get_token()
        if not token:
            raise RuntimeError("keystone issued no token")
        return {"X-Auth-Token": token}

    return headers


def tls_verify(conf: cfg.ConfigOpts) -> bool | str:
    """Return the TLS verification for https targets, as requests takes it.

    The ``[vendordata_auth]`` session options (``insecure``, ``cafile``)
    describe the vendordata services' TLS too, as in Nova.
    """
    group = conf[GROUP]
    if group.insecure:
        return False
    return group.cafile or True
