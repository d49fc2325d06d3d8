"""validation stack: the validation and rollback Lambdas, their roles, schedule, automatic rollback."""

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


def test_rollback_lambda_environment_is_exactly_the_contract(synthesized):
    function = _functions(synthesized)["payment-rollback-dev"]
    env = function["environment"]["variables"]
    assert set(env) == {"HOSTED_ZONE_ID", "RECORD_NAME", "RECORD_TYPE", "ONPREM_SET_IDENTIFIER",
                        "AWS_SET_IDENTIFIER", "WRITER_PARAMETER", "ROLLBACK_STATE_MACHINE_ARN",
                        "ADVANCE_STATE_MACHINE_ARN", "CUTOVER_STATE_MACHINE_ARN",
                        "WRITER_ROLLBACK_WAIT_SECONDS", "SNS_TOPIC_ARN",
                        "DMS_FORWARD_TASK_ARN", "DMS_FORWARD_CDC_TASK_ARN", "DMS_FALLBACK_TASK_ARN",
                        "FENCE_METRICS_NAMESPACE",
                        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert (env["RECORD_NAME"], env["RECORD_TYPE"]) == ("api.payments-dev.example.com", "CNAME")
    assert (env["ONPREM_SET_IDENTIFIER"], env["AWS_SET_IDENTIFIER"]) == ("onprem", "aws")
    # The writer rollback is started by name: the cutover stack is downstream.
    assert env["ROLLBACK_STATE_MACHINE_ARN"].endswith(":stateMachine:payment-writer-rollback-dev")
    # The controller's executions it stops (advance) or waits for (cutover), by name as well.
    assert env["ADVANCE_STATE_MACHINE_ARN"].endswith(":stateMachine:payment-advance-dev")
    assert env["CUTOVER_STATE_MACHINE_ARN"].endswith(":stateMachine:payment-cutover-dev")
    assert int(env["WRITER_ROLLBACK_WAIT_SECONDS"]) < function["timeout"]
    assert "alarms-topic" in env["SNS_TOPIC_ARN"]
    # Whether the on-prem writer accepts writes: the three DMS tasks (the migration stack's), and the
    # namespace the cutover controller's publish_metrics step puts each side's Fenced measurement in.
    for name, task in (("DMS_FORWARD_TASK_ARN", "forward"), ("DMS_FORWARD_CDC_TASK_ARN", "forward-cdc"),
                       ("DMS_FALLBACK_TASK_ARN", "fallback")):
        assert "remote_state" in env[name], f"{name} is not read from the migration stack: {env[name]}"
        assert f"aws_dms_replication_task{task}replication_task_arn" in env[name].replace(".", ""), (
            f"{name} is not the {task} task's ARN: {env[name]}")
    assert env["FENCE_METRICS_NAMESPACE"] == "PaymentMigration"
    assert "vpc_config" not in function, "the rollback must not depend on the VPC"


def test_validation_role_reads_exactly_the_two_validator_secrets(synthesized):
    statements = _statements(synthesized, "validator")
    read = statements["ReadPaymentValidatorSecrets"]
    assert read["actions"] == ["secretsmanager:GetSecretValue"] and len(read["resources"]) == 2
    assert all("remote_state" in arn and "payment_validator" in arn for arn in read["resources"])


def test_rollback_role_is_scoped_to_exact_arns(synthesized):
    statements = _statements(synthesized, "rollback")
    change = statements["WeightedPairOnly"]
    assert change["actions"] == ["route53:ChangeResourceRecordSets"]
    assert change["resources"][0].startswith("arn:${data.aws_partition.partition.partition}:route53:::hostedzone/")
    # Only the weighted pair, only UPSERT: never NS, CAA or the certificate's validation record.
    conditions = {c["variable"]: c["values"] for c in change["condition"]}
    assert conditions == {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["api.payments-dev.example.com"],
                          "route53:ChangeResourceRecordSetsRecordTypes": ["CNAME"],
                          "route53:ChangeResourceRecordSetsActions": ["UPSERT"]}
    assert statements["StartWriterRollback"]["resources"][0].endswith(":stateMachine:payment-writer-rollback-dev")
    assert statements["WatchWriterRollback"]["resources"][0].endswith(":execution:payment-writer-rollback-dev:*")
    listing = statements["FindControllerExecutions"]
    assert listing["actions"] == ["states:ListExecutions"]
    assert [arn.rsplit(":", 2)[-2:] for arn in listing["resources"]] == [
        ["stateMachine", "payment-advance-dev"], ["stateMachine", "payment-cutover-dev"]]
    # An advance may be stopped; a cutover only watched: it is never stopped mid-way.
    stop_advance = statements["StopAdvance"]
    assert sorted(stop_advance["actions"]) == ["states:DescribeExecution", "states:GetExecutionHistory",
                                               "states:StopExecution"]
    assert [arn.rsplit(":", 3)[-3:] for arn in stop_advance["resources"]] == [["execution", "payment-advance-dev", "*"]]
    assert statements["WatchCutover"]["actions"] == ["states:DescribeExecution"]
    assert [arn.rsplit(":", 3)[-3:] for arn in statements["WatchCutover"]["resources"]] == [
        ["execution", "payment-cutover-dev", "*"]]
    assert not [sid for sid, s in statements.items()
                if "states:StopExecution" in s["actions"] and any("payment-cutover-dev" in r for r in s["resources"])]
    assert "alarms-topic" in statements["Notify"]["resources"][0]
    # It reads the replication direction and the fence measurements, and changes neither.
    assert statements["ReadReplicationDirection"]["actions"] == ["dms:DescribeReplicationTasks"]
    assert statements["ReadFenceMeasurements"]["actions"] == ["cloudwatch:GetMetricData"]
    assert not [sid for sid, s in statements.items()
                if any(action.startswith("dms:") and action != "dms:DescribeReplicationTasks" for action in s["actions"])]
    assert not [sid for sid, s in statements.items() if "cloudwatch:PutMetricData" in s["actions"]]
    # Neither DescribeReplicationTasks nor GetMetricData supports a resource-level permission.
    wildcard = {sid for sid, s in statements.items() if "*" in s["resources"]}
    assert wildcard == {"UnscopableReads", "ReadReplicationDirection", "ReadFenceMeasurements"}, (
        f"wildcard resources beyond the unscopable: {wildcard}")


def test_the_validation_lambda_has_no_schedule_of_its_own(synthesized):
    """The schedule runs the cutover stack's validation scheduler: only the controller's role may keep
    the checkpoint slots that let most runs compare only what changed."""
    assert not synthesized.resources("validation", "aws_cloudwatch_event_rule")


def test_composite_alarm_reaches_the_rollback_lambda(synthesized):
    (subscription,) = synthesized.resources("validation", "aws_sns_topic_subscription").values()
    assert subscription["protocol"] == "lambda"
    assert "rollback-topic" in subscription["topic_arn"]
    assert subscription["endpoint"].startswith("${aws_lambda_function.rollback")
    permission = synthesized.resources("validation", "aws_lambda_permission")["rollback-from-alarm"]
    assert permission["principal"] == "sns.amazonaws.com" and "rollback-topic" in permission["source_arn"]
    (composite,) = synthesized.resources("monitoring", "aws_cloudwatch_composite_alarm").values()
    assert "${aws_sns_topic.rollback-topic.arn}" in composite["alarm_actions"]


def test_automatic_rollback_can_be_switched_off(synthesize):
    variant = synthesize(edited(r"^automatic_rollback = true.*$", "automatic_rollback = false"))
    assert not variant.resources("validation", "aws_sns_topic_subscription")
    assert "rollback-from-alarm" not in variant.resources("validation", "aws_lambda_permission")
    assert any(f["function_name"] == "payment-rollback-dev"
               for f in variant.resources("validation", "aws_lambda_function").values())


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
