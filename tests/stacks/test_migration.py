"""migration stack: DMS instance, endpoints with Secrets Manager and TLS, forward and fallback tasks."""

from __future__ import annotations

import json

import pytest

from lib.config import CONFIG_DIR
from tests.support.configs import edited


def _endpoints(synthesized):
    return synthesized.resources("migration", "aws_dms_endpoint")


def _tasks(synthesized):
    return synthesized.resources("migration", "aws_dms_replication_task")


def test_replication_instance_private_encrypted_and_upgraded(synthesized):
    (instance,) = synthesized.resources("migration", "aws_dms_replication_instance").values()
    assert instance["publicly_accessible"] is False
    assert "aws_kms_keydata-key" in instance["kms_key_arn"]
    assert instance["multi_az"] is False, "dev config turns multi-AZ off"
    assert instance["engine_version"] == "3.5.4"
    assert instance["auto_minor_version_upgrade"] is True
    (group,) = synthesized.resources("migration", "aws_dms_replication_subnet_group").values()
    assert "private-" in json.dumps(group["subnet_ids"])


def test_account_roles_live_in_the_account_stack_with_the_names_dms_requires(synthesized):
    roles = synthesized.resources("account", "aws_iam_role")
    assert {role["name"] for role in roles.values()} == {"dms-vpc-role", "dms-cloudwatch-logs-role"}
    migration_roles = {role["name"] for role in synthesized.resources("migration", "aws_iam_role").values()}
    assert not migration_roles & {"dms-vpc-role", "dms-cloudwatch-logs-role"}, "a routine destroy would delete them"


def test_account_stack_waits_for_iam_propagation_after_attaching_the_policies(synthesized):
    (delay,) = synthesized.resources("account", "terraform_data").values()
    assert delay["provisioner"][0]["local-exec"]["command"].startswith("sleep ")
    assert all("aws_iam_role_policy_attachment" in trigger for trigger in delay["triggers_replace"])
    assert len(delay["triggers_replace"]) == 2


def test_migration_reads_the_account_roles_so_a_plan_without_them_stops(synthesized):
    reads = synthesized.data("migration", "aws_iam_role")
    assert {read["name"] for read in reads.values()} == {"dms-vpc-role", "dms-cloudwatch-logs-role"}
    (subnets,) = synthesized.resources("migration", "aws_dms_replication_subnet_group").values()
    assert all(dependency.startswith("data.aws_iam_role.") for dependency in subnets["depends_on"])


def test_no_account_stack_when_the_account_has_the_roles(synthesize):
    variant = synthesize(edited(r"^create_account_roles = true.*$", "create_account_roles = false"))
    assert "account-dev" not in variant.stacks
    assert variant.resources("migration", "aws_dms_replication_instance")
    assert variant.data("migration", "aws_iam_role"), "the roles must still exist"


@pytest.mark.parametrize("name", ["onprem-source", "aurora-target", "aurora-source", "onprem-target"])
def test_endpoints_use_secrets_manager_and_tls_with_no_credentials(synthesized, name):
    endpoint = _endpoints(synthesized)[name]
    assert endpoint["ssl_mode"] == "verify-full" and endpoint["certificate_arn"].startswith("${aws_dms_certificate.")
    assert endpoint["secrets_manager_arn"] and endpoint["secrets_manager_access_role_arn"]
    for credential in ("username", "password", "server_name", "port"):
        assert credential not in endpoint, f"{name} carries {credential} in code"


@pytest.mark.parametrize("name,secret", [
    ("onprem-source", "onprem-dms_source"), ("aurora-target", "aws-dms_target"),
    ("aurora-source", "aws-dms_source"), ("onprem-target", "onprem-dms_target"),
])
def test_each_endpoint_connects_as_the_role_of_its_purpose(synthesized, name, secret):
    arn = _endpoints(synthesized)[name]["secrets_manager_arn"]
    assert "remote_state" in arn and f"database-secrets_{secret}" in arn, arn


@pytest.mark.parametrize("name,slot", [("onprem-source", "payment_dev_forward"),
                                       ("aurora-source", "payment_dev_fallback")])
def test_sources_read_a_named_slot_and_keep_dms_tables_in_their_own_schema(synthesized, name, slot):
    settings = _endpoints(synthesized)[name]["postgres_settings"]
    assert settings["slot_name"] == slot, "the controller creates and drops the slot by this name"
    assert settings["heartbeat_schema"] == "payment_dms"


