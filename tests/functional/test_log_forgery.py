"""A caller cannot write lines of its own into the agent's log (SPEC §4, 1.2).

Context fields and arguments are the caller's text. The agent logs some
of them (the request id and the user's identity on every line of a
request, a refused usage in the refusal's message); a newline in them
would start a line that looks like the agent's own, and a terminal
escape would rewrite what an operator sees with ``tail -f``. The tests
send such text to a real ``custos-agent`` and read its log file.
"""

from __future__ import annotations

import re
import uuid

import pytest

from agent import exception
from tests.common import member

# What a forger would write: a fresh line that looks like the agent's own,
# a carriage return that hides the start of the line, and terminal escapes.
FORGED = "2026-01-01 00:00:00.000 1 INFO agent.dispatch FORGED-{}"
ESCAPES = "\r\x1b[2K\x1b[31m\x07\x08\x0b\x0c\x7f\x85\u2028"

# Any control character (C0 but the newline that ends a line, DEL, C1) or
# Unicode line separator left in a log line.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _forgery(label: str) -> str:
    return f"{label}\n{FORGED.format(label)}{ESCAPES}"


@pytest.fixture
def forger(start_agent):
    return start_agent(host="agent-forgery", auth={"strategy": "trusted"})


def test_newlines_and_escapes_from_a_caller_never_start_or_colour_a_log_line(forger, api):
    usage = _forgery("usage")
    ctxt = member(request_id=_forgery("req"), global_request_id=_forgery("greq"),
                  user_id=_forgery("user"), user_name=_forgery("name"))
    ctxt.project_id = _forgery("project")

    api.secret_generate(ctxt, "ceph", usage)
    with pytest.raises(exception.SecretUsageConflict):
        api.secret_generate(ctxt, "ceph", usage)
    with pytest.raises(exception.UnknownMethod):
        api._call(ctxt, f"no_such_{uuid.uuid4().hex[:6]}\n{FORGED.format('method')}")
    assert forger.stop() == 0
    log = forger.log()

    forged = [line for line in log.splitlines()
              if line.startswith(FORGED[:23]) or re.search(r"(?<!\\n)" + FORGED[:10], line)]
    assert forged == []
    assert [m.group() for m in CONTROL.finditer(log)] == []
    # The text is kept, escaped, on the line of the request that carried it.
    refused = [line for line in log.splitlines() if "secret_generate refused" in line]
    assert len(refused) == 1
    for label in ("usage", "req", "user", "project"):
        assert f"{label}\\n{FORGED.format(label)}\\r\\x1b[2K" in refused[0], label
    assert "\\u2028" in refused[0]

