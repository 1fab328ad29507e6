"""The calling service's own token, sent beside its users' tokens.

Nova and Cinder describe their service user in ``[service_user]`` (the
section behind ``send_service_user_token``): keystoneauth1's auth plugin
and session options. When that section says ``send_service_user_token =
true``, every custos request carries the service's token as
``service_token``, which the agent validates with Keystone (SPEC §3.9).
The plugin keeps the token and fetches a new one shortly before it
expires, so a request costs no Keystone round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from oslo_config import cfg

from agent import exception

GROUP = "service_user"

_send_opt = cfg.BoolOpt(
    "send_service_user_token", default=False,
    help="Send this service's own token with every custos request, beside "
         "the user's (the custos agent needs it for service-only methods "
         "and composite rules).")

_lock = threading.Lock()
_cached: dict[int, Callable[[], str] | None] = {}


def _register(conf: cfg.ConfigOpts) -> None:
    # Nova and Cinder register this section themselves, with help texts of
    # their own: register only what is missing, never a second definition.
    conf.register_group(cfg.OptGroup(GROUP))
    if "send_service_user_token" not in conf[GROUP]:
        conf.register_opt(_send_opt, group=GROUP)


def from_conf(conf: cfg.ConfigOpts) -> Callable[[], str] | None:
    """Return a callable giving this service's token, or None when it sends none.

    Built once per configuration object.

    :raises ConfigurationError: ``send_service_user_token`` is on but
        ``[service_user]`` does not describe a usable keystoneauth1 plugin.
    """
    with _lock:
        if id(conf) in _cached:
            return _cached[id(conf)]
        _register(conf)
        source = _build(conf) if conf[GROUP].send_service_user_token else None
        _cached[id(conf)] = source
        return source


def _build(conf: cfg.ConfigOpts) -> Callable[[], str]:
    # keystoneauth1 only for a service that sends its token: a caller that
    # does not loads nothing more than oslo.messaging.
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1 import loading as ks_loading

    ks_loading.register_session_conf_options(conf, GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
    except (ks_exceptions.NoMatchingPlugin, ks_exceptions.MissingRequiredOptions) as error:
        raise exception.ConfigurationError(
            reason=f"[{GROUP}] does not describe a keystoneauth1 plugin "
                   f"({type(error).__name__})") from None
    if auth is None:
        raise exception.ConfigurationError(
            reason=f"[{GROUP}] send_service_user_token is set but auth_type is not")
    session = ks_loading.load_session_from_conf_options(conf, GROUP, auth=auth)

    def token() -> str:
        try:
            value = session.get_token()
        except ks_exceptions.ClientException as error:
            raise exception.AuthUnavailable() from error
        if not value:
            raise exception.AuthUnavailable()
        return value

    return token


def forget() -> None:
    """Forget every built token source (tests that change ``[service_user]``)."""
    with _lock:
        _cached.clear()
