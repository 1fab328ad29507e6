"""The first step of the dispatch boundary: turn a request's tokens into an identity.

With ``[auth] strategy = keystone`` nothing the message claims about its
caller reaches the policy: the context handed on is built from Keystone's
answers only (project, user, roles with implied roles from the user token;
user, project and roles of the service token as ``service_*``). The rules
are keystonemiddleware's:

- a service token counts only with a role from ``service_token_roles``;
- an expired user token counts only beside a valid service token, so that
  a long operation a service began for a user can finish;
- a validated token is believed for ``token_cache_time`` seconds, so a
  revoked one stops working within that time; a refused one is refused
  again without asking Keystone for ``[auth] refused_token_cache_time``.

With ``strategy = trusted`` the claimed context stands, and requests that
carry no token are counted for the operator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from oslo_config import cfg

from agent import exception, metrics, validation, wire
from agent.conf import auth as auth_conf
from agent.identity import tokenless
from agent.identity.cache import TokenCache, digest
from agent.identity.keystone import KeystoneValidator, TokenIdentity, TokenRefused

LOG = logging.getLogger(__name__)

#: Longest token accepted, in characters (fernet tokens are under 300).
MAX_TOKEN = 8192


def _token(ctxt: Any, name: str) -> str | None:
    value = getattr(ctxt, name, None)
    if value is None or value == "":
        return None
    return validation.string(f"context.{name}", value, MAX_TOKEN)


class Authenticator:
    """Builds the identity the policy sees for each request.

    :param conf: the agent's configuration (``[auth]``, ``[keystone_authtoken]``).
    :param validator: asks Keystone about a token; built from ``conf`` when
        omitted and the strategy is keystone.
    :param tokenless_counter: where tokenless requests are counted in
        trusted mode.
    :param clock: POSIX seconds (token expiry is wall-clock time).
    :raises ConfigurationError: keystone strategy without a usable
        ``[keystone_authtoken]`` service user.
    """

    def __init__(self, conf: cfg.ConfigOpts, validator: Any = None,
                 tokenless_counter: tokenless.TokenlessCounter | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.strategy = conf.auth.strategy
        self.trusted = self.strategy == auth_conf.TRUSTED
        section = conf.keystone_authtoken
        self.service_token_roles = frozenset(section.service_token_roles)
        self.service_roles_required = section.service_token_roles_required
        self.cache_time = section.token_cache_time
        self.refused_time = conf.auth.refused_token_cache_time
        self.known: TokenCache[TokenIdentity] = TokenCache(conf.auth.identity_cache_size)
        self.refused: TokenCache[bool] = TokenCache(conf.auth.identity_cache_size)
        self.tokenless = tokenless_counter or tokenless.TokenlessCounter(None)
        self._clock = clock
        self.validator = validator
        #: What the last question to Keystone found: ok, unreachable, unknown.
        self.keystone_state = "unknown"
        self.keystone_checked: float | None = None
        if validator is None and not self.trusted:
            self.validator = KeystoneValidator(conf)

    def identify(self, ctxt: Any, method: str) -> Any:
        """Return the context the rest of the request works with.

        :param ctxt: the context as it came off the bus.
        :param method: the RPC method asked for (counted in trusted mode).
        :raises Unauthorized: no token, a token Keystone refused, an
            expired one without a valid service token, or a service token
            without a service role.
        :raises AuthUnavailable: Keystone cannot be asked about a token
            the agent has not validated lately.
        :raises InvalidInput: a token that is not a bounded string.
        """
        user_token = _token(ctxt, "auth_token")
        service_token = _token(ctxt, "service_token")
        if self.trusted:
            if user_token is None and service_token is None:
                self.tokenless.count(getattr(ctxt, "user_id", None), method)
            return ctxt
        if user_token is None and service_token is None:
            raise exception.Unauthorized(reason="the request carries no token")
        now = self._clock()
        service = None
        if service_token is not None:
            service = self._lookup(service_token, "service token")
            if service.expires_at <= now:
                raise exception.Unauthorized(reason="the service token has expired")
            if not self.service_token_roles.intersection(service.roles):
                if self.service_roles_required:
                    raise exception.Unauthorized(
                        reason="the service token has no role from service_token_roles")
                service_valid = False
            else:
                service_valid = True
        else:
            service_valid = False
        user = None
        if user_token is not None:
            user = self._lookup(user_token, "user token")
            if user.expires_at <= now and not service_valid:
                raise exception.Unauthorized(
                    reason="the user token has expired (it counts only beside a valid "
                           "service token)")
        return self._context(ctxt, user, service)

    def answers_from_memory(self, ctxt: Mapping[str, Any]) -> bool:
        """True when :meth:`identify` could answer for ``ctxt`` without asking Keystone.

        That is so in trusted mode, and when every token ``ctxt`` carries
        was validated or refused lately. Nothing is counted or changed.

        :param ctxt: the request's context as it came off the bus, a dict.
        """
        if self.trusted:
            return True
        for name in ("auth_token", "service_token"):
            token = ctxt.get(name)
            if token is None or token == "":
                continue
            if not isinstance(token, str) or len(token) > MAX_TOKEN:
                return False
            key = digest(token)
            if not (self.known.holds(key) or self.refused.holds(key)):
                return False
        return True

    def _lookup(self, token: str, which: str) -> TokenIdentity:
        key = digest(token)
        known = self.known.get(key)
        if known is not None:
            metrics.TOKEN_CACHE_HIT.inc()
            return known
        if self.refused.get(key):
            metrics.TOKEN_REFUSED.inc()
            raise exception.Unauthorized(reason=f"Keystone refused the {which}")
        metrics.TOKEN_CACHE_MISS.inc()
        started = time.monotonic()
        try:
            identity = self.validator.validate(token)
        except TokenRefused:
            self._answered(started)
            metrics.TOKEN_REFUSED.inc()
            self.refused.put(key, True, self.refused_time)
            raise exception.Unauthorized(reason=f"Keystone refused the {which}") from None
        except exception.AuthUnavailable:
            metrics.TOKEN_UNAVAILABLE.inc()
            self.keystone_state = "unreachable"
            self.keystone_checked = time.monotonic()
            raise
        self._answered(started)
        self.known.put(key, identity, self.cache_time)
        return identity

    def _answered(self, started: float) -> None:
        now = time.monotonic()
        metrics.KEYSTONE_SECONDS.observe(now - started)
        self.keystone_state = "ok"
        self.keystone_checked = now

    def state(self) -> dict[str, Any]:
        """Return what ``custos health`` says of authentication.

        :returns: ``{strategy, cached_tokens, refused_tokens}`` and, with
            the keystone strategy, ``keystone``: ``ok`` or ``unreachable``
            as the last validation found it (``unknown`` before the first)
            and ``keystone_checked_s_ago``. Health itself never asks
            Keystone: anyone may call it.
        """
        result: dict[str, Any] = {"strategy": self.strategy,
                                  "cached_tokens": len(self.known),
                                  "refused_tokens": len(self.refused)}
        if not self.trusted:
            result["keystone"] = self.keystone_state
            result["keystone_checked_s_ago"] = (
                None if self.keystone_checked is None
                else round(time.monotonic() - self.keystone_checked, 1))
        return result

    @staticmethod
    def _context(claimed: Any, user: TokenIdentity | None,
                 service: TokenIdentity | None) -> wire.RequestContext:
        roles = list(user.roles) if user else []
        return wire.RequestContext(
            user_id=user.user_id if user else None,
            user_name=user.user_name if user else None,
            user_domain_id=user.user_domain_id if user else None,
            project_id=user.project_id if user else None,
            project_name=user.project_name if user else None,
            project_domain_id=user.project_domain_id if user else None,
            domain_id=user.domain_id if user else None,
            system_scope=user.system_scope if user else None,
            is_admin_project=user.is_admin_project if user else True,
            roles=roles, is_admin="admin" in roles,
            service_user_id=service.user_id if service else None,
            service_project_id=service.project_id if service else None,
            service_roles=list(service.roles) if service else [],
            request_id=getattr(claimed, "request_id", None),
            global_request_id=getattr(claimed, "global_request_id", None),
            overwrite=False)

    def forget(self) -> None:
        """Forget every validated and refused token (tests, reload)."""
        self.known.clear()
        self.refused.clear()
