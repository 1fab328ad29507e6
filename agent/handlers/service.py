"""RPC endpoint: the agent's own health."""

from __future__ import annotations

import time
from typing import Any

import agent
from agent import exception, transactions
from agent.dispatch import Endpoint, Request, rpc_method
from db import api as db_api
from rpcapi import RPC_API_VERSION


class ServiceEndpoint(Endpoint):
    """Methods about the agent itself."""

    @rpc_method(transactions.NO_TRANSACTION, authenticated=False)
    def health(self, request: Request) -> dict[str, Any]:
        """Report the agent's version and whether its parts work.

        Runs without a request transaction so that a database outage is
        reported here instead of failing the call.

        :returns: ``{version, rpc_api_version, database, master_key,
            uptime_s, notifications, authentication, broker}``;
            ``database`` and ``master_key`` are ``ok`` or the code of the
            error that stops them; ``notifications`` the sender's queue
            depth, drops and give-ups since start; ``authentication`` the
            validation cache and, in keystone mode, whether Keystone
            answered last time (:meth:`Authenticator.state`); ``broker``
            whether the notification broker took the last notification.
        """
        try:
            self.runtime.ring.active()
            master_key = "ok"
        except exception.CustosException as error:
            master_key = error.code
        return {"version": agent.__version__,
                "rpc_api_version": RPC_API_VERSION,
                "host": self.runtime.host,
                "database": db_api.ping(),
                "master_key": master_key,
                "uptime_s": round(time.monotonic() - self.runtime.started_at, 3),
                "notifications": self.runtime.notifications.state(),
                "authentication": (self.runtime.identity.state()
                                   if self.runtime.identity is not None else None),
                # This call came over the RPC connection, so it works.
                "broker": {"rpc": "ok",
                           "notifications": self.runtime.notifications.broker_state}}
