"""One log record is one line, whatever text a caller slipped into it."""

from __future__ import annotations

import io
import logging

import pytest
from oslo_config import cfg
from oslo_log import formatters

from agent import log as agent_log
from agent.context import RequestContext

FORGED = "\n2026-01-01 00:00:00.000 1 ERROR agent FORGED\x1b[2K"


@pytest.fixture
def logger():
    """A logger writing through oslo.log's formatter, protected as the agent's handlers are."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatters.ContextFormatter(project="custos", version="1",
                                                     config=cfg.CONF))
    agent_log.protect(handler)
    log = logging.getLogger("custos-test-escapes")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)


def test_escape_controls_names_each_control_character():
    assert agent_log.escape_controls("a\nb\r\tc\x1b[0m\x00\x85\u2028") == \
        "a\\nb\\r\\tc\\x1b[0m\\x00\\x85\\u2028"
    assert agent_log.escape_controls("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert agent_log.escape_controls("plain é ü 日本") == "plain é ü 日本"


def test_arguments_and_context_fields_come_out_on_one_line(logger):
    log, stream = logger
    ctxt = RequestContext(request_id="req-1" + FORGED, user_id="u" + FORGED,
                          project_id="p" + FORGED, overwrite=False)

    log.info("refused %s and %r", "usage" + FORGED, "repr" + FORGED, extra={"context": ctxt})

    text = stream.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text
    assert "req-1\\n2026-01-01" in text and "u\\n2026" in text and "p\\n2026" in text
    assert "refused usage\\n2026-01-01 00:00:00.000 1 ERROR agent FORGED\\x1b[2K" in text


class DriverFailed(Exception):
    """An exception whose message quotes a caller's text."""


def test_an_exception_message_cannot_start_a_line_of_its_own(logger):
    log, stream = logger
    quoted = "bad\x1b[8m value" + FORGED.replace("FORGED", "FAKE")
    try:
        try:
            raise KeyError("inner\nKEY")
        except KeyError as inner:
            raise DriverFailed(quoted) from inner
    except DriverFailed:
        log.exception("failed")
        log.warning("while handling")

    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if "FAKE" in line and "\\n2026" not in line]
    assert not [line for line in lines if line.startswith("KEY")]
    assert "\x1b" not in stream.getvalue()
    assert any("Traceback" in line for line in lines)
    assert any(line.endswith("DriverFailed: bad\\x1b[8m value\\n2026-01-01 00:00:00.000 1 ERROR agent "
                             "FAKE\\x1b[2K") for line in lines)
    # oslo.log sums up the exception being handled with its first line.
    assert any(line.endswith("while handling: tests.unit.test_log_escapes.DriverFailed: "
                             "bad\\x1b[8m value") for line in lines)


def test_the_record_is_left_for_the_next_handler(logger):
    log, _ = logger
    records: list[logging.LogRecord] = []
    keeper = logging.Handler()
    keeper.emit = records.append  # type: ignore[method-assign]
    log.addHandler(keeper)
    try:
        log.info("text %s", "x\ny")
    finally:
        log.removeHandler(keeper)

    assert records[0].getMessage() == "text x\ny"


def test_the_agents_own_lines_are_kept_when_it_asks(logger):
    log, stream = logger

    log.info("report follows\n%s", "line 1\nline 2\x1b[31m", extra=agent_log.KEEP_LINES)

    assert stream.getvalue().splitlines()[1:] == ["line 1", "line 2\\x1b[31m"]
