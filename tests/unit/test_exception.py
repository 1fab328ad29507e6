"""Custos errors keep their class, code and message across the bus."""

from __future__ import annotations

import sys

from oslo_messaging._drivers import common as driver_common

from agent import exception


def over_the_wire(error):
    try:
        raise error
    except Exception:
        data = driver_common.serialize_remote_exception(sys.exc_info())
    return driver_common.deserialize_remote_exception(data, ["agent.exception"])


def test_every_error_round_trips_with_its_code_and_message():
    error = exception.SecretUsageConflict(usage_type="ceph", usage_id="client.admin",
                                          holder="f52a81b2-424e-490c-823d-6bd4235bc572")

    remote = over_the_wire(error)

    assert isinstance(remote, exception.SecretUsageConflict)
    assert isinstance(remote, exception.CustosException)
    assert remote.code == "secret_usage_conflict"
    assert remote.msg == error.msg
    assert "f52a81b2" in remote.msg


def test_codes_are_unique_and_stable():
    classes = [c for c in vars(exception).values()
               if isinstance(c, type) and issubclass(c, exception.CustosException)]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    assert exception.InvalidInput.code == "invalid_input"
    assert exception.Forbidden.code == "forbidden"


def test_a_template_that_does_not_fit_still_gives_a_message():
    assert exception.InvalidInput(wrong="x").msg == exception.InvalidInput.msg_fmt
