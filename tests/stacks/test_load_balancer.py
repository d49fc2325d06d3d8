"""load-balancer stack: HTTPS ALB with WAF, redirecting HTTP, Lambda target, access logs."""

from __future__ import annotations


def _listeners(synthesized):
    return synthesized.resources("load-balancer", "aws_lb_listener")


def test_internet_facing_alb_in_public_subnets_dropping_invalid_headers(synthesized):
    (alb,) = synthesized.resources("load-balancer", "aws_lb").values()
    assert alb["internal"] is False and alb["load_balancer_type"] == "application"
    assert "public-" in str(alb["subnets"]) and "private" not in str(alb["subnets"])
    assert alb["drop_invalid_header_fields"] is True
    assert alb["enable_deletion_protection"] is False, "dev config turns deletion protection off"
    assert alb["access_logs"]["enabled"] is True
    assert alb["access_logs"]["bucket"] == "${aws_s3_bucket.access-logs.bucket}"


def test_https_listener_uses_tls12_plus_policy_and_the_dns_validated_certificate(synthesized):
    https = _listeners(synthesized)["https"]
    assert (https["port"], https["protocol"]) == (443, "HTTPS")
    assert https["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["certificate_arn"] == "${aws_acm_certificate_validation.certificate-validated.certificate_arn}"
    (action,) = https["default_action"]
    assert action == {"type": "forward", "target_group_arn": "${aws_lb_target_group.api.arn}"}
    certificate = synthesized.resources("load-balancer", "aws_acm_certificate")["certificate"]
    assert certificate["domain_name"] == "api.payments-dev.example.com"
    assert certificate["validation_method"] == "DNS"
    record = synthesized.resources("load-balancer", "aws_route53_record")["certificate-validation"]
    assert "aws_route53_zonezonezone_id" in record["zone_id"]


def test_http_listener_only_redirects_to_https(synthesized):
    http = _listeners(synthesized)["http"]
    assert (http["port"], http["protocol"]) == (80, "HTTP")
    (action,) = http["default_action"]
    assert action["type"] == "redirect"
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}


def test_lambda_target_group_checks_health_and_the_permission_is_scoped_to_it(synthesized):
    group = synthesized.resources("load-balancer", "aws_lb_target_group")["api"]
    assert group["target_type"] == "lambda"
    assert group["health_check"]["path"] == "/health" and group["health_check"]["enabled"] is True
    (permission,) = synthesized.resources("load-balancer", "aws_lambda_permission").values()
    assert permission["principal"] == "elasticloadbalancing.amazonaws.com"
    assert permission["source_arn"] == "${aws_lb_target_group.api.arn}"
    assert permission["action"] == "lambda:InvokeFunction"
    (attachment,) = synthesized.resources("load-balancer", "aws_lb_target_group_attachment").values()
    assert "aws_lambda_permission.invoke" in attachment["depends_on"]


def test_waf_web_acl_is_associated(synthesized):
    (association,) = synthesized.resources("load-balancer", "aws_wafv2_web_acl_association").values()
    assert association["resource_arn"] == "${aws_lb.alb.arn}"
    assert "aws_wafv2_web_acl" in association["web_acl_arn"] and "remote_state" in association["web_acl_arn"]


def test_access_log_bucket_is_private_encrypted_versioned_and_tls_only(synthesized):
    resources = lambda kind: synthesized.resources("load-balancer", kind)  # noqa: E731
    block = resources("aws_s3_bucket_public_access_block")["access-logs-public-block"]
    assert all(block[key] is True for key in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                              "restrict_public_buckets"))
    encryption = resources("aws_s3_bucket_server_side_encryption_configuration")["access-logs-encryption"]
    assert encryption["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "AES256"
    versioning = resources("aws_s3_bucket_versioning")["access-logs-versioning"]
    assert versioning["versioning_configuration"]["status"] == "Enabled"
    statements = {s["sid"]: s for s in synthesized.data("load-balancer", "aws_iam_policy_document")
                  ["access-logs-policy"]["statement"]}
    tls = statements["TlsOnly"]
    assert tls["effect"] == "Deny" and tls["condition"][0]["variable"] == "aws:SecureTransport"
    assert tls["condition"][0]["values"] == ["false"]
    delivery = statements["ElbLogDelivery"]
    assert delivery["actions"] == ["s3:PutObject"]
    assert delivery["principals"][0]["identifiers"] == ["${data.aws_elb_service_account.elb-account.arn}"]
    assert delivery["resources"][0].endswith("/alb/AWSLogs/${data.aws_caller_identity.caller.account_id}/*")
