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


ADDRESSES_CONFIG = edited(r'^app_hostname = .*$', 'app_ip_addresses = ["20.0.113.10", "20.0.113.11"]')


def test_onprem_hostname_makes_both_members_cnames_with_one_ttl(synthesized):
    records = _records(synthesized)
    onprem, aws = records["weighted-onprem"], records["weighted-aws"]
    assert onprem["name"] == aws["name"] == "api.payments-dev.example.com"
    assert onprem["type"] == aws["type"] == "CNAME"
    assert onprem["ttl"] == aws["ttl"] == 60
    assert onprem["records"] == ["app.payments-onprem.example.com"]
    assert (onprem["set_identifier"], aws["set_identifier"]) == ("onprem", "aws")
    assert onprem["zone_id"] == aws["zone_id"] and "remote_state" in onprem["zone_id"]


def test_onprem_addresses_make_a_records_and_an_alias_that_ignores_target_health(synthesize):
    records = _records(synthesize(ADDRESSES_CONFIG))
    onprem, aws = records["weighted-onprem"], records["weighted-aws"]
    assert onprem["type"] == aws["type"] == "A"
    assert onprem["records"] == ["20.0.113.10", "20.0.113.11"] and onprem["ttl"] <= 60
    assert "aws_lbalbdns_name" in aws["alias"]["name"] and "aws_lbalbzone_id" in aws["alias"]["zone_id"]
    # Evaluating target health would let Route 53 move clients to on-prem on its own.
    assert aws["alias"]["evaluate_target_health"] is False
    assert "ttl" not in aws


def test_weights_belong_to_the_controller_and_replacements_never_leave_the_name_unanswered(synthesized):
    for name, record in _records(synthesized).items():
        if not name.startswith("weighted-"):
            continue
        assert record["lifecycle"]["ignore_changes"] == ["weighted_routing_policy"], name
        assert record["lifecycle"]["create_before_destroy"] is True, name


def test_no_weighted_record_carries_a_health_check(synthesize):
    # With a health check, Route 53 answers the weight-0 member once every weighted one looks
    # unhealthy: an unfenced writer switch nobody decided.
    for variant in (synthesize(ADDRESSES_CONFIG), ):
        for name, record in _records(variant).items():
            assert "health_check_id" not in record, name


def test_health_checks_feed_alarms_in_us_east_1(synthesize):
    variant = synthesize(ADDRESSES_CONFIG)
    checks = variant.resources("routing", "aws_route53_health_check")
    assert checks["onprem-health"]["type"] == "CALCULATED" and checks["onprem-health"]["child_health_threshold"] == 1
    assert {checks[f"onprem-health-20-0-113-{i}"]["ip_address"] for i in (10, 11)} == {"20.0.113.10", "20.0.113.11"}
    assert checks["aws-health"]["resource_path"] == "/health" and checks["aws-health"]["type"] == "HTTPS"
    alarms = variant.resources("routing", "aws_cloudwatch_metric_alarm")
    for side in ("onprem", "aws"):
        alarm = alarms[f"{side}-unhealthy"]
        assert alarm["provider"] == "aws.us_east_1", "Route 53 publishes health-check metrics in us-east-1 only"
        assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/Route53", "HealthCheckStatus")
        assert alarm["dimensions"] == {"HealthCheckId": f"${{aws_route53_health_check.{side}-health.id}}"}
        assert alarm["treat_missing_data"] == "breaching"
        assert alarm["alarm_actions"] == ["${aws_sns_topic.health-topic.arn}"]
    (topic,) = variant.resources("routing", "aws_sns_topic").values()
    assert topic["provider"] == "aws.us_east_1" and topic["kms_master_key_id"].startswith("${aws_kms_key.health-alarms")


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


def test_a_created_zone_has_dnssec_alarms_in_us_east_1(synthesized):
    alarms = synthesized.resources("routing", "aws_cloudwatch_metric_alarm")
    for id_, metric in (("dnssec-internal-failure", "DNSSECInternalFailure"),
                        ("dnssec-ksk-action-needed", "DNSSECKeySigningKeysNeedingAction")):
        alarm = alarms[id_]
        assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/Route53", metric)
        assert alarm["provider"] == "aws.us_east_1", "Route 53 publishes DNSSEC metrics in us-east-1 only"
        assert alarm["dimensions"] == {"HostedZoneId": _records(synthesized)["weighted-onprem"]["zone_id"]}
        assert "aws_route53_zone" in alarm["dimensions"]["HostedZoneId"], "the created zone's id"
        assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["alarm_actions"] == ["${aws_sns_topic.health-topic.arn}"]


def test_an_existing_zone_signed_elsewhere_gets_no_dnssec_alarms(synthesize):
    variant = synthesize(edited(r"^create_zone = true.*$", 'zone_id = "Z0EXISTINGZONE42"'))
    assert not {"dnssec-internal-failure", "dnssec-ksk-action-needed"} & set(
        variant.resources("routing", "aws_cloudwatch_metric_alarm"))
