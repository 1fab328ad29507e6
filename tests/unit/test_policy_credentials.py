"""A context's policy credentials are worked out once, and again when it changes."""

from __future__ import annotations

import pytest

from agent import exception, policy
from tests.common import OTHER_PROJECT, member


def test_a_context_changed_in_place_is_judged_on_its_new_roles(conf):
    ctx = member()
    policy.authorize(ctx, "secret_get_value")

    ctx.roles = []
    with pytest.raises(exception.Forbidden):
        policy.authorize(ctx, "secret_get_value")

    ctx.roles = ["member"]
    ctx.project_id = OTHER_PROJECT
    policy.authorize(ctx, "secret_get_value")
    with pytest.raises(exception.Forbidden):
        policy.authorize(ctx, "secret_get_value", {"project_id": "a-third-project"})


def test_a_remembered_decision_is_never_lent_to_a_context_of_another_kind(conf):
    from agent.wire import RequestContext

    class RolelessPolicyContext(RequestContext):
        """Same attributes, but policy values without the roles."""

        def to_policy_values(self):
            values = dict(super().to_policy_values())
            values["roles"] = []
            return values

    allowed = member()
    lookalike = RolelessPolicyContext(project_id=allowed.project_id, user_id=allowed.user_id,
                                      roles=list(allowed.roles), overwrite=False)
    policy.authorize(allowed, "secret_get_value")

    with pytest.raises(exception.Forbidden):
        policy.authorize(lookalike, "secret_get_value")


def test_two_requests_of_one_caller_share_a_decision_and_another_project_does_not(conf):
    first, second = member(), member()
    second.user_id = first.user_id
    policy.authorize(first, "secret_get_value")
    policy.authorize(second, "secret_get_value")

    stranger = member()
    stranger.project_id = OTHER_PROJECT
    with pytest.raises(exception.Forbidden):
        policy.authorize(stranger, "secret_get_value", {"project_id": first.project_id})
