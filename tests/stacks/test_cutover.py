"""cutover stack: the controller's state machines, the functions they call, and the rollback
function (manual and automatic)."""

from __future__ import annotations

import json

import pytest

from tests.support.configs import edited


def _functions(synthesized):
    return {f["function_name"]: f for f in synthesized.resources("cutover", "aws_lambda_function").values()}


def _statements(synthesized, prefix):
    (document,) = [d for n, d in synthesized.data("cutover", "aws_iam_policy_document").items()
                   if n.startswith(f"{prefix}_permissions")]
    return {s["sid"]: s for s in document["statement"]}


def _machines(synthesized):
    return {m["name"]: m for m in synthesized.resources("cutover", "aws_sfn_state_machine").values()}


def _machine_arn(synthesized, name):
    """The reference to state machine `name`'s ARN attribute in this stack."""
    (address,) = [address for address, machine in synthesized.resources("cutover", "aws_sfn_state_machine").items()
                  if machine["name"] == name]
    return f"${{aws_sfn_state_machine.{address}.arn}}"


def _executions_of(machine_arn):
    return f'${{join("", [replace({machine_arn[2:-1]}, ":stateMachine:", ":execution:"), ":*"])}}'


def test_three_state_machines_logged_and_traced(synthesized):
    machines = _machines(synthesized)
    assert set(machines) == {"payment-advance-dev", "payment-cutover-dev", "payment-writer-rollback-dev"}
    for name, machine in machines.items():
        assert machine["type"] == "STANDARD"
        assert machine["tracing_configuration"] == {"enabled": True}, name
        assert machine["logging_configuration"]["level"] == "ALL", name
        assert machine["logging_configuration"]["log_destination"].endswith(":*"), name
        definition = json.loads(machine["definition"])
        assert definition["StartAt"] in definition["States"], name


def test_cutover_fences_then_proves_replication_then_validates_before_anything_opens(synthesized):
    states = json.loads(_machines(synthesized)["payment-cutover-dev"]["definition"])["States"]
    # The happy path: not already switched, every validation PASSED.
    order, state = [], "Preflight"
    while state != "Done":
        order.append(state)
        body = states[state]
        if body["Type"] == "Choice":
            state = body["Default"] if state == "AlreadySwitched?" else body["Choices"][0]["Next"]
        else:
            state = body["Next"]
    tasks = [name for name in order if states[name]["Type"] == "Task"]
    assert tasks == ["Preflight", "Checkpoint", "ValidateLive", "CatchUp", "Fence", "WaitReplication", "Validate",
                     "AdvanceSequences", "ValidateSequences", "SwitchReplication", "ProveFence", "Open", "SetWriter",
                     "ReplicationAlarms", "MoveTraffic"]
    # the full comparison runs before the fence; inside it, only what changed and the sequences alone
    assert "recheck_rounds" not in states["ValidateLive"]["Parameters"]["Payload"], "the live replica needs rechecks"
    assert states["Validate"]["Parameters"]["Payload"]["step"] == "validate_changes"
    assert states["Validate"]["Parameters"]["FunctionName"] == states["Fence"]["Parameters"]["FunctionName"]
    assert states["ValidateSequences"]["Parameters"]["Payload"]["sequences_only"] is True
    assert states["WaitReplication"]["Retry"][-1]["ErrorEquals"] == ["ReplicationBehind", "SwitchPending",
                                                                     "DatabaseUnavailable", "AwsUnavailable"]
    for name in ("Fence", "WaitReplication", "AdvanceSequences", "SwitchReplication", "ProveFence", "Open",
                 "SetWriter"):
        assert states[name]["Catch"][0]["Next"] == "Abort", f"{name} failing must reach the abort path"


def test_step_function_in_the_vpc_as_the_controller_on_both_sides(synthesized):
    function = _functions(synthesized)["payment-cutover-steps-dev"]
    env = function["environment"]["variables"]
    assert "controller" in json.dumps(function["vpc_config"]["security_group_ids"])
    assert "onprem-payment_controller" in env["ONPREM_DB_SECRET_ARN"]
    assert "aws-payment_controller" in env["AURORA_DB_SECRET_ARN"]
    assert (env["REPLICATION_DRIVER"], env["APPLICATION_ROLES"]) == ("dms", "payment_app,payment_onprem_app")
    assert (env["FORWARD_SLOT_NAME"], env["FALLBACK_SLOT_NAME"]) == ("payment_dev_forward", "payment_dev_fallback")
    assert env["TABLES"] == "customers,payments,transactions,audit_log"
    assert function["timeout"] > int(env["WAIT_SECONDS"]), "an invocation must outlast its own wait"
    assert function["reserved_concurrent_executions"] == 2


