"""An alarm source for secrets that nobody rotated: every day, a Step Functions execution notes
each secret's versions, waits `max_age_days`, and looks again. A secret that got no new version
in between has held the same value for at least that long: the execution publishes 1 for it
(`SecretValueOverMaxAge`, dimension `SecretName`), else 0; the monitoring stack alarms on 1.

The database secrets rotate by hand (README, "Rotating a database credential"): a rotation
Lambda cannot reach the on-prem servers' superuser, and the fence revokes and grants the
application roles by name, which multi-user rotation's alternating `_clone` users would escape.
So what is watched is whether the operator did it, with no code of our own to run: Step
Functions' own AWS SDK integrations (ListSecretVersionIds reads version ids and labels, never a
value) and Wait state. A day's execution lasts `max_age_days`; Standard workflows run up to a year.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from constructs import Construct

from lib.cdk.aws.cloudwatch_event_rule import CloudwatchEventRule
from lib.cdk.aws.cloudwatch_event_target import CloudwatchEventTarget
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy import IamRolePolicy
from lib.constructs.iam import allow, assume_role_policy, policy_document
from lib.constructs.state_machine import StateMachine

# The project's metric namespace (the Lambdas' POWERTOOLS_METRICS_NAMESPACE).
NAMESPACE = "PaymentMigration"
METRIC_NAME = "SecretValueOverMaxAge"
DIMENSION = "SecretName"
LIST_VERSIONS = "arn:aws:states:::aws-sdk:secretsmanager:listSecretVersionIds"
PUT_METRIC = "arn:aws:states:::aws-sdk:cloudwatch:putMetricData"
SECONDS_PER_DAY = 86_400
RETRY = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 3, "BackoffRate": 2.0}]


@dataclass(frozen=True)
class WatchedSecret:
    name: str
    arn: str


def secret_age_definition(*, secrets: Sequence[WatchedSecret], wait_seconds: int) -> dict:
    """The state machine: note every secret's version ids, wait, compare, publish 1 per secret
    without a new version (0 otherwise). Version ids, not timestamps: nothing to parse or compare
    across clocks, and a put always makes a new id."""

    def list_versions(result_path: str, next_state: str) -> dict:
        # Labelled versions only (AWSCURRENT, AWSPREVIOUS, …): deprecated ones are not values in use.
        return {"Type": "Task", "Resource": LIST_VERSIONS, "Parameters": {"SecretId.$": "$.arn"},
                "ResultSelector": {"ids.$": "$.Versions[*].VersionId"}, "ResultPath": result_path,
                "Retry": RETRY, "Next": next_state}

    def publish(value: int) -> dict:
        return {"Type": "Task", "Resource": PUT_METRIC, "Retry": RETRY, "ResultPath": None, "End": True,
                "Parameters": {"Namespace": NAMESPACE, "MetricData": [{
                    "MetricName": METRIC_NAME, "Unit": "Count", "Value": value,
                    "Dimensions": [{"Name": DIMENSION, "Value.$": "$.name"}]}]}}

    snapshot = {"StartAt": "ListBefore", "States": {"ListBefore": {**list_versions("$.before", "Noted")},
                                                      "Noted": {"Type": "Succeed"}}}
    compare_one = {"StartAt": "Known", "States": {
        "Known": {"Type": "Pass", "Parameters": {"known.$": "States.ArrayContains($.before, $.id)"},
                  "Next": "IsNew"},
        "IsNew": {"Type": "Choice", "Choices": [{"Variable": "$.known", "BooleanEquals": False, "Next": "New"}],
                  "Default": "Old"},
        "New": {"Type": "Pass", "Result": "new", "End": True},
        "Old": {"Type": "Pass", "Result": "old", "End": True},
    }}
    check_one = {"StartAt": "ListAfter", "States": {
        "ListAfter": list_versions("$.after", "Compare"),
        "Compare": {"Type": "Map", "ItemsPath": "$.after.ids",
                    "ItemSelector": {"id.$": "$$.Map.Item.Value", "before.$": "$.before.ids"},
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **compare_one},
                    "ResultPath": "$.verdicts", "Next": "Changed"},
        "Changed": {"Type": "Pass", "Next": "Verdict",
                    "Parameters": {"name.$": "$.name", "changed.$": "States.ArrayContains($.verdicts, 'new')"}},
        "Verdict": {"Type": "Choice", "Choices": [{"Variable": "$.changed", "BooleanEquals": True, "Next": "Fresh"}],
                    "Default": "Stale"},
        "Fresh": publish(0),
        "Stale": publish(1),
    }}
    return {
        "Comment": "A secret without a new version for the whole wait has held one value at least that long",
        "StartAt": "Secrets",
        "States": {
            "Secrets": {"Type": "Pass", "Result": [{"name": s.name, "arn": s.arn} for s in secrets],
                        "ResultPath": "$.secrets", "Next": "Snapshot"},
            "Snapshot": {"Type": "Map", "ItemsPath": "$.secrets", "MaxConcurrency": 2,
                         "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **snapshot},
                         "ResultPath": "$.secrets", "Next": "Hold"},
            "Hold": {"Type": "Wait", "Seconds": wait_seconds, "Next": "Check"},
            "Check": {"Type": "Map", "ItemsPath": "$.secrets", "MaxConcurrency": 2,
                      "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **check_one},
                      "ResultPath": None, "End": True},
        },
    }


class SecretAgeWatch(Construct):
    """The daily execution of `secret_age_definition` over `secrets`: a state machine whose role
    may list versions of those secrets and put metrics in NAMESPACE only, and the schedule that
    starts it."""

    def __init__(self, scope: Construct, id_: str, *, name: str, secrets: Sequence[WatchedSecret],
                 max_age_days: int, logs_key_arn: str, log_retention_days: int, account_id: str) -> None:
        super().__init__(scope, id_)
        self.state_machine = StateMachine(
            self, "check", name=name, description="the age of the database secrets' values",
            definition=secret_age_definition(secrets=secrets, wait_seconds=max_age_days * SECONDS_PER_DAY),
            functions=[], account_id=account_id, logs_key_arn=logs_key_arn, log_retention_days=log_retention_days,
            statements=[
                allow(["secretsmanager:ListSecretVersionIds"], [s.arn for s in secrets], sid="ListVersions"),
                allow(["cloudwatch:PutMetricData"], ["*"], sid="PublishAge",
                      conditions=[("StringEquals", "cloudwatch:namespace", [NAMESPACE])]),
            ])
        schedule = CloudwatchEventRule(self, "schedule", name=name, schedule_expression="rate(1 day)",
                                       description="Starts the daily secret age check")
        start = IamRole(self, "start-role", name=f"{name}-start", description="EventBridge starts the secret age check",
                        assume_role_policy=assume_role_policy(self, "start-trust", "events.amazonaws.com",
                                                              account_id=account_id).json)
        IamRolePolicy(self, "start-policy", role=start.id, name="start-execution",
                      policy=policy_document(self, "start-permissions", [
                          allow(["states:StartExecution"], [self.state_machine.arn], sid="StartCheck"),
                      ]).json)
        CloudwatchEventTarget(self, "target", rule=schedule.name, arn=self.state_machine.arn, role_arn=start.arn)
        self.state_machine_arn = self.state_machine.arn
