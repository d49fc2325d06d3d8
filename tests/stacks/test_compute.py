"""compute stack: the API Lambda, its role, log group and placement."""

from __future__ import annotations

import json


def _function(synthesized):
    (function,) = synthesized.resources("compute", "aws_lambda_function").values()
    return function


def _statements(synthesized):
    (document,) = [d for n, d in synthesized.data("compute", "aws_iam_policy_document").items()
                   if n.startswith("api_permissions")]
    return {s["sid"]: s for s in document["statement"]}


def test_function_runs_bundled_code_with_runtime_and_concurrency_from_config(synthesized):
    function = _function(synthesized)
    assert function["handler"] == "payment_api.handler.lambda_handler"
    assert function["runtime"] == "python3.12"
    assert function["reserved_concurrent_executions"] == 20
    assert function["memory_size"] == 512 and function["timeout"] == 15
    assert function["filename"].startswith("assets/") and function["filename"].endswith(".zip")
    assert function["source_code_hash"], "no source hash: code changes would not redeploy"
    assert function["tracing_config"] == {"mode": "Active"}


def test_function_in_private_subnets_with_the_lambda_group(synthesized):
    vpc = _function(synthesized)["vpc_config"]
    assert "private-" in json.dumps(vpc["subnet_ids"]) and "public" not in json.dumps(vpc["subnet_ids"])
    assert "aws_security_grouplambda" in json.dumps(vpc["security_group_ids"])


def test_environment_points_at_the_cluster_and_its_managed_secret_without_credentials(synthesized):
    env = _function(synthesized)["environment"]["variables"]
    assert set(env) == {"DB_HOST", "DB_PORT", "DB_NAME", "DB_SECRET_ARN", "DB_SSLMODE",
                        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert "aws_rds_clusterclusterendpoint" in env["DB_HOST"]
    assert "master_user_secret" in env["DB_SECRET_ARN"]
    assert env["DB_SSLMODE"] == "require"


def test_log_group_encrypted_with_the_logs_key_and_retention_from_config(synthesized):
    (group,) = synthesized.resources("compute", "aws_cloudwatch_log_group").values()
    assert group["name"] == "/aws/lambda/payment-api-dev"
    assert "aws_kms_keylogs-key" in group["kms_key_id"]
    assert group["retention_in_days"] == 365


def test_role_allows_exactly_networking_own_logs_the_db_secret_and_its_key(synthesized):
    statements = _statements(synthesized)
    assert set(statements) == {"OwnLogGroup", "VpcNetworkInterfaces", "VpcNetworkInterfaceLifecycle",
                               "UnscopableReads", "DecryptEnvironment", "ReadDatabaseSecret",
                               "DecryptDatabaseSecret"}
    (log_group_name,) = synthesized.resources("compute", "aws_cloudwatch_log_group")
    assert statements["OwnLogGroup"]["resources"] == [f"${{aws_cloudwatch_log_group.{log_group_name}.arn}}:*"]
    assert statements["ReadDatabaseSecret"]["actions"] == ["secretsmanager:GetSecretValue"]
    assert "master_user_secret" in statements["ReadDatabaseSecret"]["resources"][0]
    assert len(statements["ReadDatabaseSecret"]["resources"]) == 1
    assert statements["UnscopableReads"]["actions"] == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                                                        "ec2:DescribeVpcs", "xray:PutTraceSegments",
                                                        "xray:PutTelemetryRecords"]
    for sid, statement in statements.items():
        if sid != "UnscopableReads":
            assert "*" not in statement["resources"], f"{sid} grants on every resource"