def test_step_role_switches_exactly_the_three_tasks_and_writes_only_the_writer(synthesized):
    statements = _statements(synthesized, "steps")
    assert statements["Writer"]["actions"] == ["ssm:GetParameter", "ssm:PutParameter"]
    assert len(statements["SwitchDirections"]["resources"]) == 3
    assert all("replication_task" in arn for arn in statements["SwitchDirections"]["resources"])
    metrics = statements["SlotAndFenceMetrics"]
    assert metrics["condition"] == [{"test": "StringEquals", "variable": "cloudwatch:namespace",
                                     "values": ["PaymentMigration"]}]


def test_step_role_tests_the_connections_of_the_four_endpoints_only(synthesized):
    tested = _statements(synthesized, "steps")["TestEndpoints"]
    assert tested["actions"] == ["dms:TestConnection"]
    resources = tested["resources"]
    assert len(resources) == 5, resources
    assert sum("aws_dms_endpoint" in arn for arn in resources) == 4, resources
    assert sum("aws_dms_replication_instance" in arn for arn in resources) == 1, resources


def test_step_function_starts_the_forward_direction_again_with_the_cdc_only_task(synthesized):
    env = _functions(synthesized)["payment-cutover-steps-dev"]["environment"]["variables"]
    assert "aws_dms_replication_taskforward-cdc" in env["DMS_FORWARD_CDC_TASK_ARN"].replace(".", "")
    assert "forward-cdc" not in env["DMS_FORWARD_TASK_ARN"]


def test_traffic_function_outside_the_vpc_moves_only_the_weighted_pair(synthesized):
    function = _functions(synthesized)["payment-cutover-traffic-dev"]
    assert "vpc_config" not in function, "moving clients must not depend on the VPC"
    assert function["handler"] == "payment_rollback.traffic.lambda_handler"
    env = function["environment"]["variables"]
    assert env["ROLLBACK_ALARM_NAMES"].count(",") == 5 and env["HEALTH_ALARM_REGION"] == "us-east-1"
    statements = _statements(synthesized, "traffic")
    conditions = {c["variable"] for c in statements["WeightedPairOnly"]["condition"]}
    assert conditions == {"route53:ChangeResourceRecordSetsNormalizedRecordNames",
                          "route53:ChangeResourceRecordSetsRecordTypes", "route53:ChangeResourceRecordSetsActions"}
    actions = statements["ReplicationAlarmActions"]
    assert all(":alarm:" in arn and "dms-" in arn for arn in actions["resources"]) and len(actions["resources"]) == 4
    # SetAlarmState: an alarm already in ALARM when its actions go on is put back to OK.
    assert sorted(actions["actions"]) == ["cloudwatch:DisableAlarmActions", "cloudwatch:EnableAlarmActions",
                                          "cloudwatch:SetAlarmState"]


@pytest.mark.parametrize("machine,functions", [
    ("advance", {"traffic", "validator", "rollback"}),
    ("cutover", {"steps", "traffic", "validator"}),
    ("writer-rollback", {"steps", "traffic", "validator"}),
])
def test_each_state_machine_may_invoke_exactly_the_functions_it_calls(synthesized, machine, functions):
    (document,) = [d for n, d in synthesized.data("cutover", "aws_iam_policy_document").items()
                   if n.startswith(f"{machine}_permissions")]
    invoke = {s["sid"]: s for s in document["statement"]}["InvokeSteps"]
    assert invoke["actions"] == ["lambda:InvokeFunction"] and len(invoke["resources"]) == 2 * len(functions)
    named = {name for name in ("steps", "traffic", "validator", "rollback")
             if any(name in arn for arn in invoke["resources"])}
    assert named == functions


