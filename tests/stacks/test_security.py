"""security stack: keys, security groups, WAF and the on-prem secret."""

from __future__ import annotations

import json

import pytest


def _key_resource(synthesized, fragment):
    (name,) = [n for n in synthesized.resources("security", "aws_kms_key") if fragment in n]
    return name, synthesized.resources("security", "aws_kms_key")[name]


ROOT = ("arn:${data.aws_partition.partition.partition}:iam::${data.aws_caller_identity.caller.account_id}:root")
CRYPTO = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:Sign",
          "kms:*", "kms:Create*"}


def _statements(policy):
    return {s["Sid"]: s for s in policy["Statement"]}


@pytest.mark.parametrize("fragment", ["data-key", "logs-key", "backup-key"])
def test_keys_rotate_and_carry_an_explicit_policy(synthesized, fragment):
    _, key = _key_resource(synthesized, fragment)
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == 30
    policy = json.loads(key["policy"])
    assert all(s["Principal"] != "*" and s["Principal"] != {"AWS": "*"} for s in policy["Statement"])


@pytest.mark.parametrize("fragment", ["data-key", "logs-key", "backup-key"])
def test_key_administrators_from_config_administer_and_never_use_the_key(synthesized, fragment):
    statements = _statements(json.loads(_key_resource(synthesized, fragment)[1]["policy"]))
    admin = statements["KeyAdministration"]
    assert admin["Principal"] == {"AWS": ["arn:aws:iam::123456789012:role/payment-key-admin"]}
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:EnableKeyRotation"} <= set(admin["Action"])
    assert not CRYPTO & set(admin["Action"]), f"{fragment}: administrators may use the key"


@pytest.mark.parametrize("fragment", ["data-key", "logs-key", "backup-key"])
def test_the_account_keeps_only_key_policy_recovery(synthesized, fragment):
    statements = _statements(json.loads(_key_resource(synthesized, fragment)[1]["policy"]))
    recovery = statements["AccountKeyPolicyRecovery"]
    assert recovery["Principal"] == {"AWS": ROOT}
    assert recovery["Action"] == ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey"]
    for sid, statement in statements.items():
        if statement["Principal"] == {"AWS": ROOT} and sid != "AccountKeyPolicyRecovery":
            # The account's principals use a key only through a named AWS service.
            assert statement["Condition"]["StringEquals"]["kms:ViaService"], sid


