"""Helpers shared by unit and functional tests: contexts and notifications."""

from __future__ import annotations

import uuid
from typing import Any

from agent.context import RequestContext

PROJECT = "9f2e6b1c4d5a4e3f8a7b6c5d4e3f2a1b"
OTHER_PROJECT = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6"


def make_context(project_id: str | None = PROJECT, roles: list[str] | None = None,
                 service_roles: list[str] | None = None, **kwargs: Any) -> RequestContext:
    """A context as a caller builds it; user roles default to ``member``."""
    return RequestContext(project_id=project_id, user_id=kwargs.pop("user_id", uuid.uuid4().hex),
                          roles=["member"] if roles is None else roles,
                          service_roles=service_roles or [], overwrite=False, **kwargs)


def member(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """An operator of ``project_id`` with a user token only."""
    return make_context(project_id, ["member"], [], **kwargs)


def admin(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """The cloud administrator (user token only)."""
    return make_context(project_id, ["admin"], [], **kwargs)


def member_with_service(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """A user token of an operator together with a service token."""
    return make_context(project_id, ["member"], ["service"], **kwargs)


def service_only(project_id: str | None = None, **kwargs: Any) -> RequestContext:
    """A service token alone: no operator role in the user token."""
    return make_context(project_id, [], ["service"], **kwargs)


def auditor(project_id: str | None = None, **kwargs: Any) -> RequestContext:
    """A service token with the audit role alone."""
    return make_context(project_id, [], ["service_auditor"], **kwargs)


def nobody(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """A context with no role at all."""
    return make_context(project_id, [], [], **kwargs)