def test_slot_and_fence_metrics_are_published_every_minute(synthesized):
    rule = synthesized.resources("cutover", "aws_cloudwatch_event_rule")["metrics-schedule"]
    assert rule["schedule_expression"] == "rate(1 minute)"
    target = synthesized.resources("cutover", "aws_cloudwatch_event_target")["metrics-target"]
    assert json.loads(target["input"]) == {"step": "publish_metrics"}


def test_the_scheduled_validation_runs_as_the_controller_with_a_full_pass_at_most_daily(synthesized):
    rule = synthesized.resources("cutover", "aws_cloudwatch_event_rule")["validation-schedule"]
    assert rule["schedule_expression"] == "rate(1 hour)"
    target = synthesized.resources("cutover", "aws_cloudwatch_event_target")["validation-schedule-target"]
    assert json.loads(target["input"]) == {"step": "scheduled_validation"}
    assert "validation-scheduler" in target["arn"]
    function = _functions(synthesized)["payment-validation-scheduler-dev"]
    env = function["environment"]["variables"]
    assert env["FULL_EVERY_SECONDS"] == "86400"
    assert (env["RECHECK_ROUNDS"], env["RECHECK_SECONDS"]) == ("3", "5")
    assert "aws-payment_controller" in env["AURORA_DB_SECRET_ARN"], "slots are the controller's to make and read"
    assert function["timeout"] == 900, "a full pass runs for minutes: not the steps' short timeout"
    assert function["reserved_concurrent_executions"] == 1
    permissions = synthesized.resources("cutover", "aws_lambda_permission")
    assert permissions["validation-schedule-invoke"]["source_arn"] == (
        "${aws_cloudwatch_event_rule.validation-schedule.arn}")


@pytest.mark.parametrize("stack", ["validation-dev", "monitoring-dev", "security-dev"])
def test_nothing_reads_the_cutover_stack(synthesized, stack):
    assert "cutover-dev" not in synthesized.manifest["stacks"][stack].get("dependencies", [])


def test_the_step_bundle_carries_the_validation_engine(synthesized):
    """The fenced Validate state and the validation scheduler compare with the validation engine in
    the step function's own zip (the slots they read need the controller's role)."""
    import zipfile

    from lib.bundler import DEFAULT_OUT_DIR

    with zipfile.ZipFile(DEFAULT_OUT_DIR / "cutover.zip") as bundle:
        names = set(bundle.namelist())
    assert {"payment_cutover/steps.py", "payment_validation/engine.py", "payment_validation/changes.py",
            "payment_validation/queries.py"} <= names


def test_the_cutover_starts_with_the_legacy_gate_and_the_steps_know_the_mode(synthesized):
    machines = _machines(synthesized)
    cutover = json.loads(machines["payment-cutover-dev"]["definition"])
    states = cutover["States"]
    assert cutover["StartAt"] == "OnpremApplication" and states["OnpremApplication"]["Next"] == "RoutingStatus"
    gate = states["LegacyGate"]["Parameters"]["Payload"]
    assert gate["step"] == "legacy_gate" and gate["weights.$"] == "$.routing.result.weights", gate
    assert states["LegacySettled?"]["Choices"][0]["Next"] == "Preflight"
    assert states["LegacyWait"]["Next"] == "RoutingStatus", "the routing is read again at every check"
    advance = json.loads(machines["payment-advance-dev"]["definition"])["States"]
    assert "OnpremApplicationFenced" in advance and "CutoverFirst" not in advance, \
        "dev's on-prem application is legacy: aws-primary comes before the data cutover"
    functions = synthesized.resources("cutover", "aws_lambda_function")
    controllers = [body for body in functions.values() if "LEGACY_WINDOW_SECONDS" in str(body)]
    assert controllers, "no function of the cutover stack is told the legacy window"
    environment = controllers[0]["environment"]["variables"]
    assert environment["ONPREM_APPLICATION"] == "legacy"
    assert environment["ONPREM_APPLICATION_ROLE"] == "payment_onprem_app"
    assert environment["LEGACY_WINDOW_SECONDS"] == "90", "routing.ttl_seconds 60 + legacy_margin_seconds 30"
    assert environment["APPLICATION_ROLES"] == "payment_app,payment_onprem_app"


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
    # The writer rollback it starts and the cutover it waits for: this stack's state machines.
    assert env["ROLLBACK_STATE_MACHINE_ARN"] == _machine_arn(synthesized, "payment-writer-rollback-dev")
    assert env["CUTOVER_STATE_MACHINE_ARN"] == _machine_arn(synthesized, "payment-cutover-dev")
    # The advance machine invokes this function, so this function knows it by name (no cycle).
    assert env["ADVANCE_STATE_MACHINE_ARN"].endswith(":stateMachine:payment-advance-dev")
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
    writer_rollback, cutover = (_machine_arn(synthesized, name)
                                for name in ("payment-writer-rollback-dev", "payment-cutover-dev"))
    assert statements["StartWriterRollback"]["resources"] == [writer_rollback]
    assert statements["WatchWriterRollback"]["resources"] == [_executions_of(writer_rollback)]
    listing = statements["FindControllerExecutions"]
    assert listing["actions"] == ["states:ListExecutions"]
    assert listing["resources"][0].endswith(":stateMachine:payment-advance-dev")
    assert listing["resources"][1:] == [cutover]
    # An advance may be stopped; a cutover only watched: it is never stopped mid-way.
    stop_advance = statements["StopAdvance"]
    assert sorted(stop_advance["actions"]) == ["states:DescribeExecution", "states:GetExecutionHistory",
                                               "states:StopExecution"]
    assert [arn.rsplit(":", 3)[-3:] for arn in stop_advance["resources"]] == [["execution", "payment-advance-dev", "*"]]
    assert statements["WatchCutover"]["actions"] == ["states:DescribeExecution"]
    assert statements["WatchCutover"]["resources"] == [_executions_of(cutover)]
    assert not [sid for sid, s in statements.items()
                if "states:StopExecution" in s["actions"] and any(cutover[2:-1] in r for r in s["resources"])]
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


