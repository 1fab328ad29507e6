"""Parsing ``[vendordata] targets``."""

from __future__ import annotations

import pytest

from agent import exception
from agent.vendordata.targets import Target, parse_targets


def test_entries_become_targets_in_order():
    given = ["hello@http://127.0.0.1:9000/", "b@https://vd.example.org/v1"]

    assert parse_targets(given) == [
        Target("hello", "http://127.0.0.1:9000/"),
        Target("b", "https://vd.example.org/v1"),
    ]


def test_everything_after_the_first_at_is_the_url():
    [target] = parse_targets(["vd@http://user:pw@127.0.0.1:9000/x@y"])

    assert target.name == "vd"
    assert target.url == "http://user:pw@127.0.0.1:9000/x@y"


def test_no_targets():
    assert parse_targets([]) == []


@pytest.mark.parametrize("entry", [
    "http://127.0.0.1:9000/",  # no name: "http://..." has no '@'
    "@http://127.0.0.1:9000/",
    "  @http://127.0.0.1:9000/",
    "name@",
    "name@ftp://127.0.0.1/",
    "name@http://",
    "name@http:///path",
    "name@127.0.0.1:9000",
    "name@http://127.0.0.1:99999/",
    "name@http://127.0.0.1 :9000/",
    "",
])
def test_malformed_entry_is_a_configuration_error(entry):
    with pytest.raises(exception.ConfigurationError):
        parse_targets([entry])


def test_repeated_name_is_a_configuration_error():
    with pytest.raises(exception.ConfigurationError) as exc:
        parse_targets(["a@http://127.0.0.1:1/", "a@http://127.0.0.1:2/"])

    assert "'a'" in str(exc.value)


def test_errors_do_not_echo_urls_with_credentials():
    with pytest.raises(exception.ConfigurationError) as exc:
        parse_targets(["a@ftp://user:pw-secret@host/"])

    assert "pw-secret" not in str(exc.value)


def test_repr_hides_the_url():
    assert "pw" not in repr(Target("a", "http://u:pw@h/"))