def test_the_data_key_is_used_only_through_the_services_that_store_payment_data(synthesized):
    statements = _statements(synthesized.key_policy("security", "data-key"))
    use, grants = statements["KeyUseThroughServices"], statements["GrantsForServices"]
    services = {f"{name}.eu-west-1.amazonaws.com" for name in ("rds", "secretsmanager", "dms", "lambda", "sqs",
                                                                "backup")}
    assert set(use["Condition"]["StringEquals"]["kms:ViaService"]) == services
    assert "kms:CreateGrant" not in use["Action"]
    assert grants["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def test_the_backup_vault_has_its_own_key_used_only_by_aws_backup(synthesized):
    statements = _statements(synthesized.key_policy("security", "backup-key"))
    assert statements["KeyUseThroughServices"]["Condition"]["StringEquals"]["kms:ViaService"] == [
        "backup.eu-west-1.amazonaws.com"]


def test_dev_lets_its_keys_be_destroyed(synthesized):
    for name, key in synthesized.resources("security", "aws_kms_key").items():
        assert key["lifecycle"]["prevent_destroy"] is False, name


def test_cloudwatch_logs_may_use_the_logs_key_for_this_accounts_log_groups_only(synthesized):
    (statement,) = [s for s in synthesized.key_policy("security", "logs-key")["Statement"]
                    if s["Sid"] == "CloudWatchLogs"]
    assert statement["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    arn_pattern = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert arn_pattern.startswith("arn:${data.aws_partition.partition.partition}:logs:eu-west-1:")
    assert "logs.eu-west-1.amazonaws.com" not in json.dumps(synthesized.key_policy("security", "data-key"))


def _rules(synthesized, kind):
    return synthesized.resources("security", f"aws_vpc_security_group_{kind}_rule")


def test_every_rule_is_a_separate_resource_with_a_description(synthesized):
    for group in synthesized.resources("security", "aws_security_group").values():
        assert "ingress" not in group and "egress" not in group
    for kind in ("ingress", "egress"):
        for name, rule in _rules(synthesized, kind).items():
            assert rule.get("description"), f"{kind} rule {name} has no description"


def test_database_reachable_on_5432_only_from_its_clients_groups(synthesized):
    ingress = [r for r in _rules(synthesized, "ingress").values()
               if r["security_group_id"] == "${aws_security_group.database.id}"]
    assert {r["referenced_security_group_id"] for r in ingress} == {
        "${aws_security_group.lambda.id}", "${aws_security_group.validation.id}",
        "${aws_security_group.controller.id}", "${aws_security_group.dms.id}"}
    assert all(r["from_port"] == r["to_port"] == 5432 and "cidr_ipv4" not in r for r in ingress)
    assert not [r for r in _rules(synthesized, "egress").values()
                if r["security_group_id"] == "${aws_security_group.database.id}"]


def test_dms_egress_to_onprem_cidrs_on_the_source_port(synthesized):
    rules = _rules(synthesized, "egress")
    onprem = rules["dms-out-onprem-172-16-0-0_16"]
    assert (onprem["cidr_ipv4"], onprem["from_port"], onprem["to_port"]) == ("172.16.0.0/16", 5432, 5432)
    assert onprem["security_group_id"] == "${aws_security_group.dms.id}"


CLIENT_GROUPS = ("lambda", "validation", "controller", "dms")
ENDPOINT_SERVICES = {"secretsmanager", "ssm", "dms", "monitoring", "logs", "kms", "sts", "xray"}


def test_no_group_has_egress_to_the_internet(synthesized):
    for name, rule in _rules(synthesized, "egress").items():
        assert rule.get("cidr_ipv4") != "0.0.0.0/0" and "cidr_ipv6" not in rule, f"{name} reaches the internet"


@pytest.mark.parametrize("group", CLIENT_GROUPS)
def test_lambda_and_dms_egress_is_the_endpoints_the_database_and_onprem_only(synthesized, group):
    rules = [r for r in _rules(synthesized, "egress").values()
             if r["security_group_id"] == f"${{aws_security_group.{group}.id}}"]
    destinations = sorted((r.get("referenced_security_group_id") or r["cidr_ipv4"], r["from_port"], r["to_port"])
                          for r in rules)
    assert destinations == sorted([("${aws_security_group.endpoints.id}", 443, 443),
                                   ("${aws_security_group.database.id}", 5432, 5432),
                                   ("172.16.0.0/16", 5432, 5432)]), f"{group}: {destinations}"


def test_endpoints_accept_https_only_from_the_lambda_and_dms_groups(synthesized):
    ingress = [r for r in _rules(synthesized, "ingress").values()
               if r["security_group_id"] == "${aws_security_group.endpoints.id}"]
    assert sorted(r["referenced_security_group_id"] for r in ingress) == sorted(
        f"${{aws_security_group.{group}.id}}" for group in CLIENT_GROUPS)
    assert all(r["from_port"] == r["to_port"] == 443 for r in ingress)


def test_interface_endpoints_with_private_dns_in_every_private_subnet(synthesized):
    endpoints = synthesized.resources("security", "aws_vpc_endpoint")
    assert {e["service_name"].removeprefix("com.amazonaws.eu-west-1.") for e in endpoints.values()} == ENDPOINT_SERVICES
    for name, endpoint in endpoints.items():
        assert endpoint["vpc_endpoint_type"] == "Interface" and endpoint["private_dns_enabled"] is True, name
        assert endpoint["security_group_ids"] == ["${aws_security_group.endpoints.id}"], name
        assert len(endpoint["subnet_ids"]) == 3 and all(
            "private" in subnet for subnet in endpoint["subnet_ids"]), name


def test_api_reaches_the_onprem_database_it_writes_to_before_the_data_cutover(synthesized):
    api_rules = [r for r in _rules(synthesized, "egress").values()
                 if r["security_group_id"] == "${aws_security_group.lambda.id}"]
    onprem = [r for r in api_rules if r.get("cidr_ipv4") == "172.16.0.0/16"]
    assert [(r["from_port"], r["to_port"]) for r in onprem] == [(5432, 5432)]
    assert all(r["from_port"] in (443, 5432) for r in api_rules)


def test_alb_open_on_443_and_80_only(synthesized):
    alb = [r for r in _rules(synthesized, "ingress").values()
           if r["security_group_id"] == "${aws_security_group.alb.id}"]
    assert sorted((r["from_port"], r["cidr_ipv4"]) for r in alb) == [(80, "0.0.0.0/0"), (443, "0.0.0.0/0")]


def test_web_acl_has_managed_groups_and_rate_limit_from_config(synthesized):
    (acl,) = synthesized.resources("security", "aws_wafv2_web_acl").values()
    assert acl["scope"] == "REGIONAL"
    managed = [r["statement"]["managed_rule_group_statement"]["name"] for r in acl["rule"]
               if "managed_rule_group_statement" in r["statement"]]
    assert managed == ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesSQLiRuleSet"]
    (rate,) = [r for r in acl["rule"] if "rate_based_statement" in r["statement"]]
    assert rate["statement"]["rate_based_statement"]["limit"] == 2000
    assert rate["action"] == {"block": {}}
    assert len({r["priority"] for r in acl["rule"]}) == len(acl["rule"])


def test_waf_logs_to_an_encrypted_log_group_with_credentials_redacted(synthesized):
    (logging,) = synthesized.resources("security", "aws_wafv2_web_acl_logging_configuration").values()
    assert logging["log_destination_configs"] == ["${aws_cloudwatch_log_group.waf-logs.arn}"]
    assert {f["single_header"]["name"] for f in logging["redacted_fields"]} == {"authorization", "cookie"}
    group = synthesized.resources("security", "aws_cloudwatch_log_group")["waf-logs"]
    assert group["name"].startswith("aws-waf-logs-")
    assert group["kms_key_id"].startswith("${aws_kms_key.logs-key")


def test_one_encrypted_secret_per_role_and_side_and_no_value_in_code(synthesized):
    secrets = synthesized.resources("security", "aws_secretsmanager_secret").values()
    names = {secret["name"] for secret in secrets}
    assert names == {f"payment-migration/dev/{side}/{role}" for side in ("onprem", "aws")
                     for role in ("payment_app", "payment_validator", "payment_controller", "dms_source", "dms_target")}
    assert all(secret["kms_key_id"].startswith("${aws_kms_key.data-key") for secret in secrets)
    assert not synthesized.resources("security", "aws_secretsmanager_secret_version")
    # dev sets 0: a destroyed dev secret frees its name at once, so a redeploy can take it again
    assert {secret["recovery_window_in_days"] for secret in secrets} == {0}


def test_writer_parameter_starts_on_prem_and_then_belongs_to_the_controller(synthesized):
    (parameter,) = synthesized.resources("security", "aws_ssm_parameter").values()
    assert parameter["name"] == "/payment-migration/dev/writer" and parameter["type"] == "String"
    assert json.loads(parameter["value"])["writer"] == "onprem"
    assert parameter["lifecycle"]["ignore_changes"] == ["value"]


def test_secret_age_check_watches_every_database_secret_daily_for_the_configured_age(synthesized):
    (machine,) = synthesized.resources("security", "aws_sfn_state_machine").values()
    definition = json.loads(machine["definition"])
    secrets = synthesized.resources("security", "aws_secretsmanager_secret")
    watched = definition["States"]["Secrets"]["Result"]
    assert sorted(s["name"] for s in watched) == sorted(s["name"] for s in secrets.values())
    assert sorted(s["arn"] for s in watched) == sorted(f"${{aws_secretsmanager_secret.{n}.arn}}" for n in secrets)
    assert definition["States"]["Hold"]["Seconds"] == 90 * 86400
    (rule,) = synthesized.resources("security", "aws_cloudwatch_event_rule").values()
    assert rule["schedule_expression"] == "rate(1 day)"
    (target,) = synthesized.resources("security", "aws_cloudwatch_event_target").values()
    assert target["arn"].startswith("${aws_sfn_state_machine.") and target["role_arn"]


def test_secret_age_check_reads_version_ids_of_its_secrets_and_nothing_else(synthesized):
    documents = synthesized.data("security", "aws_iam_policy_document")
    (permissions,) = [d for name, d in documents.items() if name.startswith("secret-age_check_permissions")]
    statements = {s["sid"]: s for s in permissions["statement"]}
    assert statements["ListVersions"]["actions"] == ["secretsmanager:ListSecretVersionIds"]
    assert len(statements["ListVersions"]["resources"]) == 10
    assert not any("GetSecretValue" in action for s in statements.values() for action in s["actions"])
    (condition,) = statements["PublishAge"]["condition"]
    assert condition["values"] == ["PaymentMigration"]