def test_composite_alarm_reaches_the_rollback_lambda(synthesized):
    (subscription,) = synthesized.resources("cutover", "aws_sns_topic_subscription").values()
    assert subscription["protocol"] == "lambda"
    assert "rollback-topic" in subscription["topic_arn"]
    assert subscription["endpoint"].startswith("${aws_lambda_function.rollback")
    permission = synthesized.resources("cutover", "aws_lambda_permission")["rollback-from-alarm"]
    assert permission["principal"] == "sns.amazonaws.com" and "rollback-topic" in permission["source_arn"]
    (composite,) = synthesized.resources("monitoring", "aws_cloudwatch_composite_alarm").values()
    assert "${aws_sns_topic.rollback-topic.arn}" in composite["alarm_actions"]


def test_automatic_rollback_can_be_switched_off(synthesize):
    variant = synthesize(edited(r"^automatic_rollback = true.*$", "automatic_rollback = false"))
    assert not variant.resources("cutover", "aws_sns_topic_subscription")
    assert "rollback-from-alarm" not in variant.resources("cutover", "aws_lambda_permission")
    assert any(f["function_name"] == "payment-rollback-dev"
               for f in variant.resources("cutover", "aws_lambda_function").values())




def test_the_rollback_dead_letters_alarm(synthesized):
    alarm = synthesized.resources("cutover", "aws_cloudwatch_metric_alarm")["rollback-dead-letters"]
    assert alarm["alarm_name"] == "payment-rollback-dead-letters-dev"
    assert "rollback_dead-letters" in alarm["dimensions"]["QueueName"]
    assert "alarms-topic" in alarm["alarm_actions"][0]


def test_one_zip_for_the_traffic_and_rollback_functions_one_wiring_of_the_weighted_pair(synthesized):
    functions = _functions(synthesized)
    traffic, rollback = functions["payment-cutover-traffic-dev"], functions["payment-rollback-dev"]
    assert traffic["filename"] == rollback["filename"]
    pair = ("HOSTED_ZONE_ID", "RECORD_NAME", "RECORD_TYPE", "ONPREM_SET_IDENTIFIER", "AWS_SET_IDENTIFIER",
            "WRITER_PARAMETER")
    assert ({key: traffic["environment"]["variables"][key] for key in pair}
            == {key: rollback["environment"]["variables"][key] for key in pair})
    for sid in ("ReadRecords", "WeightedPairOnly", "ChangeStatus", "ReadWriter"):
        assert _statements(synthesized, "traffic")[sid] == _statements(synthesized, "rollback")[sid], sid