def test_forward_task_full_load_and_cdc_with_validation_and_logging_not_started(synthesized):
    forward = _tasks(synthesized)["forward"]
    assert forward["migration_type"] == "full-load-and-cdc"
    assert forward["start_replication_task"] is False
    settings = json.loads(forward["replication_task_settings"])
    assert settings["ValidationSettings"]["EnableValidation"] is True
    assert settings["Logging"]["EnableLogging"] is True
    assert settings["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert settings["TargetMetadata"]["LimitedSizeLobMode"] is True
    assert settings["ErrorBehavior"]["DataErrorPolicy"] == "STOP_TASK"


def test_table_mappings_include_the_configured_tables_and_the_cutover_marker(synthesized):
    rules = json.loads(_tasks(synthesized)["forward"]["table_mappings"])["rules"]
    assert [(r["object-locator"]["schema-name"], r["object-locator"]["table-name"], r["rule-action"]) for r in rules] \
        == [("public", t, "include") for t in ("customers", "payments", "transactions", "audit_log")] \
        + [("payment_control", "cutover_marker", "include")]


def test_an_apply_error_stops_the_task_and_dms_tables_stay_out_of_public(synthesized):
    for task in _tasks(synthesized).values():
        settings = json.loads(task["replication_task_settings"])
        behavior = settings["ErrorBehavior"]
        assert {behavior[f"ApplyError{kind}Policy"] for kind in ("Insert", "Update", "Delete")} == {"STOP_TASK"}
        assert settings["ControlTablesSettings"]["ControlSchema"] == "payment_dms"


def test_fallback_task_is_cdc_only_in_the_reverse_direction_and_not_started(synthesized):
    forward, fallback = _tasks(synthesized)["forward"], _tasks(synthesized)["fallback"]
    assert fallback["migration_type"] == "cdc"
    assert fallback["start_replication_task"] is False
    assert forward["source_endpoint_arn"] == "${aws_dms_endpoint.onprem-source.endpoint_arn}"
    assert forward["target_endpoint_arn"] == "${aws_dms_endpoint.aurora-target.endpoint_arn}"
    assert fallback["source_endpoint_arn"] == "${aws_dms_endpoint.aurora-source.endpoint_arn}"
    assert fallback["target_endpoint_arn"] == "${aws_dms_endpoint.onprem-target.endpoint_arn}"
    endpoints = _endpoints(synthesized)
    assert endpoints["aurora-source"]["endpoint_type"] == "source"
    assert endpoints["onprem-target"]["endpoint_type"] == "target"
    assert json.loads(fallback["replication_task_settings"])["ValidationSettings"]["EnableValidation"] is True


def test_forward_cdc_task_is_the_forward_direction_as_cdc_only_and_not_started(synthesized):
    tasks = _tasks(synthesized)
    forward, forward_cdc = tasks["forward"], tasks["forward-cdc"]
    assert forward_cdc["migration_type"] == "cdc"
    assert forward_cdc["start_replication_task"] is False
    for key in ("source_endpoint_arn", "target_endpoint_arn", "replication_instance_arn", "table_mappings"):
        assert forward_cdc[key] == forward[key], f"forward-cdc must replicate what forward does: {key} differs"
    settings, full_load = (json.loads(task["replication_task_settings"]) for task in (forward_cdc, forward))
    assert "FullLoadSettings" not in settings
    assert settings == {key: value for key, value in full_load.items() if key != "FullLoadSettings"}
    assert forward_cdc["replication_task_id"] == "payment-forward-cdc-dev"


def test_secrets_access_role_reads_exactly_the_four_endpoint_secrets(synthesized):
    document = synthesized.data("migration", "aws_iam_policy_document")["secrets-access-permissions"]
    statements = {s["sid"]: s for s in document["statement"]}
    read = statements["ReadEndpointSecrets"]
    assert len(read["resources"]) == 4 and "*" not in read["resources"]
    assert all("dms_source" in arn or "dms_target" in arn for arn in read["resources"])
    trust = synthesized.data("migration", "aws_iam_policy_document")["secrets-trust"]
    assert trust["statement"][0]["principals"][0]["identifiers"] == ["dms.eu-west-1.amazonaws.com"]


def test_task_logs_go_to_an_encrypted_log_group_named_for_the_instance(synthesized):
    group = synthesized.resources("migration", "aws_cloudwatch_log_group")["task-logs"]
    assert group["name"] == "dms-tasks-payment-dms-dev"
    assert "aws_kms_keylogs-key" in group["kms_key_id"]


def test_dms_verifies_each_side_against_its_own_ca(synthesized):
    certificates = synthesized.resources("migration", "aws_dms_certificate")
    assert set(certificates) == {"aurora-ca", "onprem-ca"}
    onprem_pem = (CONFIG_DIR / "certs" / "example-onprem-ca.pem").read_text()
    assert certificates["onprem-ca"]["certificate_pem"] == onprem_pem
    assert certificates["aurora-ca"]["certificate_pem"].count("BEGIN CERTIFICATE") == 3, "the region's RDS roots"
    endpoints = _endpoints(synthesized)
    for name, side in (("onprem-source", "onprem"), ("onprem-target", "onprem"),
                       ("aurora-source", "aurora"), ("aurora-target", "aurora")):
        assert endpoints[name]["certificate_arn"] == f"${{aws_dms_certificate.{side}-ca.certificate_arn}}", name
