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


def test_environment_names_both_sides_the_writer_parameter_and_no_credential(synthesized):
    env = _function(synthesized)["environment"]["variables"]
    sides = {f"{prefix}_{key}" for prefix in ("ONPREM_DB", "AURORA_DB") for key in ("HOST", "PORT", "NAME", "SECRET_ARN")}
    assert set(env) == sides | {"WRITER_PARAMETER", "WRITER_CACHE_SECONDS", "DB_SSLMODE", "ONPREM_DB_SSLROOTCERT",
                                "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert env["WRITER_PARAMETER"].endswith("aws_ssm_parameterwritername}") and "remote_state" in env["WRITER_PARAMETER"]
    assert "aws_rds_clusterclusterendpoint" in env["AURORA_DB_HOST"]
    assert (env["ONPREM_DB_HOST"], env["ONPREM_DB_PORT"]) == ("172.16.10.20", "5432")
    # The API connects as payment_app on both sides; the master secret is break-glass.
    assert "onprem-payment_app" in env["ONPREM_DB_SECRET_ARN"] and "aws-payment_app" in env["AURORA_DB_SECRET_ARN"]
    assert "master_user_secret" not in json.dumps(env)
    # Verified TLS: Aurora against the RDS bundle in the zip, on-prem against its CA shipped beside it.
    assert (env["DB_SSLMODE"], env["ONPREM_DB_SSLROOTCERT"]) == ("verify-full", "/var/task/certs/onprem-ca.pem")


def test_log_group_encrypted_with_the_logs_key_and_retention_from_config(synthesized):
    (group,) = synthesized.resources("compute", "aws_cloudwatch_log_group").values()
    assert group["name"] == "/aws/lambda/payment-api-dev"
    assert "aws_kms_keylogs-key" in group["kms_key_id"]
    assert group["retention_in_days"] == 365


def test_role_allows_exactly_networking_own_logs_the_db_secret_and_its_key(synthesized):
    statements = _statements(synthesized)
    assert set(statements) == {"OwnLogGroup", "VpcNetworkInterfaces", "VpcNetworkInterfaceLifecycle",
                               "UnscopableReads", "DecryptEnvironment", "ReadWriter", "ReadPaymentAppSecrets",
                               "DecryptDatabaseSecrets"}
    (log_group_name,) = synthesized.resources("compute", "aws_cloudwatch_log_group")
    assert statements["OwnLogGroup"]["resources"] == [f"${{aws_cloudwatch_log_group.{log_group_name}.arn}}:*"]
    read = statements["ReadPaymentAppSecrets"]
    assert read["actions"] == ["secretsmanager:GetSecretValue"] and len(read["resources"]) == 2
    assert all("payment_app" in arn for arn in read["resources"])
    assert statements["ReadWriter"]["actions"] == ["ssm:GetParameter"]
    assert statements["ReadWriter"]["resources"][0].endswith("aws_ssm_parameterwriterarn}")
    assert statements["UnscopableReads"]["actions"] == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                                                        "ec2:DescribeVpcs", "xray:PutTraceSegments",
                                                        "xray:PutTelemetryRecords"]
    for sid, statement in statements.items():
        if sid != "UnscopableReads":
            assert "*" not in statement["resources"], f"{sid} grants on every resource"
