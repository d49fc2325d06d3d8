"""validation stack: the validation Lambda, its role, the distributed validation of large tables."""

from __future__ import annotations

import json

import pytest

from tests.support.configs import edited


def _functions(synthesized):
    return {f["function_name"]: f for f in synthesized.resources("validation", "aws_lambda_function").values()}


def _statements(synthesized, prefix):
    (document,) = [d for n, d in synthesized.data("validation", "aws_iam_policy_document").items()
                   if n.startswith(f"{prefix}_permissions")]
    return {s["sid"]: s for s in document["statement"]}


def test_validation_lambda_environment_is_exactly_the_contract(synthesized):
    function = _functions(synthesized)["payment-validation-dev"]
    env = function["environment"]["variables"]
    assert set(env) == {"ONPREM_DB_HOST", "ONPREM_DB_PORT", "ONPREM_DB_NAME", "ONPREM_DB_SECRET_ARN",
                        "AURORA_DB_HOST", "AURORA_DB_PORT", "AURORA_DB_NAME", "AURORA_DB_SECRET_ARN",
                        "DB_SSLMODE", "ONPREM_DB_SSLROOTCERT", "SCHEMAS", "RECHECK_SECONDS", "RECHECK_ROUNDS",
                        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert (env["ONPREM_DB_HOST"], env["ONPREM_DB_PORT"], env["ONPREM_DB_NAME"]) == ("172.16.10.20", "5432", "payments")
    # Read-only as payment_validator on both sides; the Aurora master secret is break-glass.
    assert "onprem-payment_validator" in env["ONPREM_DB_SECRET_ARN"]
    assert "aws-payment_validator" in env["AURORA_DB_SECRET_ARN"]
    assert (env["RECHECK_SECONDS"], env["RECHECK_ROUNDS"]) == ("5", "3")
    assert function["handler"] == "payment_validation.handler.lambda_handler"
    assert "validation" in str(function["vpc_config"]["security_group_ids"])


def test_validation_role_reads_exactly_the_two_validator_secrets(synthesized):
    statements = _statements(synthesized, "validator")
    read = statements["ReadPaymentValidatorSecrets"]
    assert read["actions"] == ["secretsmanager:GetSecretValue"] and len(read["resources"]) == 2
    assert all("remote_state" in arn and "payment_validator" in arn for arn in read["resources"])


def test_the_validation_lambda_has_no_schedule_of_its_own(synthesized):
    """The schedule runs the cutover stack's validation scheduler: only the controller's role may keep
    the checkpoint slots that let most runs compare only what changed."""
    assert not synthesized.resources("validation", "aws_cloudwatch_event_rule")


@pytest.mark.parametrize("area", ["network", "security", "database", "compute", "load-balancer", "migration",
                                  "routing", "monitoring", "validation"])
def test_all_nine_stacks_are_synthesized(synthesized, area):
    assert synthesized.stack(area)["terraform"]["backend"]["s3"]["key"] == f"dev/{area}.tfstate"


def test_validator_errors_alarm_watches_this_function(synthesized):
    alarm = synthesized.resources("monitoring", "aws_cloudwatch_metric_alarm")["validation-errors"]
    assert alarm["dimensions"] == {"FunctionName": "payment-validation-dev"}
    assert "payment-validation-dev" in _functions(synthesized)


def test_large_tables_validate_in_parallel_chunks_on_a_distributed_map(synthesized):
    (machine,) = synthesized.resources("validation", "aws_sfn_state_machine").values()
    assert machine["name"] == "payment-validation-dev"
    states = json.loads(machine["definition"])["States"]
    chunks = states["ValidateChunks"]
    assert chunks["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert chunks["MaxConcurrency"] == 4, "validation.max_concurrency"
    (document,) = [d for n, d in synthesized.data("validation", "aws_iam_policy_document").items()
                   if n.startswith("distributed_permissions")]
    statements = {s["sid"]: s for s in document["statement"]}
    assert statements["MapChildren"]["resources"][0].endswith(":stateMachine:payment-validation-dev")
    invoke = statements["InvokeSteps"]["resources"]
    assert len(invoke) == 2 and all("validator" in arn for arn in invoke)


def test_the_validation_stack_keeps_only_the_validation(synthesized):
    """The rollback is the cutover stack's: the validation stack reads no routing, monitoring or
    migration output and subscribes to no topic."""
    assert set(_functions(synthesized)) == {"payment-validation-dev"}
    assert not synthesized.resources("validation", "aws_sns_topic_subscription")
    assert set(synthesized.manifest["stacks"]["validation-dev"]["dependencies"]) == {
        "network-dev", "security-dev", "database-dev"}
