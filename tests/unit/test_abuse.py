"""Every RPC method against hostile arguments, on the in-process agent.

Whatever a caller sends, the answer is a success or a custos error (a
:class:`~agent.exception.CustosException` subclass), never oslo.messaging's
untyped ``RemoteError``, and the agent answers ``health`` afterwards.
"""

from __future__ import annotations

import oslo_messaging as messaging
import pytest
from hypothesis import HealthCheck, given, settings
from oslo_config import cfg

from agent import exception
from rpcapi import CustosAPI
from tests.abuse import BACKEND, BACKEND_OPTIONS, call_arguments, contexts, rpc_methods
from tests.common import nobody
from tests.unit.connections.conftest import configure_backend

METHODS = rpc_methods()
CLIENT_HELPERS = {"can_send_version"}


def test_every_client_method_is_in_the_abused_set():
    client = {name for name in dir(CustosAPI)
              if not name.startswith("_") and callable(getattr(CustosAPI, name))}

    assert client - CLIENT_HELPERS <= set(METHODS)
    assert "health" in METHODS


@pytest.fixture
def with_backend(migrated: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """The iSCSI CHAP backend, so connection methods get past the backend lookup."""
    configure_backend(migrated, BACKEND, BACKEND_OPTIONS["volume_driver"],
                      **{k: v for k, v in BACKEND_OPTIONS.items() if k != "volume_driver"})
    migrated.set_override("enabled_backends", [BACKEND])
    return migrated


@pytest.mark.parametrize("method", sorted(METHODS))
def test_hostile_arguments_get_custos_errors(with_backend, harness, method):
    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(ctxt=contexts, kwargs=call_arguments(METHODS[method]))
    def attempt(ctxt, kwargs):
        try:
            harness.api.client.call(ctxt, method, **kwargs)
        except exception.CustosException:
            pass
        except messaging.RemoteError as error:
            pytest.fail(f"{method} answered an unexpected {error.exc_type}: {error.value}")

        assert harness.api.health(nobody())["database"] == "ok"

    attempt()
