"""cutover stack: the controller's state machines and the two functions they call."""

from __future__ import annotations

import json

import pytest


def _functions(synthesized):
    return {f["function_name"]: f for f in synthesized.resources("cutover", "aws_lambda_function").values()}


def _statements(synthesized, prefix):
    (document,) = [d for n, d in synthesized.data("cutover", "aws_iam_policy_document").items()
                   if n.startswith(f"{prefix}_permissions")]
    return {s["sid"]: s for s in document["statement"]}


def _machines(synthesized):
    return {m["name"]: m for m in synthesized.resources("cutover", "aws_sfn_state_machine").values()}


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
