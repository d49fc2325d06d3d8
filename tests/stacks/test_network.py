"""network stack: subnets in the configured zone ids, NAT, on-prem routes, flow logs, locked default SG."""

from __future__ import annotations

import json

from tests.support.configs import edited


def test_vpc_from_config_with_dns(synthesized):
    (vpc,) = synthesized.resources("network", "aws_vpc").values()
    assert vpc["cidr_block"] == "10.20.0.0/16"
    assert vpc["enable_dns_hostnames"] is True and vpc["enable_dns_support"] is True


def test_three_public_and_three_private_subnets_in_the_configured_zone_ids(synthesized):
    subnets = synthesized.resources("network", "aws_subnet")
    tiers = {tier: sorted((s for s in subnets.values() if s["tags"]["Tier"] == tier), key=lambda s: s["cidr_block"])
             for tier in ("public", "private")}
    assert [s["cidr_block"] for s in tiers["public"]] == ["10.20.0.0/24", "10.20.1.0/24", "10.20.2.0/24"]
    assert [s["cidr_block"] for s in tiers["private"]] == ["10.20.10.0/24", "10.20.11.0/24", "10.20.12.0/24"]
    for tier, members in tiers.items():
        zones = [s["availability_zone_id"] for s in members]
        assert zones == ["euw1-az1", "euw1-az2", "euw1-az3"], f"{tier} subnets not in the configured zones: {zones}"
        assert all("availability_zone" not in s for s in members), "zone names differ per account"
        assert all(s["map_public_ip_on_launch"] is False for s in members)
    assert "eu-west-1a" not in json.dumps(synthesized.stack("network")), "hard-coded AZ name"


def test_single_nat_gateway_by_config_and_private_default_routes_through_it(synthesized):
    nats = synthesized.resources("network", "aws_nat_gateway")
    assert list(nats) == ["nat-0"]
    routes = synthesized.resources("network", "aws_route")
    private_defaults = [r for name, r in routes.items() if name.startswith("private-default")]
    assert len(private_defaults) == 3
    assert all(r["nat_gateway_id"] == "${aws_nat_gateway.nat-0.id}" for r in private_defaults)
    (public_default,) = [r for name, r in routes.items() if name == "public-default"]
    assert public_default["gateway_id"] == "${aws_internet_gateway.igw.id}"


def test_onprem_cidrs_route_through_the_attached_vpn_gateway(synthesized):
    routes = [r for name, r in synthesized.resources("network", "aws_route").items()
              if name.startswith("private-onprem")]
    assert len(routes) == 3
    assert all(r["destination_cidr_block"] == "172.16.0.0/16" and r["gateway_id"] == "vgw-0a1b2c3d4e5f60718"
               for r in routes)
    attachment = synthesized.resources("network", "aws_vpn_gateway_attachment")["vgw-attachment"]
    assert attachment["vpn_gateway_id"] == "vgw-0a1b2c3d4e5f60718"
    assert all("aws_vpn_gateway_attachment.vgw-attachment" in r["depends_on"] for r in routes)


def test_flow_logs_capture_all_traffic_into_a_kms_encrypted_log_group(synthesized):
    (flow_log,) = synthesized.resources("network", "aws_flow_log").values()
    assert flow_log["traffic_type"] == "ALL"
    assert flow_log["log_destination"] == "${aws_cloudwatch_log_group.flow-logs.arn}"
    group = synthesized.resources("network", "aws_cloudwatch_log_group")["flow-logs"]
    (key_name,) = [n for n in synthesized.resources("network", "aws_kms_key") if "flow-logs" in n]
    assert group["kms_key_id"] == f"${{aws_kms_key.{key_name}.arn}}"
    assert group["retention_in_days"] == 365
    assert synthesized.resources("network", "aws_kms_key")[key_name]["enable_key_rotation"] is True
    principals = [s["Principal"] for s in synthesized.key_policy("network", "flow-logs")["Statement"]]
    assert {"Service": "logs.eu-west-1.amazonaws.com"} in principals, "CloudWatch Logs may not use the flow-log key"


def test_flow_log_role_writes_only_to_its_log_group(synthesized):
    delivery = synthesized.data("network", "aws_iam_policy_document")["flow-logs-delivery"]
    (statement,) = delivery["statement"]
    assert statement["resources"] == ["${aws_cloudwatch_log_group.flow-logs.arn}",
                                      "${aws_cloudwatch_log_group.flow-logs.arn}:*"]


def test_default_security_group_is_restricted_to_nothing(synthesized):
    (group,) = synthesized.resources("network", "aws_default_security_group").values()
    assert group["ingress"] == [] and group["egress"] == []


def test_no_data_source_decides_where_subnets_go(synthesized):
    # An impaired zone left out of a data source's answer would move subnets at the next plan.
    assert not synthesized.data("network", "aws_availability_zones")


def test_onprem_routes_are_keyed_by_cidr_not_position(synthesize):
    two = synthesize(edited(r'^cidrs = .*$', 'cidrs = ["172.16.0.0/16", "172.17.0.0/16"]'))
    one = synthesize(edited(r'^cidrs = .*$', 'cidrs = ["172.17.0.0/16"]'))

    def onprem_routes(variant):
        return {name: route["destination_cidr_block"]
                for name, route in variant.resources("network", "aws_route").items() if "onprem" in name}

    kept = {name: cidr for name, cidr in onprem_routes(two).items() if cidr == "172.17.0.0/16"}
    assert kept == onprem_routes(one), "removing the first CIDR renamed the routes of the second"


def test_created_zone_is_signed_with_dnssec_by_a_us_east_1_key(synthesized):
    (signing_key,) = synthesized.resources("network", "aws_route53_key_signing_key").values()
    assert signing_key["status"] == "ACTIVE" and signing_key["hosted_zone_id"] == "${aws_route53_zone.zone.id}"
    (dnssec,) = synthesized.resources("network", "aws_route53_hosted_zone_dnssec").values()
    assert dnssec["signing_status"] == "SIGNING"
    (key,) = [k for n, k in synthesized.resources("network", "aws_kms_key").items() if "dnssec" in n]
    assert (key["customer_master_key_spec"], key["key_usage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert key["provider"] == "aws.us_east_1"
    statements = {s["Sid"]: s for s in synthesized.key_policy("network", "dnssec")["Statement"]}
    assert statements["Route53Dnssec"]["Principal"] == {"Service": "dnssec-route53.amazonaws.com"}


def test_dev_lets_its_zone_and_key_signing_key_be_destroyed(synthesized):
    # config/dev.toml: security.prevent_destroy = false (tests/stacks/test_prod.py: true in prod)
    assert synthesized.resources("network", "aws_route53_zone")["zone"]["lifecycle"]["prevent_destroy"] is False
    (signing_key,) = synthesized.resources("network", "aws_route53_key_signing_key").values()
    assert signing_key["lifecycle"]["prevent_destroy"] is False
