"""What the authenticator counts for the operator, and the state health reports."""

from __future__ import annotations

import pytest

from agent import exception, metrics
from agent.identity.authenticator import Authenticator
from agent.wire import RequestContext


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_token_cache_hits_misses_refusals_and_keystone_state(conf, keystone_mode):
    hit, miss = value("custos_token_validations_total", result="cache_hit"), \
        value("custos_token_validations_total", result="cache_miss")
    refused = value("custos_token_validations_total", result="refused")
    latency = value("custos_keystone_request_seconds_count")
    authn = Authenticator(conf)
    assert authn.state()["keystone"] == "unknown"
    for _ in range(3):
        authn.identify(RequestContext(overwrite=False, auth_token="tok-alice"), "key_list")
    for _ in range(2):
        with pytest.raises(exception.Unauthorized):
            authn.identify(RequestContext(overwrite=False, auth_token="garbage"), "key_list")

    assert value("custos_token_validations_total", result="cache_hit") - hit == 2
    assert value("custos_token_validations_total", result="cache_miss") - miss == 2
    assert value("custos_token_validations_total", result="refused") - refused == 2
    assert value("custos_keystone_request_seconds_count") - latency == 2
    state = authn.state()
    assert state["keystone"] == "ok" and state["cached_tokens"] == 1
    assert state["refused_tokens"] == 1

    keystone_mode.down = True
    with pytest.raises(exception.AuthUnavailable):
        authn.identify(RequestContext(overwrite=False, auth_token="tok-new"), "key_list")
    assert authn.state()["keystone"] == "unreachable"
