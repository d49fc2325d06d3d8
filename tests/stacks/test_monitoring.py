"""monitoring stack: topics, alarms with actions, composite alarm, dashboard with real dimensions."""

from __future__ import annotations

import json
import re

import pytest


def _alarms(synthesized):
    return synthesized.resources("monitoring", "aws_cloudwatch_metric_alarm")


def _dashboard(synthesized):
    (dashboard,) = synthesized.resources("monitoring", "aws_cloudwatch_dashboard").values()
    return json.loads(dashboard["dashboard_body"])


def test_topics_are_encrypted_with_a_key_cloudwatch_may_use(synthesized):
    topics = synthesized.resources("monitoring", "aws_sns_topic")
    assert set(topics) == {"alarms-topic", "rollback-topic"}
    for topic in topics.values():
        assert topic["kms_master_key_id"].startswith("${aws_kms_key.alarms-key")
    policy = synthesized.key_policy("monitoring", "alarms-key")
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == "CloudWatchAlarms"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_every_dashboard_metric_has_its_dimensions(synthesized):
    required = {
        "AWS/ApplicationELB": {"LoadBalancer"}, "AWS/Lambda": {"FunctionName"},
        "AWS/RDS": {"DBClusterIdentifier"},
        "AWS/DMS": {"ReplicationInstanceIdentifier", "ReplicationTaskIdentifier"},
        "PaymentMigration": {"service"},
    }
    # The controller publishes its replication-slot and fence metrics per side, not per service.
    by_metric = {("PaymentMigration", "ReplicationSlotLagBytes"): {"Side"}, ("PaymentMigration", "Fenced"): {"Side"}}
    metric_widgets = [w for w in _dashboard(synthesized)["widgets"] if w["type"] == "metric"]
    assert len(metric_widgets) >= 6
    for widget in metric_widgets:
        assert widget["properties"]["region"] == "eu-west-1"
        for entry in widget["properties"]["metrics"]:
            namespace, name, *rest = entry
            pairs = [item for item in rest if not isinstance(item, dict)]
            assert pairs and len(pairs) % 2 == 0, f"{namespace}/{name} has no dimensions"
            keys = set(pairs[0::2])
            needed = by_metric.get((namespace, name), required[namespace])
            assert needed <= keys, f"{namespace}/{name} lacks {needed - keys}"
            assert all(value for value in pairs[1::2]), f"{namespace}/{name} has an empty dimension"


def test_dashboard_dimensions_are_the_real_resources(synthesized):
    references = set(re.findall(r"cross-stack-output-([^}]+)}", json.dumps(_dashboard(synthesized))))
    expected = ("aws_lbalbarn_suffix", "aws_lb_target_groupapiarn_suffix", "function_name",
                "aws_rds_clusterclustercluster_identifier",
                "aws_dms_replication_instanceinstancereplication_instance_id",
                "aws_dms_replication_taskforwardresource_identifier")
    for output in expected:
        assert any(ref.endswith(output) for ref in references), f"dashboard does not use {output}: {references}"


def test_every_alarm_has_an_action(synthesized):
    for name, alarm in _alarms(synthesized).items():
        assert alarm["alarm_actions"] == ["${aws_sns_topic.alarms-topic.arn}"], f"{name} notifies nobody"
        if name.startswith("dms-fallback-"):
            continue  # the controller enables them when the fallback direction starts
        assert alarm.get("actions_enabled", True) is True, f"{name} has its actions disabled"


def test_replication_alarms_for_both_directions_breach_on_silence_and_belong_to_the_controller(synthesized):
    alarms = _alarms(synthesized)
    for direction, enabled in (("forward", True), ("fallback", False)):
        for side in ("source", "target"):
            alarm = alarms[f"dms-{direction}-latency-{side}"]
            assert alarm["treat_missing_data"] == "breaching", "a stopped task publishes nothing"
            assert alarm["actions_enabled"] is enabled
            assert alarm["lifecycle"]["ignore_changes"] == ["actions_enabled"]
            assert alarm["metric_name"] == f"CDCLatency{side.title()}" and alarm["threshold"] == 60
    assert "fallback" in alarms["dms-fallback-latency-source"]["dimensions"]["ReplicationTaskIdentifier"]
    for side in ("onprem", "aws"):
        slot = alarms[f"slot-lag-{side}"]
        assert (slot["metric_name"], slot["dimensions"]) == ("ReplicationSlotLagBytes", {"Side": side})
        assert slot["threshold"] == 1024 * 1024 * 1024


def test_dms_failures_and_state_changes_of_both_tasks_reach_the_alarm_topic(synthesized):
    (subscription,) = synthesized.resources("monitoring", "aws_dms_event_subscription").values()
    assert subscription["source_type"] == "replication-task"
    assert set(subscription["event_categories"]) == {"failure", "state change"}
    assert len(subscription["source_ids"]) == 3 and subscription["sns_topic_arn"] == "${aws_sns_topic.alarms-topic.arn}"
    (composite,) = synthesized.resources("monitoring", "aws_cloudwatch_composite_alarm").values()
    assert composite["alarm_actions"]


