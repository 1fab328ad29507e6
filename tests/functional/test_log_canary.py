"""The log canary finds a leak, and a real agent's log holds none (SPEC §4).

Every functional call carries known tokens, and the client remembers the
secret values and CHAP passwords that passed through it
(:mod:`tests.functional.canary`). The session's ``log_canary`` fixture
searches every agent log (written at DEBUG) and every notification for
them when the session ends; these tests show that the search finds a
planted value, and drive one agent through the sensitive methods and
search its log and notifications at once.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid

import pytest

from agent import exception
from tests.common import member
from tests.functional.canary import CANARY, CANARY_TOKEN, Canary


def test_the_canary_finds_a_value_planted_in_a_log(tmp_path):
    canary = Canary()
    value = secrets.token_bytes(24)
    canary.remember(base64.b64encode(value).decode())
    log = tmp_path / "agent.log"
    log.write_text(f"DEBUG something {value.hex()} happened\n")
    canary.watch_agent(log, tmp_path / "absent.key")

    assert len(canary.leaks()) == 1
    assert value.hex() not in canary.leaks()[0]


def test_no_sensitive_value_reached_a_log_line_or_notification(start_agent, api):
    proc = start_agent(host="agent-canary")
    value = b"canary-value-" + secrets.token_hex(16).encode()
    xml = ("<secret ephemeral='no' private='no'><usage type='ceph'>"
           f"<name>client.canary-{uuid.uuid4().hex[:8]}</name></usage></secret>")
    secret = api.secret_define_xml(member(), xml)
    api.secret_set_value(member(), secret, value)
    assert api.secret_get_value(member(), secret) == value
    generated = api.secret_generate(member(), "ceph", f"client.gen-{uuid.uuid4().hex[:8]}")
    api.secret_get_value(member(), generated)
    with pytest.raises(exception.InvalidInput):
        api._call(member(), "secret_set_value", uuid="not-a-uuid",
                  value=base64.b64encode(value).decode())
    deadline = time.monotonic() + 20
    while not any(n["event_type"] == "secret.value_change" and
                  n["payload"].get("uuid") == secret for n in CANARY.notifications):
        assert time.monotonic() < deadline, "secret.value_change never arrived"
        time.sleep(0.1)
    assert proc.stop() == 0

    assert CANARY_TOKEN in CANARY.sensitive()
    assert proc.log_path in CANARY.log_files
    assert CANARY.leaks() == []
