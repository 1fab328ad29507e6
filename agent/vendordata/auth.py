"""The agent's own service token for vendordata targets (``[vendordata_auth]``).

Targets learn who is asking from an ``X-Auth-Token`` that belongs to the
agent's service user, obtained with keystoneauth1 from the
``[vendordata_auth]`` options, never from the token of the user whose
instance it is (Nova's vendordata v2 made the same choice).  The
keystoneauth session lives as long as the agent: its auth plugin keeps the
token and fetches a new one shortly before the old one expires.

A target that answers 401 has refused the token (it was revoked, or the
target's view of it is stale): :meth:`ServiceToken.renew` drops it and
gets a new one, as keystoneauth's session does for Nova's own requests.
Lookups that were all refused the same token share one renewal, and a
token is renewed at most once every :data:`RENEW_INTERVAL` seconds, so a
target that refuses every token cannot make each lookup a request to
Keystone.

Without ``auth_type`` the targets are asked without a token; the agent
says so once, at start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from keystoneauth1 import session as ks_session
from oslo_config import cfg

from agent.conf import keystoneauth

LOG = logging.getLogger(__name__)

GROUP = "vendordata_auth"
HEADER = "X-Auth-Token"
# The shortest time between two renewals of a token a target refused.
RENEW_INTERVAL = 10.0


class ServiceToken:
    """The agent's service token, from one keystoneauth1 session.

    :param session: the session, with its auth plugin.
    :param clock: monotonic clock in seconds; injectable for tests.
    """

    def __init__(self, session: ks_session.Session,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._renewed_at: float | None = None

    def headers(self) -> dict[str, str]:
        """Return ``{"X-Auth-Token": token}``, the token keystoneauth holds.

        :raises Exception: whatever keystoneauth raises when Keystone
            cannot issue a token; its text may quote credentials.
        :raises RuntimeError: when Keystone issued no token.
        """
        token = self._session.get_token()
        if not token:
            raise RuntimeError("keystone issued no token")
        return {HEADER: token}

    def renew(self, rejected: dict[str, str]) -> dict[str, str]:
        """Return headers with a token other than the one a target refused.

        :param rejected: the headers the target answered 401 to.
        :returns: the headers to ask again with: the token another lookup
            got meanwhile, or a new one; the same headers when that
            token was itself renewed less than :data:`RENEW_INTERVAL`
            seconds ago (the fetcher then fails the target without
            asking it again).
        :raises Exception: as :meth:`headers`.
        """
        with self._lock:
            current = self.headers()
            recent = (self._renewed_at is not None
                      and self._clock() - self._renewed_at < RENEW_INTERVAL)
            if current[HEADER] == rejected.get(HEADER) and not recent:
                self._session.invalidate()
                self._renewed_at = self._clock()
                LOG.info("A vendordata target refused the service token; "
                         "a new one was requested")
                current = self.headers()
            return current


def service_token(conf: cfg.ConfigOpts) -> ServiceToken | None:
    """Return the agent's service token for the targets.

    :param conf: the agent's configuration.
    :returns: the token source, or ``None`` when no ``auth_type`` is set
        (and then a warning has been logged).
    :raises agent.exception.ConfigurationError: when ``auth_type`` names an
        unknown plugin or leaves out a required option.
    """
    session = keystoneauth.load_session(conf, GROUP)
    if session is None:
        LOG.warning("[%s] has no auth_type: vendordata targets are asked "
                    "without a service token", GROUP)
        return None
    return ServiceToken(session)


def tls_verify(conf: cfg.ConfigOpts) -> bool | str:
    """Return the TLS verification for https targets, as requests takes it.

    The ``[vendordata_auth]`` session options (``insecure``, ``cafile``)
    describe the vendordata services' TLS too, as in Nova.
    """
    group = conf[GROUP]
    if group.insecure:
        return False
    return group.cafile or True