@pytest.mark.parametrize("alarm,namespace,metric,threshold", [
    ("alb-latency", "AWS/ApplicationELB", "TargetResponseTime", 1),
    ("api-errors", "AWS/Lambda", "Errors", 5),
    ("api-throttles", "AWS/Lambda", "Throttles", 1),
    ("aurora-cpu", "AWS/RDS", "CPUUtilization", 80),
    ("aurora-connections", "AWS/RDS", "DatabaseConnections", 500),
    ("validation-failed", "PaymentMigration", "ValidationFailed", 1),
    ("validation-errors", "AWS/Lambda", "Errors", 1),
    ("rollback-failed", "PaymentMigration", "RollbackInvocations", 1),
    ("rollback-partial", "PaymentMigration", "RollbackInvocations", 1),
    ("rollback-no-writer", "PaymentMigration", "RollbackInvocations", 1),
])
def test_alarm_watches_its_metric_with_threshold_from_config(synthesized, alarm, namespace, metric, threshold):
    body = _alarms(synthesized)[alarm]
    assert (body["namespace"], body["metric_name"], body["threshold"]) == (namespace, metric, threshold)
    assert body["dimensions"] and all(body["dimensions"].values())


def test_alb_5xx_alarm_is_a_rate_of_requests(synthesized):
    queries = {q["id"]: q for q in _alarms(synthesized)["alb-5xx"]["metric_query"]}
    assert {"elb5xx", "target5xx", "requests", "fenced", "failed", "rate"} == set(queries)
    assert queries["rate"]["return_data"] is True and "/ requests" in queries["rate"]["expression"]
    assert queries["requests"]["metric"]["dimensions"]["LoadBalancer"]


def test_alb_5xx_alarm_does_not_count_writes_refused_by_a_fence(synthesized):
    """A cutover's fenced window answers every write 503 writer_fenced: the rollback alarm must not
    roll the cutover back for the controller's own refusals."""
    queries = {q["id"]: q for q in _alarms(synthesized)["alb-5xx"]["metric_query"]}
    fenced = queries["fenced"]["metric"]
    assert (fenced["metric_name"], fenced["dimensions"], fenced["stat"]) == (
        "WriterFenced", {"service": "payment-api"}, "Sum")
    assert "- FILL(fenced, 0)" in queries["failed"]["expression"]
    assert "failed" in queries["rate"]["expression"] and "target5xx" not in queries["rate"]["expression"]
    functions = synthesized.resources("compute", "aws_lambda_function")
    (api,) = [f for f in functions.values() if f["environment"]["variables"].get("POWERTOOLS_SERVICE_NAME")]
    assert api["environment"]["variables"]["POWERTOOLS_SERVICE_NAME"] == fenced["dimensions"]["service"]
    assert api["environment"]["variables"]["POWERTOOLS_METRICS_NAMESPACE"] == fenced["namespace"]


def test_composite_alarm_covers_the_user_facing_alarms_and_reaches_the_rollback_topic(synthesized):
    (composite,) = synthesized.resources("monitoring", "aws_cloudwatch_composite_alarm").values()
    members = set(re.findall(r'ALARM\("([^"]+)"\)', composite["alarm_rule"]))
    assert members == {f"${{aws_cloudwatch_metric_alarm.{name}.alarm_name}}"
                       for name in ("api-failures", "api-latency", "alb-5xx", "alb-latency", "api-errors",
                                    "api-throttles")}
    assert "${aws_sns_topic.rollback-topic.arn}" in composite["alarm_actions"]
    for alarm in _alarms(synthesized).values():
        assert "${aws_sns_topic.rollback-topic.arn}" not in alarm["alarm_actions"], \
            "only the composite alarm may reach the rollback topic"


def test_an_alarm_per_database_secret_older_than_the_configured_age(synthesized):
    secrets = {s["name"] for s in synthesized.resources("security", "aws_secretsmanager_secret").values()}
    alarms = {name: alarm for name, alarm in _alarms(synthesized).items()
              if name.startswith("secret-age-") and name != "secret-age-check-failed"}
    assert len(alarms) == len(secrets) == 10
    assert {alarm["dimensions"]["SecretName"] for alarm in alarms.values()} == secrets
    for name, alarm in alarms.items():
        assert (alarm["namespace"], alarm["metric_name"]) == ("PaymentMigration", "SecretValueOverMaxAge"), name
        assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanOrEqualToThreshold", 1), name
        assert alarm["period"] == 86400 and "90 days" in alarm["alarm_description"], name


