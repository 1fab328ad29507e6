"""Default policy: operator, admin, composite (both tokens) and audit rules."""

from __future__ import annotations

import pytest

from agent import exception, policy
from tests.common import (OTHER_PROJECT, PROJECT, admin, auditor, make_context, member,
                          member_with_service, nobody, service_only)


def allowed(ctxt, method, **target):
    try:
        policy.authorize(ctxt, method, target or None)
    except exception.Forbidden:
        return False
    return True


@pytest.mark.usefixtures("conf")
class TestDefaults:
    def test_anyone_may_ask_health(self):
        assert allowed(nobody(), "health")

    def test_operator_acts_on_own_project_only(self):
        assert allowed(member(), "secret_get_value")
        assert not allowed(member(), "secret_get_value", project_id=OTHER_PROJECT)
        assert not allowed(nobody(), "secret_get_value")

    def test_admin_acts_on_any_project(self):
        assert allowed(admin(), "secret_get_value", project_id=OTHER_PROJECT)

    def test_initiator_data_get_is_admin_only(self):
        assert allowed(admin(), "initiator_data_get")
        assert not allowed(member(), "initiator_data_get")
        assert not allowed(member_with_service(), "initiator_data_get")

    @pytest.mark.parametrize("method", [
        "initiator_data_update", "volume_glance_metadata_set",
        "volume_glance_metadata_copy", "backup_metadata_export",
        "backup_metadata_import", "backup_metadata_delete"])
    def test_composite_needs_user_and_service_token_together(self, method):
        assert allowed(member_with_service(), method)
        assert not allowed(member(), method), "a user token alone is not enough"
        assert not allowed(service_only(PROJECT), method), "a service token alone is not enough"
        assert not allowed(admin(), method), "admin still needs a service token"
        assert not allowed(member_with_service(), method, project_id=OTHER_PROJECT)

    def test_audit_reads_service_accounts_and_writes_nothing(self):
        assert allowed(auditor(), "backup_metadata_get")
        for method in ("backup_metadata_export", "backup_metadata_import",
                       "backup_metadata_delete", "volume_glance_metadata_set"):
            assert not allowed(auditor(), method)

    def test_vendordata_is_for_services_or_admin(self):
        assert allowed(service_only(), "vendordata_get")
        assert allowed(admin(), "instance_boot_roles_set")
        assert not allowed(member(), "vendordata_get")

    def test_a_method_without_a_rule_is_refused(self):
        with pytest.raises(exception.Forbidden) as caught:
            policy.authorize(admin(), "drop_everything")
        assert caught.value.code == "forbidden"

    def test_every_method_has_a_documented_rule(self):
        names = {rule.name for rule in policy.list_rules()}
        assert {f"custos:{m}" for m in policy.METHOD_RULES} <= names


def test_roles_come_from_configuration(conf):
    conf.set_override("operator_roles", ["storage_operator"], group="auth")
    conf.set_override("service_roles", ["cinder"], group="auth")
    policy.reset()

    ok = make_context(PROJECT, ["storage_operator"], ["cinder"])
    old_names = make_context(PROJECT, ["member"], ["service"])

    assert allowed(ok, "volume_glance_metadata_set")
    assert not allowed(old_names, "volume_glance_metadata_set")


def test_an_override_file_replaces_a_default(conf, tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text('"custos:health": "role:admin"\n')
    conf.set_override("policy_file", str(policy_file), group="oslo_policy")
    policy.reset()

    assert allowed(admin(), "health")
    assert not allowed(nobody(), "health")


def test_check_takes_a_rule_name_with_or_without_its_prefix(conf):
    assert policy.check(auditor(), "audit")
    assert policy.check(auditor(), "rule:audit")
    assert not policy.check(member(), "rule:audit")
