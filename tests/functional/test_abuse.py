"""Hostile calls over RabbitMQ against a real agent on PostgreSQL (SPEC §4).

A smaller run of the unit abuse suite (tests/unit/test_abuse.py) through
the real bus and a server database, plus the XML attacks on
``secret_define_xml``.
"""

from __future__ import annotations

import uuid

import oslo_messaging as messaging
import pytest
from hypothesis import HealthCheck, given, settings

from agent import exception
from tests.abuse import (BACKEND, BACKEND_OPTIONS, XML_ATTACKS, call_arguments, contexts,
                         rpc_methods)
from tests.common import admin, member, nobody

METHODS = rpc_methods()


@pytest.fixture
def agent_on_postgresql(shared_agent):
    """The module's agent on PostgreSQL, with one volume backend."""
    return shared_agent("postgresql", DEFAULT={"enabled_backends": BACKEND},
                        **{BACKEND: BACKEND_OPTIONS})


@pytest.mark.parametrize("attack", sorted(XML_ATTACKS))
def test_xml_attacks_are_refused(agent_on_postgresql, api, attack):
    # A project of its own: the agent and its database serve the whole module.
    project = uuid.uuid4().hex
    with pytest.raises(exception.InvalidInput) as refused:
        api.secret_define_xml(member(project), XML_ATTACKS[attack])

    assert refused.value.kwargs["field"] == "xml"
    assert api.secret_list(admin(project)) == []
    assert "root:" not in agent_on_postgresql.log()
    assert api.health(nobody())["database"] == "ok"


def test_hostile_arguments_over_the_bus_get_custos_errors(agent_on_postgresql, api):
    failures = []
    for method, params in sorted(METHODS.items()):
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(ctxt=contexts, kwargs=call_arguments(params))
        def attempt(ctxt, kwargs):
            try:
                api.client.call(ctxt, method, **kwargs)
            except exception.CustosException:
                pass
            except messaging.RemoteError as error:
                raise AssertionError(f"{method}: unexpected {error.exc_type}: "
                                     f"{error.value[:200]}") from None

        try:
            attempt()
        except AssertionError as error:
            failures.append(str(error).splitlines()[0])

    assert failures == []
    assert api.health(nobody())["database"] == "ok"
