"""Asking Keystone what a token says: ``GET /v3/auth/tokens``.

The agent asks as its own service user (``[keystone_authtoken]``), through
a keystoneauth1 session, with ``allow_expired=1``: one round trip tells
both whether the token is genuine and when it expires, and the
authenticator decides whether an expired one still counts (only beside a
valid service token, as keystonemiddleware does).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from keystoneauth1 import access
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from agent import exception
from agent.conf import keystoneauth

LOG = logging.getLogger(__name__)

GROUP = "keystone_authtoken"


class TokenRefused(Exception):
    """Keystone says the token is not (or no longer) valid."""


@dataclasses.dataclass(frozen=True)
class TokenIdentity:
    """What Keystone vouched for about one token.

    :ivar roles: role names, implied roles included (Keystone expands them).
    :ivar system_scope: ``all`` for a system-scoped token, else None.
    :ivar expires_at: POSIX time at which the token expires.
    """

    user_id: str | None
    user_name: str | None
    user_domain_id: str | None
    project_id: str | None
    project_name: str | None
    project_domain_id: str | None
    domain_id: str | None
    system_scope: str | None
    roles: tuple[str, ...]
    is_admin_project: bool
    expires_at: float

    @classmethod
    def from_access(cls, info: Any) -> TokenIdentity:
        """Build the identity from keystoneauth1's ``AccessInfoV3``."""
        system = info.system or {}
        return cls(user_id=info.user_id, user_name=info.username,
                   user_domain_id=info.user_domain_id,
                   project_id=info.project_id, project_name=info.project_name,
                   project_domain_id=info.project_domain_id,
                   domain_id=info.domain_id if info.domain_scoped else None,
                   system_scope="all" if system.get("all") else None,
                   roles=tuple(info.role_names or ()),
                   is_admin_project=bool(info.is_admin_project),
                   expires_at=info.expires.timestamp())


class KeystoneValidator:
    """Validates tokens with Keystone as the agent's own service user.

    :param conf: configuration with ``[keystone_authtoken]``.
    :raises ConfigurationError: the section names no usable auth plugin.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        section = conf[GROUP]
        session = keystoneauth.load_session(conf, GROUP)
        if session is None:
            raise exception.ConfigurationError(
                reason=f"[auth] strategy = keystone needs the agent's own service user "
                       f"in [{GROUP}] (auth_type, auth_url, username, ...)")
        self.session: ks_session.Session = session
        if not section.timeout:
            self.session.timeout = section.http_connect_timeout
        self.endpoint_filter = {"service_type": "identity", "interface": section.interface,
                                "version": (3, 0)}
        if section.region_name:
            self.endpoint_filter["region_name"] = section.region_name

    def validate(self, token: str) -> TokenIdentity:
        """Return what Keystone says about ``token``, expired or not.

        :raises TokenRefused: Keystone does not know the token (forged,
            revoked, or expired past Keystone's window).
        :raises AuthUnavailable: Keystone cannot be reached or does not
            let the agent validate.
        """
        for attempt in range(2):
            response = self._get(token)
            if response.status_code == 401 and attempt == 0:
                # The agent's own token was refused (Keystone restarted with
                # new keys, or it expired early): get a new one, once.
                self.session.invalidate()
                continue
            break
        status = response.status_code
        if status == 200:
            try:
                return TokenIdentity.from_access(access.create(resp=response))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                LOG.error("Keystone answered a token validation with a body the agent "
                          "cannot read (%s)", type(error).__name__)
                raise exception.AuthUnavailable() from None
        if status == 404:
            raise TokenRefused()
        if status in (401, 403):
            LOG.error("Keystone refused to let the agent's service user validate tokens "
                      "(HTTP %s): check [%s]", status, GROUP)
        else:
            LOG.warning("Keystone answered a token validation with HTTP %s", status)
        raise exception.AuthUnavailable()

    def _get(self, token: str) -> Any:
        try:
            return self.session.get("/auth/tokens", headers={"X-Subject-Token": token},
                                    params={"allow_expired": 1},
                                    endpoint_filter=self.endpoint_filter,
                                    raise_exc=False, authenticated=True)
        except ks_exceptions.ClientException as error:
            LOG.warning("Keystone is not reachable for token validation (%s)",
                        type(error).__name__)
            raise exception.AuthUnavailable() from None