def test_a_failed_secret_age_check_alarms(synthesized):
    alarm = _alarms(synthesized)["secret-age-check-failed"]
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/States", "ExecutionsFailed")
    assert alarm["dimensions"]["StateMachineArn"].endswith(":stateMachine:payment-secret-age-dev")
    (machine,) = synthesized.resources("security", "aws_sfn_state_machine").values()
    assert machine["name"] == "payment-secret-age-dev"


def _math(expression: str, **values: float) -> float:
    """A CloudWatch metric-math IF(condition, a, b) over named series, evaluated for one datapoint:
    the expressions below use nothing else."""
    assert set(re.findall(r"[A-Za-z_]+", expression)) <= {"IF", *values}, f"unexpected terms in {expression}"
    return eval(expression, {"__builtins__": {}, "IF": lambda condition, a, b: a if condition else b}, values)


@pytest.mark.parametrize("alarm, fires_when", [
    ("two-writers", {(0, 0)}),   # neither side fenced
    ("no-writer", {(1, 1)}),     # both fenced
])
def test_writer_alarms_fire_on_exactly_their_fence_combination(synthesized, alarm, fires_when):
    from lib.stacks.compute import METRICS_NAMESPACE
    from lib.stacks.monitoring import NO_WRITER_MINUTES

    definition = _alarms(synthesized)[alarm]
    queries = {query["id"]: query for query in definition["metric_query"]}
    for side in ("onprem", "aws"):
        metric = queries[side]["metric"]
        assert (metric["metric_name"], metric["dimensions"], metric["stat"]) == ("Fenced", {"Side": side}, "Minimum")
        assert metric["namespace"] == METRICS_NAMESPACE
    (result,) = [query for query in queries.values() if query.get("return_data")]
    assert definition["comparison_operator"] == "GreaterThanOrEqualToThreshold" and definition["threshold"] == 1
    firing = {(onprem, aws) for onprem in (0, 1) for aws in (0, 1)
              if _math(result["expression"], onprem=onprem, aws=aws) >= definition["threshold"]}
    assert firing == fires_when
    assert definition["evaluation_periods"] == (1 if alarm == "two-writers" else NO_WRITER_MINUTES)
    assert definition["alarm_actions"] == ["${aws_sns_topic.alarms-topic.arn}"]


def test_a_side_whose_fence_nobody_measures_alarms(synthesized):
    alarms = _alarms(synthesized)
    for side in ("onprem", "aws"):
        alarm = alarms[f"fence-unseen-{side}"]
        assert (alarm["metric_name"], alarm["dimensions"], alarm["statistic"]) == ("Fenced", {"Side": side}, "SampleCount")
        assert alarm["treat_missing_data"] == "breaching" and alarm["comparison_operator"] == "LessThanThreshold"


def test_a_breached_fence_alarms_on_the_step_functions_own_metric(synthesized):
    from lib.stacks.compute import METRICS_NAMESPACE

    alarm = _alarms(synthesized)["fence-breached"]
    assert (alarm["namespace"], alarm["metric_name"], alarm["dimensions"]) == (
        METRICS_NAMESPACE, "CutoverStepFailedFenceBreached", {"service": "cutover"})
    assert (alarm["statistic"], alarm["threshold"], alarm["comparison_operator"]) == ("Sum", 0, "GreaterThanThreshold")
    steps_function = [function for function in synthesized.resources("cutover", "aws_lambda_function").values()
                      if function["environment"]["variables"].get("POWERTOOLS_SERVICE_NAME") == "cutover"]
    assert steps_function and steps_function[0]["environment"]["variables"]["POWERTOOLS_METRICS_NAMESPACE"] == \
        METRICS_NAMESPACE, "the alarm watches a namespace or service the step function does not publish to"


def test_the_writer_alarms_call_people_not_the_automatic_rollback(synthesized):
    (composite,) = synthesized.resources("monitoring", "aws_cloudwatch_composite_alarm").values()
    for name in ("two-writers", "no-writer", "fence-unseen-onprem", "fence-unseen-aws", "fence-breached"):
        assert name not in composite["alarm_rule"], f"{name} would move traffic on its own"


def test_the_apis_own_alarms_use_10_second_periods_of_its_high_resolution_metrics(synthesized):
    alarms = _alarms(synthesized)
    failures, latency = alarms["api-failures"], alarms["api-latency"]
    for alarm in (failures, latency):
        assert alarm["period"] == 10 and alarm["evaluation_periods"] == 3, alarm
        assert alarm["namespace"] == "PaymentMigration" and alarm["dimensions"] == {"service": "payment-api"}, alarm
    assert (failures["metric_name"], failures["statistic"], failures["threshold"]) == ("ServerError", "Sum", 3)
    assert (latency["metric_name"], latency["extended_statistic"], latency["threshold"]) == (
        "RequestLatency", "p95", 1000)
