"""An agent on the fake transport whose tokens are judged by a Keystone stand-in.

Keystone itself runs in the functional tests (tests/functional/keystone.py);
here a dictionary of token -> identity plays its validation answer, so the
authenticator's rules can be driven one by one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent import exception
from agent.identity import authenticator
from agent.identity.keystone import TokenIdentity, TokenRefused

P1 = "aaaaaaaaaaaa4aaa8aaaaaaaaaaaaaa1"
P2 = "bbbbbbbbbbbb4bbb8bbbbbbbbbbbbbb2"
SERVICE_PROJECT = "5e5e5e5e5e5e4e5e8e5e5e5e5e5e5e5e"


def identity(user: str, project: str | None, roles: list[str], *, expires_in: float = 3600,
             system: bool = False) -> TokenIdentity:
    """What Keystone would say about a token of ``user``."""
    return TokenIdentity(user_id=user, user_name=user, user_domain_id="default",
                         project_id=project, project_name=project,
                         project_domain_id="default" if project else None, domain_id=None,
                         system_scope="all" if system else None, roles=tuple(roles),
                         is_admin_project=True, expires_at=time.time() + expires_in)


class FakeKeystone:
    """Answers validations from :attr:`tokens`; counts them; may be 'down'."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenIdentity] = {}
        self.asked: list[str] = []
        self.down = False

    def validator(self, conf: Any = None) -> FakeKeystone:
        return self

    def validate(self, token: str) -> TokenIdentity:
        if self.down:
            raise exception.AuthUnavailable()
        self.asked.append(token)
        try:
            return self.tokens[token]
        except KeyError:
            raise TokenRefused() from None


@pytest.fixture
def keystone(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKeystone]:
    fake = FakeKeystone()
    fake.tokens.update({
        "tok-alice": identity("alice", P1, ["member", "reader"]),
        "tok-bob": identity("bob", P2, ["member", "reader"]),
        "tok-dave": identity("dave", P1, ["admin", "member", "reader"]),
        "tok-system": identity("admin", None, ["admin", "member", "reader"], system=True),
        "tok-eve": identity("eve", None, ["member"]),
        "tok-nova": identity("nova", SERVICE_PROJECT, ["service"]),
        "tok-plain": identity("plain", SERVICE_PROJECT, ["member"]),
        "tok-alice-expired": identity("alice", P1, ["member", "reader"], expires_in=-60),
    })
    monkeypatch.setattr(authenticator, "KeystoneValidator", fake.validator)
    yield fake


@pytest.fixture
def keystone_mode(conf: Any, keystone: FakeKeystone) -> FakeKeystone:
    conf.set_override("strategy", "keystone", group="auth")
    return keystone
