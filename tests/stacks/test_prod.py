"""The production example (config/prod.toml) synthesizes with what production needs: deletion
protection, prevent_destroy on what must outlive a destroy, split key duties, multi-AZ DMS, a NAT
gateway per zone, alarm e-mails, a locked backup vault."""

from __future__ import annotations

import json

import pytest

from lib.config import load_config


def _resources(prod, area: str, resource_type: str) -> dict[str, dict]:
    return prod.stacks[f"{area}-prod"].get("resource", {}).get(resource_type, {})


def test_prod_synthesizes_every_stack(prod):
    assert sorted(prod.stacks) == sorted(f"{area}-prod" for area in (
        "account", "network", "security", "database", "compute", "load-balancer", "migration", "routing",
        "monitoring", "validation", "cutover"))


def test_database_and_load_balancer_keep_deletion_protection(prod):
    (cluster,) = _resources(prod, "database", "aws_rds_cluster").values()
    assert cluster["deletion_protection"] is True
    (alb,) = _resources(prod, "load-balancer", "aws_lb").values()
    assert alb["enable_deletion_protection"] is True


@pytest.mark.parametrize("area,resource_type", [
    ("security", "aws_kms_key"), ("network", "aws_kms_key"), ("routing", "aws_kms_key"),
    ("monitoring", "aws_kms_key"), ("network", "aws_route53_zone"), ("network", "aws_route53_key_signing_key"),
    ("account", "aws_iam_role"),
])
def test_what_must_outlive_a_destroy_is_kept_from_it(prod, area, resource_type):
    resources = _resources(prod, area, resource_type)
    assert resources, f"{area}-prod has no {resource_type}"
    for name, resource in resources.items():
        assert resource["lifecycle"]["prevent_destroy"] is True, f"{area}-prod {resource_type}.{name}"


def test_every_key_names_the_configured_administrators_and_no_account_wide_kms_star(prod):
    administrators = sorted(load_config("prod").security.key_administrator_arns)
    keys = {f"{stack}/{name}": key for stack, document in prod.stacks.items()
            for name, key in document.get("resource", {}).get("aws_kms_key", {}).items()}
    assert len(keys) >= 8
    for name, key in keys.items():
        statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
        assert sorted(statements["KeyAdministration"]["Principal"]["AWS"]) == administrators, name
        assert all("kms:*" not in s["Action"] for s in statements.values()), name


def test_dms_is_multi_az_and_nat_is_per_zone(prod):
    (instance,) = _resources(prod, "migration", "aws_dms_replication_instance").values()
    assert instance["multi_az"] is True
    assert sorted(_resources(prod, "network", "aws_nat_gateway")) == ["nat-0", "nat-1", "nat-2"]


def test_alarm_emails_are_subscribed(prod):
    subscriptions = _resources(prod, "monitoring", "aws_sns_topic_subscription").values()
    assert {s["endpoint"] for s in subscriptions if s["protocol"] == "email"} == {
        "payments-oncall@example.com", "platform-oncall@example.com"}


def test_backup_vault_is_locked(prod):
    (lock,) = _resources(prod, "database", "aws_backup_vault_lock_configuration").values()
    assert lock["min_retention_days"] == 35


def test_created_zone_has_dnssec_alarms(prod):
    alarms = _resources(prod, "routing", "aws_cloudwatch_metric_alarm")
    assert {"dnssec-internal-failure", "dnssec-ksk-action-needed"} <= set(alarms)


def test_a_deleted_database_secret_stays_restorable_for_30_days(prod):
    secrets = _resources(prod, "security", "aws_secretsmanager_secret").values()
    assert secrets and {secret["recovery_window_in_days"] for secret in secrets} == {30}
