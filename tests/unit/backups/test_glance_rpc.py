"""Glance metadata over RPC: who may write it, what is kept, what is told."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from agent import exception
from agent.backups import glance
from tests.common import (OTHER_PROJECT, PROJECT, admin, auditor, make_context, member,
                          member_with_service, nobody, service_only)

VOLUME = str(uuid.uuid4())
CLONE = str(uuid.uuid4())
LICENCE = "WIN-LICENCE-7f3a9c21d0e4"


def eventually(read: Callable[[], Any], expected: Any, timeout: float = 10) -> Any:
    """Read until ``expected`` shows (a cast lands later), or give up."""
    deadline = time.monotonic() + timeout
    while True:
        seen = read()
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def test_set_then_get_returns_what_was_set(harness):
    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                           {"image_id": "img-1", "license": LICENCE},
                                           wait=True)

    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {
        "image_id": "img-1", "license": LICENCE}


def test_set_overwrites_named_keys_and_keeps_the_others(harness):
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"a": "1", "b": "2"}, wait=True)

    harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"b": "3", "c": ""}, wait=True)

    assert harness.api.volume_glance_metadata_get(ctxt, VOLUME) == {"a": "1", "b": "3", "c": ""}


def test_set_as_a_cast_lands(harness):
    result = harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                                    {"k": "v"})

    assert result is None
    assert eventually(lambda: harness.api.volume_glance_metadata_get(member(), VOLUME),
                      {"k": "v"}) == {"k": "v"}


def test_get_of_a_volume_without_glance_metadata_is_empty(harness):
    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {}


@pytest.mark.parametrize("ctxt", [member(), admin(), service_only(), auditor(), nobody(),
                                  service_only(OTHER_PROJECT)],
                         ids=["user-only", "admin-user-only", "service-only", "auditor",
                              "nobody", "service-only-with-project"])
def test_one_token_alone_cannot_write_glance_metadata(harness, ctxt):
    with pytest.raises(exception.Forbidden):
        harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"license": LICENCE}, wait=True)
    with pytest.raises(exception.Forbidden):
        harness.api.volume_glance_metadata_copy(ctxt, VOLUME, CLONE, wait=True)

    assert harness.api.volume_glance_metadata_get(admin(), VOLUME) == {}
    assert harness.notifications("glance_metadata.set") == []


def test_admin_with_a_service_token_writes_in_its_own_project_only(harness):
    ctxt = admin(OTHER_PROJECT)
    ctxt.service_roles = ["service"]

    harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"k": "v"}, wait=True)

    assert harness.api.volume_glance_metadata_get(admin(OTHER_PROJECT), VOLUME) == {"k": "v"}
    assert harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), VOLUME) == {"k": "v"}
    assert harness.api.volume_glance_metadata_get(admin(), VOLUME) == {}
    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {}


def test_copy_replaces_the_destination_with_the_source(harness):
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"a": "1", "b": "2"}, wait=True)
    harness.api.volume_glance_metadata_set(ctxt, CLONE, {"b": "old", "stale": "x"}, wait=True)

    harness.api.volume_glance_metadata_copy(ctxt, VOLUME, CLONE, wait=True)

    assert harness.api.volume_glance_metadata_get(ctxt, CLONE) == {"a": "1", "b": "2"}
    assert harness.api.volume_glance_metadata_get(ctxt, VOLUME) == {"a": "1", "b": "2"}


def test_copy_from_a_volume_without_glance_metadata_clears_the_destination(harness):
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, CLONE, {"stale": "x"}, wait=True)

    harness.api.volume_glance_metadata_copy(ctxt, VOLUME, CLONE)

    assert eventually(lambda: harness.api.volume_glance_metadata_get(ctxt, CLONE), {}) == {}


def test_copy_onto_itself_changes_nothing(harness):
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"a": "1"}, wait=True)

    harness.api.volume_glance_metadata_copy(ctxt, VOLUME, VOLUME, wait=True)

    assert harness.api.volume_glance_metadata_get(ctxt, VOLUME) == {"a": "1"}


def test_notifications_name_keys_and_never_values(harness, captured_logs):
    ctxt = member_with_service()
    harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"license": LICENCE}, wait=True)
    harness.api.volume_glance_metadata_copy(ctxt, VOLUME, CLONE, wait=True)

    sent = harness.notifications("glance_metadata.set")

    assert [n["payload"]["volume_id"] for n in sent] == [VOLUME, CLONE]
    assert all(n["payload"]["keys"] == ["license"] for n in sent)
    assert sent[1]["payload"]["source_volume_id"] == VOLUME
    assert all(n["payload"]["project_id"] == ctxt.project_id for n in sent)
    assert LICENCE not in repr(harness.notifications())
    assert LICENCE not in captured_logs.text


BAD_INPUT = [
    ({"volume_id": "not-a-uuid", "metadata": {"k": "v"}}, "volume_id"),
    ({"volume_id": VOLUME, "metadata": ["k"]}, "metadata"),
    ({"volume_id": VOLUME, "metadata": {"k": 1}}, "metadata[k]"),
    ({"volume_id": VOLUME, "metadata": {"k": None}}, "metadata[k]"),
    ({"volume_id": VOLUME, "metadata": {"": "v"}}, "metadata.key"),
    ({"volume_id": VOLUME, "metadata": {"k" * 256: "v"}}, "metadata.key"),
    ({"volume_id": VOLUME, "metadata": {"k": "v" * (glance.MAX_VALUE_LENGTH + 1)}},
     "metadata[k]"),
    ({"volume_id": VOLUME, "metadata": {"k": "a\x00b"}}, "metadata[k]"),
    ({"volume_id": VOLUME, "metadata": {f"k{i}": "v" for i in range(glance.MAX_KEYS + 1)}},
     "metadata"),
    ({"volume_id": VOLUME, "metadata": {f"k{i}": "v" * 10000 for i in range(7)}},
     "metadata"),
    ({"volume_id": VOLUME}, "metadata"),
    ({"volume_id": VOLUME, "metadata": {}, "extra": 1}, "extra"),
]


@pytest.mark.parametrize("kwargs, field", BAD_INPUT)
def test_bad_input_is_named_and_changes_nothing(harness, kwargs, field):
    with pytest.raises(exception.InvalidInput) as caught:
        harness.api._call(member_with_service(), "volume_glance_metadata_set", **kwargs)

    assert caught.value.kwargs["field"] == field
    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {}
    assert harness.api.health(nobody())["database"] == "ok"


def test_keys_added_one_call_at_a_time_are_capped_too(harness):
    ctxt = member_with_service()
    for start in range(0, glance.MAX_KEYS, 64):
        harness.api.volume_glance_metadata_set(
            ctxt, VOLUME, {f"k{i}": "v" for i in range(start, start + 64)}, wait=True)

    with pytest.raises(exception.InvalidInput):
        harness.api.volume_glance_metadata_set(ctxt, VOLUME, {"one-more": "v"}, wait=True)

    assert len(harness.api.volume_glance_metadata_get(ctxt, VOLUME)) == glance.MAX_KEYS


def test_largest_value_round_trips(harness):
    value = "\U0001F512" * glance.MAX_VALUE_LENGTH

    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME, {"k": value},
                                           wait=True)

    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {"k": value}


def test_another_project_neither_reads_nor_overwrites_a_volumes_glance_metadata(harness):
    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                           {"license": LICENCE}, wait=True)
    stranger = member_with_service(OTHER_PROJECT)

    seen = harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), VOLUME)
    harness.api.volume_glance_metadata_set(stranger, VOLUME, {"license": "forged"}, wait=True)
    harness.api.volume_glance_metadata_copy(stranger, VOLUME, CLONE, wait=True)

    assert seen == {}
    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {"license": LICENCE}
    assert harness.api.volume_glance_metadata_get(admin(), VOLUME) == {"license": LICENCE}
    assert harness.api.volume_glance_metadata_get(admin(), CLONE) == {}
    assert harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), VOLUME) == {
        "license": "forged"}
    assert harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), CLONE) == {
        "license": "forged"}


def test_the_admin_reads_the_project_it_names(harness):
    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                           {"license": LICENCE}, wait=True)
    harness.api.volume_glance_metadata_set(member_with_service(OTHER_PROJECT), VOLUME,
                                           {"license": "theirs"}, wait=True)
    own_admin = admin(uuid.uuid4().hex)

    assert harness.api.volume_glance_metadata_get(own_admin, VOLUME) == {}
    assert harness.api.volume_glance_metadata_get(
        own_admin, VOLUME, project_id=PROJECT) == {"license": LICENCE}
    assert harness.api.volume_glance_metadata_get(
        own_admin, VOLUME, project_id=OTHER_PROJECT) == {"license": "theirs"}
    assert harness.api.volume_glance_metadata_get(
        own_admin, CLONE, project_id=PROJECT) == {}
    # A member names its own project or none.
    assert harness.api.volume_glance_metadata_get(
        member(), VOLUME, project_id=PROJECT) == {"license": LICENCE}


@pytest.mark.parametrize("ctxt", [
    pytest.param(member(OTHER_PROJECT), id="member of another project"),
    pytest.param(member_with_service(OTHER_PROJECT), id="another project with a service token"),
    pytest.param(service_only(OTHER_PROJECT), id="service token alone"),
    pytest.param(make_context(None, ["admin"], ["service"]), id="admin without a project"),
])
def test_only_the_admin_reads_a_project_it_names(harness, ctxt):
    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                           {"license": LICENCE}, wait=True)

    for volume_id in (VOLUME, CLONE):
        with pytest.raises(exception.Forbidden) as caught:
            harness.api.volume_glance_metadata_get(ctxt, volume_id, project_id=PROJECT)
        assert LICENCE not in str(caught.value) and volume_id not in str(caught.value)


def _ownerless_rows(volume_id: str, metadata: dict[str, str]) -> None:
    """Rows as written before glance metadata had an owner."""
    from db import api as db_api
    from db.models import VolumeGlanceMetadata

    with db_api.transaction() as session:
        session.add_all(VolumeGlanceMetadata(volume_id=volume_id, key=key, value=value,
                                             project_id=None)
                        for key, value in metadata.items())


def test_rows_without_an_owner_are_the_admins_alone(harness):
    _ownerless_rows(VOLUME, {"license": LICENCE})
    writer = member_with_service(OTHER_PROJECT)

    seen = harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), VOLUME)
    harness.api.volume_glance_metadata_set(writer, VOLUME, {"license": "forged"}, wait=True)
    harness.api.volume_glance_metadata_copy(writer, VOLUME, CLONE, wait=True)

    assert seen == {}
    assert harness.api.volume_glance_metadata_get(admin(), VOLUME) == {"license": LICENCE}
    assert harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), CLONE) == {
        "license": "forged"}


def test_the_first_writer_of_a_volume_id_claims_nothing(harness):
    squatter = member_with_service(OTHER_PROJECT)
    harness.api.volume_glance_metadata_set(squatter, VOLUME, {"license": "squat"}, wait=True)

    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                           {"license": LICENCE}, wait=True)

    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {"license": LICENCE}
    assert harness.api.volume_glance_metadata_get(member(OTHER_PROJECT), VOLUME) == {
        "license": "squat"}


@pytest.mark.parametrize("roles", [["admin"], ["member"], ["admin", "member"]])
def test_a_context_without_a_project_neither_reads_nor_writes(harness, roles):
    harness.api.volume_glance_metadata_set(member_with_service(), VOLUME,
                                           {"license": LICENCE}, wait=True)
    _ownerless_rows(CLONE, {"license": LICENCE})
    projectless = make_context(None, roles, ["service"])

    for volume_id in (VOLUME, CLONE):
        with pytest.raises(exception.Forbidden):
            harness.api.volume_glance_metadata_get(projectless, volume_id)
        with pytest.raises(exception.Forbidden):
            harness.api.volume_glance_metadata_set(projectless, volume_id,
                                                   {"license": "forged"}, wait=True)
    with pytest.raises(exception.Forbidden):
        harness.api.volume_glance_metadata_copy(projectless, VOLUME, CLONE, wait=True)

    assert harness.api.volume_glance_metadata_get(member(), VOLUME) == {"license": LICENCE}
    assert harness.api.volume_glance_metadata_get(admin(), CLONE) == {"license": LICENCE}
