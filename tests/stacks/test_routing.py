"""routing stack: weighted records by cutover phase, health checks, TTL, query logging."""

from __future__ import annotations

import pytest

from tests.support.configs import edited


def _records(synthesized):
    return synthesized.resources("routing", "aws_route53_record")


def _weights(synthesized):
    records = _records(synthesized)
    return (records["weighted-aws"]["weighted_routing_policy"]["weight"],
            records["weighted-onprem"]["weighted_routing_policy"]["weight"])


def test_legacy_sync_sends_everything_on_prem(synthesized):
    assert _weights(synthesized) == (0, 100)


@pytest.mark.parametrize("phase,aws", [("canary", 10), ("split", 50), ("aws-primary", 100)])
def test_each_phase_yields_its_weights(synthesize, phase, aws):
    variant = synthesize(edited(r'^phase = .*$', f'phase = "{phase}"'))
    assert _weights(variant) == (aws, 100 - aws)


def test_explicit_percentage_overrides_the_phase(synthesize):
    variant = synthesize(edited(r"^# aws_weight = 25.*$", "aws_weight = 25"))
    assert _weights(variant) == (25, 75)


def test_one_weighted_set_onprem_a_records_and_aws_alias_with_target_health(synthesized):
    records = _records(synthesized)
    onprem, aws = records["weighted-onprem"], records["weighted-aws"]
    assert onprem["name"] == aws["name"] == "api.payments-dev.example.com"
    assert onprem["type"] == aws["type"] == "A"
    assert onprem["zone_id"] == aws["zone_id"] and "remote_state" in onprem["zone_id"]
    assert onprem["records"] == ["192.0.2.10", "192.0.2.11"]
    assert onprem["ttl"] <= 60
    assert (onprem["set_identifier"], aws["set_identifier"]) == ("onprem", "aws")
    assert aws["alias"]["evaluate_target_health"] is True
    assert "aws_lbalbdns_name" in aws["alias"]["name"] and "aws_lbalbzone_id" in aws["alias"]["zone_id"]
    assert "ttl" not in aws


def test_both_members_carry_health_checks(synthesized):
    records = _records(synthesized)
    assert records["weighted-onprem"]["health_check_id"] == "${aws_route53_health_check.onprem-health.id}"
    assert records["weighted-aws"]["health_check_id"] == "${aws_route53_health_check.aws-health.id}"
    checks = synthesized.resources("routing", "aws_route53_health_check")
    assert checks["onprem-health"]["type"] == "CALCULATED" and checks["onprem-health"]["child_health_threshold"] == 1
    assert {checks[f"onprem-health-{i}"]["ip_address"] for i in (0, 1)} == {"192.0.2.10", "192.0.2.11"}
    assert checks["aws-health"]["resource_path"] == "/health" and checks["aws-health"]["type"] == "HTTPS"


def test_onprem_hostname_makes_both_members_cnames_with_one_ttl(synthesize):
    variant = synthesize(edited(r'^app_ip_addresses = .*$', 'app_hostname = "legacy.payments-dev.example.com"'))
    records = _records(variant)
    onprem, aws = records["weighted-onprem"], records["weighted-aws"]
    assert onprem["type"] == aws["type"] == "CNAME"
    assert onprem["ttl"] == aws["ttl"] == 60
    assert onprem["records"] == ["legacy.payments-dev.example.com"]


def test_dns_queries_are_logged_to_an_encrypted_group_in_us_east_1(synthesized):
    (query_log,) = synthesized.resources("routing", "aws_route53_query_log").values()
    assert query_log["cloudwatch_log_group_arn"] == "${aws_cloudwatch_log_group.query-logs.arn}"
    group = synthesized.resources("routing", "aws_cloudwatch_log_group")["query-logs"]
    assert group["provider"] == "aws.us_east_1"
    assert group["kms_key_id"].startswith("${aws_kms_key.query-logs-key")
    providers = {p.get("alias"): p["region"] for p in synthesized.stack("routing")["provider"]["aws"]}
    assert providers == {None: "eu-west-1", "us_east_1": "us-east-1"}


def test_created_zone_lives_upstream_of_load_balancer_and_routing(synthesized):
    assert synthesized.resources("network", "aws_route53_zone")["zone"]["name"] == "payments-dev.example.com"
    dependencies = synthesized.manifest["stacks"]["routing-dev"]["dependencies"]
    assert "network-dev" in dependencies and "load-balancer-dev" in dependencies


def test_existing_zone_is_used_by_id_without_creating_one(synthesize):
    variant = synthesize(edited(r"^create_zone = true.*$", 'zone_id = "Z0EXISTINGZONE42"'))
    assert not variant.resources("network", "aws_route53_zone")
    assert _records(variant)["weighted-onprem"]["zone_id"] == "Z0EXISTINGZONE42"
