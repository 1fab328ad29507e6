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
