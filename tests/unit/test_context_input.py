"""The request context is input: bad ids and roles are refused by name, before policy."""

from __future__ import annotations

import pytest

from agent import exception
from tests.common import PROJECT, member

XML = "<secret ephemeral='no' private='no'><usage type='ceph'><name>c</name></usage></secret>"


def wire(**changes):
    """A member's context as it travels, with ``changes`` applied."""
    values = member().to_dict()
    values.update(changes)
    return values


@pytest.mark.parametrize("changes, field", [
    ({"project_id": "p" * 256}, "context.project_id"),
    ({"project_id": 5}, "context.project_id"),
    ({"project_id": ["p"]}, "context.project_id"),
    ({"project_id": PROJECT + "\x00"}, "context.project_id"),
    ({"user": "u" * 256}, "context.user_id"),
    ({"user": {"id": "u"}}, "context.user_id"),
    ({"user": "u\x00"}, "context.user_id"),
    ({"domain": 3}, "context.domain_id"),
    ({"roles": "member"}, "context.roles"),
    ({"roles": ["member", 7]}, "context.roles[1]"),
    ({"roles": ["member", "r" * 256]}, "context.roles[1]"),
    ({"roles": ["mem\x00ber"]}, "context.roles[0]"),
    ({"roles": ["member"] * 101}, "context.roles"),
    ({"service_roles": ["service", None]}, "context.service_roles[1]"),
    ({"service_roles": "service"}, "context.service_roles"),
    ({"service_project_id": "s" * 256}, "context.service_project_id"),
])
def test_a_bad_context_field_is_invalid_input_and_changes_nothing(harness, changes, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.secret_define_xml(wire(**changes), XML)

    assert caught.value.kwargs["field"] == field
    assert "\x00" not in caught.value.msg and "p" * 256 not in caught.value.msg
    assert harness.api.secret_list(member()) == []
    assert harness.notifications() == []


def test_the_context_is_checked_before_policy(harness):
    # A refusal by policy would be Forbidden; the bad role list comes first.
    with pytest.raises(exception.InvalidInput):
        harness.api.initiator_data_get(wire(roles=["admin", 1]), "iqn.x", "ns")
