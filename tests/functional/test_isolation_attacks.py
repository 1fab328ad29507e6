"""A project's caller trying to reach across the tenant boundary, over RabbitMQ.

Each test plays one attack against a real ``custos-agent`` and checks
both that it is refused and that the victim's secret, credentials or
metadata are exactly as before: value, owner and usage.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from agent import exception
from tests.common import OTHER_PROJECT, PROJECT, admin, make_context, member
from tests.common import member_with_service, service_only

VICTIM_HOST = "iqn.1993-08.org.debian:01:compute-victim"
INVENTED = "iqn.2026-11.org.attacker:01:nowhere"
LVM = {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
       "target_portal": "192.0.2.10:3260", "target_iqn_prefix": "iqn.2010-10.org.example"}
ADMIN_PROJECT = "adadadadadad4ada8adadadadadadad0"

p1 = member(PROJECT)
p2 = member(OTHER_PROJECT)
p2_composite = member_with_service(OTHER_PROJECT)
cinder = service_only()


def chap_agent(start_agent, database_url=None):
    return start_agent(database_url=database_url, DEFAULT={"enabled_backends": "lvm-1"},
                       **{"lvm-1": LVM})


def attach(api, ctx, initiator, volume_id=None):
    return api.initialize_connection(ctx, {"id": volume_id or str(uuid.uuid4())},
                                     {"initiator": initiator, "host": "compute"})["data"]


def ceph_xml(name, uuid_=None, private=False, description=None):
    parts = ["<secret ephemeral='no' private='%s'>" % ("yes" if private else "no")]
    if uuid_:
        parts.append(f"<uuid>{uuid_}</uuid>")
    if description:
        parts.append(f"<description>{description}</description>")
    parts.append(f"<usage type='ceph'><name>{name}</name></usage></secret>")
    return "".join(parts)


def test_1_a_tenant_cannot_attach_to_read_another_hosts_chap_credentials(start_agent, api):
    proc = chap_agent(start_agent)
    before = attach(api, cinder, VICTIM_HOST)

    for attacker in (p2, make_context(OTHER_PROJECT, ["reader"]), make_context(None, ["member"])):
        with pytest.raises(exception.Forbidden) as caught:
            attach(api, attacker, VICTIM_HOST)
        assert before["auth_password"] not in str(caught.value)
        with pytest.raises(exception.Forbidden):
            api.terminate_connection(attacker, {"id": str(uuid.uuid4())},
                                     {"initiator": VICTIM_HOST, "host": "compute"})

    after = attach(api, cinder, VICTIM_HOST)
    assert (after["auth_username"], after["auth_password"]) == (
        before["auth_username"], before["auth_password"])
    assert api.initiator_data_get(admin(), VICTIM_HOST, "lvm") == {
        "chap_username": before["auth_username"]}
    assert before["auth_password"] not in proc.log()


def test_2_a_secret_uuid_written_into_initiator_data_leads_nowhere(start_agent, api):
    chap_agent(start_agent)
    victim_value = b"p1-ceph-key-AQBnX2d1c3Rvcw"
    victim = api.secret_define_xml(p1, ceph_xml("client.p1", private=True,
                                                description="p1 private"))
    api.secret_set_value(p1, victim, victim_value)
    victim_xml = api.secret_get_xml_desc(p1, victim)
    host_before = attach(api, cinder, VICTIM_HOST)
    known = api.secret_define_xml(p2, ceph_xml("client.p2"))
    api.secret_set_value(p2, known, b"attacker-knows-this")

    # Point an invented initiator at p1's secret, and the real host at p2's.
    for initiator, target in ((INVENTED, victim), (VICTIM_HOST, known)):
        with pytest.raises(exception.InvalidInput) as caught:
            api.initiator_data_update(p2_composite, initiator, "lvm",
                                      set_values={"chap_secret_uuid": target})
        assert caught.value.kwargs["field"] == "set_values.chap_secret_uuid"
    with pytest.raises(exception.InvalidInput) as caught:
        api.initiator_data_update(p2_composite, VICTIM_HOST, "lvm",
                                  remove_values=["chap_username"])
    assert caught.value.kwargs["field"] == "remove_values.chap_username"
    invented = attach(api, p2_composite, INVENTED)
    host_after = attach(api, cinder, VICTIM_HOST)

    assert invented["auth_password"].encode() != victim_value
    assert (host_after["auth_username"], host_after["auth_password"]) == (
        host_before["auth_username"], host_before["auth_password"])
    assert host_after["auth_password"] != "attacker-knows-this"
    # The victim's secret: same definition, owner and usage; still private.
    assert api.secret_get_xml_desc(p1, victim) == victim_xml
    assert api.secret_lookup_by_usage(p1, "ceph", "client.p1") == victim
    with pytest.raises(exception.SecretPrivate):
        api.secret_get_value(p1, victim)
    with pytest.raises(exception.SecretNotFound):
        api.secret_get_xml_desc(p2, victim)
    # The CHAP secrets themselves are out of every project's reach.
    for ctx in (p2, admin(), admin(OTHER_PROJECT)):
        listed = api.secret_list(ctx, usage_type="iscsi")
        assert listed == []
        with pytest.raises(exception.SecretNotFound):
            api.secret_lookup_by_usage(ctx, "iscsi", VICTIM_HOST)


def _agent_db(url):
    return sa.create_engine(url, future=True)


def test_3_a_context_without_a_project_and_a_first_writer_claim_no_glance_metadata(
        start_agent, api, postgresql_url):
    start_agent(database_url=postgresql_url)
    volume, legacy = str(uuid.uuid4()), str(uuid.uuid4())
    licence = {"license": "WIN-LICENCE-p1", "image_id": "img-p1"}
    api.volume_glance_metadata_set(member_with_service(PROJECT), volume, licence, wait=True)
    engine = _agent_db(postgresql_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO volume_glance_metadata (volume_id, key, value, project_id, created_at)"
            " VALUES (:v, 'license', 'ownerless-licence', NULL, now())"), {"v": legacy})

    # Domain- or system-scoped tokens: operator roles, no project.
    for roles in (["member"], ["admin"], ["admin", "member"]):
        projectless = make_context(None, roles, ["service"])
        for target in (volume, legacy):
            with pytest.raises(exception.Forbidden):
                api.volume_glance_metadata_get(projectless, target)
            with pytest.raises(exception.Forbidden):
                api.volume_glance_metadata_set(projectless, target, {"license": "forged"},
                                               wait=True)
            with pytest.raises(exception.Forbidden):
                api.volume_glance_metadata_copy(projectless, target, str(uuid.uuid4()),
                                                wait=True)
    # Another project writes the same ids: its own rows, nobody else's.
    api.volume_glance_metadata_set(p2_composite, volume, {"license": "forged"}, wait=True)
    api.volume_glance_metadata_set(p2_composite, legacy, {"license": "forged"}, wait=True)
    # The first writer of a new id claims nothing either.
    fresh = str(uuid.uuid4())
    api.volume_glance_metadata_set(p2_composite, fresh, {"license": "squat"}, wait=True)
    api.volume_glance_metadata_set(member_with_service(PROJECT), fresh, licence, wait=True)

    assert api.volume_glance_metadata_get(p1, volume) == licence
    assert api.volume_glance_metadata_get(p1, fresh) == licence
    assert api.volume_glance_metadata_get(p1, legacy) == {}
    assert api.volume_glance_metadata_get(p2, volume) == {"license": "forged"}
    assert api.volume_glance_metadata_get(admin(ADMIN_PROJECT), legacy) == {
        "license": "ownerless-licence"}
    # The admin reads the project it names; a member of P2 naming P1 reads nothing.
    assert api.volume_glance_metadata_get(admin(ADMIN_PROJECT), volume, project_id=PROJECT) \
        == licence
    assert api.volume_glance_metadata_get(admin(ADMIN_PROJECT), volume,
                                          project_id=OTHER_PROJECT) == {"license": "forged"}
    with pytest.raises(exception.Forbidden) as refused:
        api.volume_glance_metadata_get(p2, volume, project_id=PROJECT)
    assert "WIN-LICENCE" not in str(refused.value) and volume not in str(refused.value)
    with engine.connect() as conn:
        owners = dict(conn.execute(sa.text(
            "SELECT project_id, value FROM volume_glance_metadata"
            " WHERE volume_id = :v AND key = 'license'"), {"v": volume}).all())
        ownerless = conn.execute(sa.text(
            "SELECT value FROM volume_glance_metadata WHERE volume_id = :v"
            " AND project_id IS NULL"), {"v": legacy}).scalars().all()
    engine.dispose()
    assert owners == {PROJECT: "WIN-LICENCE-p1", OTHER_PROJECT: "forged"}
    assert ownerless == ["ownerless-licence"]


def test_4_a_squatted_uuid_never_receives_the_admins_key(start_agent, api, postgresql_url):
    start_agent(database_url=postgresql_url)
    cloud = admin(ADMIN_PROJECT)
    squatted = str(uuid.uuid4())  # a UUID an install guide fixes
    api.secret_define_xml(p2, ceph_xml("client.cinder", squatted, description="p2's"))
    api.secret_set_value(p2, squatted, b"p2-value")
    p2_xml = api.secret_get_xml_desc(p2, squatted)

    with pytest.raises(exception.SecretOwnedElsewhere) as defined:
        api.secret_define_xml(cloud, ceph_xml("client.cinder", squatted,
                                              description="Ceph key"))
    with pytest.raises(exception.SecretOwnedElsewhere) as valued:
        api.secret_set_value(cloud, squatted, b"AQB-the-real-ceph-key")
    with pytest.raises(exception.SecretNotFound):
        api.secret_define_xml(p1, ceph_xml("client.cinder", squatted))
    with pytest.raises(exception.SecretNotFound):
        api.secret_set_value(p1, squatted, b"p1-overwrite")
    # Usages are per project: each holds its own client.cinder.
    mine = api.secret_define_xml(cloud, ceph_xml("client.cinder", description="Ceph key"))
    api.secret_set_value(cloud, mine, b"AQB-the-real-ceph-key")
    p1_own = api.secret_define_xml(p1, ceph_xml("client.cinder"))
    with pytest.raises(exception.SecretUsageConflict) as conflict:
        api.secret_define_xml(p1, ceph_xml("client.cinder"))

    for error in (defined.value, valued.value):
        assert OTHER_PROJECT not in error.msg and "p2" not in error.msg
    assert conflict.value.kwargs["holder"] == p1_own
    assert squatted not in conflict.value.msg and mine not in conflict.value.msg
    assert api.secret_lookup_by_usage(cloud, "ceph", "client.cinder") == mine
    assert api.secret_lookup_by_usage(p1, "ceph", "client.cinder") == p1_own
    assert api.secret_lookup_by_usage(p2, "ceph", "client.cinder") == squatted
    assert api.secret_lookup_by_usage(cloud, "ceph", "client.cinder",
                                      project_id=OTHER_PROJECT) == squatted
    with pytest.raises(exception.Forbidden):
        api.secret_lookup_by_usage(p1, "ceph", "client.cinder", project_id=OTHER_PROJECT)
    # The victim's row: value, owner and usage as before.
    assert api.secret_get_value(p2, squatted) == b"p2-value"
    assert api.secret_get_xml_desc(p2, squatted) == p2_xml
    assert [s["uuid"] for s in api.secret_list(p2)] == [squatted]
    assert api.secret_get_value(cloud, mine) == b"AQB-the-real-ceph-key"
