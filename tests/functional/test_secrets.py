"""libvirt's secret scenarios against the real agent over RabbitMQ."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import uuid as uuid_lib
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent import exception
from tests.common import OTHER_PROJECT, PROJECT, member
from tests.functional.agentproc import run_script, script

VOLUME_ID = str(uuid_lib.uuid4())


def _leaked(proc, *values: bytes) -> list[str]:
    text = proc.log()
    found = []
    for value in values:
        for form in (value.decode(), base64.b64encode(value).decode()):
            if form in text:
                found.append(form)
    return found


def test_libvirt_scenarios_over_the_bus(in_process_agent, api):
    proc = in_process_agent()
    ctxt = member()

    # 1. An encrypted volume: the passphrase is generated, kept, fetched later.
    generated = api.secret_generate(ctxt, "volume", VOLUME_ID)
    found = api.secret_lookup_by_usage(ctxt, "volume", VOLUME_ID)
    passphrase = api.secret_get_value(ctxt, found)
    assert found == generated and len(passphrase) == 32
    assert api.secret_get_value(member(), generated) == passphrase

    # 2. A Ceph client key set by hand, defined from XML.
    ceph_key = b"AQBnX" + secrets.token_hex(16).encode()
    ceph = api.secret_define_xml(ctxt, "<secret ephemeral='no' private='no'>"
                                       "<description>Ceph admin</description>"
                                       "<usage type='ceph'><name>client.admin secret</name>"
                                       "</usage></secret>")
    api.secret_set_value(ctxt, ceph, ceph_key)
    assert api.secret_get_value(ctxt, ceph) == ceph_key
    assert "<description>Ceph admin</description>" in api.secret_get_xml_desc(ctxt, ceph)

    # 3. An ephemeral secret on this agent: defined, used, undefined.
    eph_value = b"tls-" + secrets.token_hex(16).encode()
    eph = api.secret_define_xml(ctxt, "<secret ephemeral='yes' private='yes'>"
                                      "<usage type='tls'><name>migration</name></usage>"
                                      "</secret>", server=proc.host)
    api.secret_set_value(ctxt, eph, eph_value, server=proc.host)
    with pytest.raises(exception.SecretPrivate):
        api.secret_get_value(ctxt, eph, server=proc.host)
    assert api.secret_list(ctxt, ephemeral=True, server=proc.host) == [{
        "uuid": eph, "usage_type": "tls", "usage_id": "migration", "ephemeral": True,
        "private": True, "description": None}]
    with pytest.raises(exception.SecretUsageConflict) as caught:
        api.secret_generate(ctxt, "tls", "migration", server=proc.host)
    assert caught.value.kwargs["holder"] == eph
    api.secret_undefine(ctxt, eph, server=proc.host)
    # Refusals about it named neither its UUID nor its usage in the log.
    assert "migration" not in proc.log() and eph not in proc.log()
    with pytest.raises(exception.SecretNotFound):
        api.secret_lookup_by_usage(ctxt, "tls", "migration", server=proc.host)

    # Other projects see none of it; conflicts name the holder.
    with pytest.raises(exception.SecretNotFound):
        api.secret_get_value(member(OTHER_PROJECT), ceph)
    with pytest.raises(exception.SecretUsageConflict) as caught:
        api.secret_generate(ctxt, "ceph", "client.admin secret")
    assert caught.value.kwargs["holder"] == ceph
    assert {s["uuid"] for s in api.secret_list(ctxt)} == {generated, ceph}

    assert _leaked(proc, passphrase, ceph_key, eph_value) == []


def test_cli_reads_values_from_standard_input_and_files(in_process_agent, tmp_path):
    proc = in_process_agent()
    value = b"cli-" + secrets.token_hex(16).encode()
    xml = tmp_path / "secret.xml"
    xml.write_text("<secret><usage type='iscsi'><target>iqn.2010-10.org.example:t1</target>"
                   "</usage></secret>")
    base = [script("custos"), "--config-file", str(proc.config), "--project-id", PROJECT,
            "--roles", "member"]

    uuid = json.loads(run_script("custos", proc.config, "--project-id", PROJECT, "--roles",
                                 "member", "secret", "define", "--file", str(xml)).stdout)
    subprocess.run(base + ["secret", "set-value", uuid], input=value, check=True,
                   capture_output=True, timeout=60)
    got = run_script("custos", proc.config, "--project-id", PROJECT, "--roles", "member",
                     "secret", "get-value", uuid)
    missing = run_script("custos", proc.config, "--project-id", PROJECT, "--roles", "member",
                         "secret", "lookup", "iscsi", "iqn.other", check=False)

    assert base64.b64decode(json.loads(got.stdout)) == value
    assert missing.returncode == 1
    assert missing.stderr.startswith("custos: secret_not_found: ")
    assert _leaked(proc, value) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_rotate_master_while_the_agent_serves(in_process_agent, api, tmp_path, kind, request):
    if kind == "postgresql":
        database_url = request.getfixturevalue("postgresql_url")
    else:
        database_url = f"sqlite:///{tmp_path / 'custos.sqlite'}"
    proc = in_process_agent(database_url=database_url)
    ctxt = member()
    values: dict[str, bytes] = {}
    for index in range(40):
        uuid = api.secret_define_xml(ctxt, "<secret><usage type='ceph'><name>client.%d"
                                           "</name></usage></secret>" % index)
        values[uuid] = secrets.token_hex(16).encode()
        api.secret_set_value(ctxt, uuid, values[uuid])
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        before = set(conn.execute(sa.text("SELECT DISTINCT master_key_id FROM secrets")).scalars())

    # Callers keep reading and writing while the master key changes.
    stop = threading.Event()
    failures: list[BaseException] = []
    served = [0]

    def keep_serving() -> None:
        try:
            while not stop.is_set():
                for uuid, value in list(values.items()):
                    assert api.secret_get_value(ctxt, uuid) == value
                    served[0] += 1
                fresh = api.secret_generate(ctxt, "vtpm", "vm-%d" % served[0])
                values[fresh] = api.secret_get_value(ctxt, fresh)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    worker = threading.Thread(target=keep_serving)
    worker.start()
    try:
        run_script("custos-manage", proc.config, "keys", "stage")
        output = run_script("custos-manage", proc.config, "keys", "rotate-master").stdout
        # custos-manage logs to standard output too; its JSON starts at "{".
        result = json.loads(output[output.index("{\n"):] if not output.startswith("{")
                            else output)
    finally:
        stop.set()
        worker.join(60)

    assert failures == [] and served[0] > 0
    assert result["retired_key_id"] in before and result["master_key_id"] not in before
    with engine.connect() as conn:
        after = set(conn.execute(sa.text("SELECT DISTINCT master_key_id FROM secrets")).scalars())
    engine.dispose()
    assert after == {result["master_key_id"]}
    key_file = Path(proc.sections["DEFAULT"]["state_path"]) / "master.key"
    assert not Path(str(key_file) + ".previous").exists()
    for uuid, value in values.items():
        assert api.secret_get_value(ctxt, uuid) == value
    assert _leaked(proc, *values.values()) == []
