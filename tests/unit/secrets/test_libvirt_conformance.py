"""Where libvirt 9.0's secret driver draws the line, custos draws it too."""

from __future__ import annotations

import uuid as uuid_lib

import pytest

from agent import exception
from tests.common import member


def _defined(harness) -> str:
    volume = str(uuid_lib.uuid4())
    xml = (f"<secret ephemeral='no' private='no'><usage type='volume'>"
           f"<volume>{volume}</volume></usage></secret>")
    return harness.api.secret_define_xml(member(), xml)


def test_an_empty_value_is_refused_and_the_old_value_kept(harness):
    uuid = _defined(harness)
    harness.api.secret_set_value(member(), uuid, b"before")

    with pytest.raises(exception.InvalidInput) as caught:
        harness.api.secret_set_value(member(), uuid, b"")

    assert caught.value.kwargs["field"] == "value"
    assert harness.api.secret_get_value(member(), uuid) == b"before"


def test_an_empty_value_leaves_a_secret_without_one_as_it_was(harness):
    uuid = _defined(harness)

    with pytest.raises(exception.InvalidInput):
        harness.api.secret_set_value(member(), uuid, b"")

    with pytest.raises(exception.SecretNoValue):
        harness.api.secret_get_value(member(), uuid)
    assert not harness.notifications("secret.value_change")


@pytest.mark.parametrize("form", [str.upper, lambda u: u.replace("-", ""),
                                  lambda u: u.replace("-", "").upper()])
def test_the_36_character_and_32_digit_forms_name_the_secret(harness, form):
    uuid = _defined(harness)
    harness.api.secret_set_value(member(), uuid, b"v")

    assert harness.api.secret_get_value(member(), form(uuid)) == b"v"


@pytest.mark.parametrize("form", [
    lambda u: "{" + u + "}",
    lambda u: "urn:uuid:" + u,
    lambda u: u + "\n",
    lambda u: " " + u,
    lambda u: u[:8] + u[9:],
    lambda u: u.replace("-", "")[:31],
])
def test_other_uuid_spellings_are_refused_naming_the_field(harness, form):
    uuid = _defined(harness)
    harness.api.secret_set_value(member(), uuid, b"v")

    for call in (lambda: harness.api.secret_get_value(member(), form(uuid)),
                 lambda: harness.api.secret_set_value(member(), form(uuid), b"w"),
                 lambda: harness.api.secret_undefine(member(), form(uuid))):
        with pytest.raises(exception.InvalidInput) as caught:
            call()
        assert caught.value.kwargs["field"] == "uuid"
    assert harness.api.secret_get_value(member(), uuid) == b"v"
