"""What the routing, monitoring, migration and cutover stacks leave behind, built on a moto server: a
hosted zone with the weighted record set (on-prem A records + the AWS side, by default an alias to a
real moto ALB; no health check on either, as the routing stack has it), the writer parameter, the
alarms the traffic steps read (rollback and replication alarms in the function's region, health
alarms in us-east-1), the alarm topic with an SQS queue subscribed so tests can read what the
rollback published, the three DMS tasks (forward running), and each side's `Fenced` measurement as
the controller's publish_metrics step puts it (the writer open, the other side fenced). Rollback state machines are made on demand (`create_rollback_machine`), because moto
runs only those created while execution is switched on.

A world is built once per test module and put back as it was built before each test
(`World.restore`): building it again costs more than undoing what a test changed.

Shared by the tests and bench/rollback_bench.py, with the small fake Lambda context both use.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3

ZONE_NAME = "payments.migration.test."
RECORD_NAME = f"api.{ZONE_NAME}"
ONPREM_SET_IDENTIFIER = "onprem"
AWS_SET_IDENTIFIER = "aws"
ONPREM_ADDRESSES = ("192.0.2.10", "192.0.2.11")  # RFC 5737 documentation range
AWS_ADDRESSES = ("198.51.100.20",)
TTL = 60
REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"  # moto's default account
HEALTH_ALARM_REGION = "us-east-1"
WRITER_PARAMETER = "/payment-migration/test/writer"
ROLLBACK_MACHINE_NAME = "payment-migration-rollback-test"
ROLLBACK_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{ROLLBACK_MACHINE_NAME}"
# The controller's state machines the rollback stops (advance) or waits for (cutover).
ADVANCE_MACHINE_NAME = "payment-migration-advance-test"
ADVANCE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{ADVANCE_MACHINE_NAME}"
CUTOVER_MACHINE_NAME = "payment-migration-cutover-test"
CUTOVER_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{CUTOVER_MACHINE_NAME}"
ROLLBACK_ALARM_NAMES = ("payments-cutover-unhealthy-test", "payments-alb-5xx-test")
HEALTH_ALARM_NAMES = ("payments-onprem-unhealthy-test", "payments-aws-unhealthy-test")
FORWARD_ALARM_NAMES = ("payments-forward-task-state-test", "payments-forward-latency-test")
FALLBACK_ALARM_NAMES = ("payments-fallback-task-state-test", "payments-fallback-latency-test")
METRICS_NAMESPACE = "PaymentMigration"
TASK_ROLES = ("forward", "forward-cdc", "fallback")
TASK_VARIABLES = {"forward": "DMS_FORWARD_TASK_ARN", "forward-cdc": "DMS_FORWARD_CDC_TASK_ARN",
                  "fallback": "DMS_FALLBACK_TASK_ARN"}
# The world's own fence measurement is this old, so that a test's own (at "now") falls in a later
# minute and is the newest.
WORLD_FENCE_AGE_SECONDS = 150

# What each handler reads from its environment, as the stacks would set it.
ROLLBACK_ENVIRONMENT = (
    "HOSTED_ZONE_ID",
    "RECORD_NAME",
    "RECORD_TYPE",
    "ONPREM_SET_IDENTIFIER",
    "AWS_SET_IDENTIFIER",
    "SNS_TOPIC_ARN",
    "WRITER_PARAMETER",
    "ROLLBACK_STATE_MACHINE_ARN",
    "ADVANCE_STATE_MACHINE_ARN",
    "CUTOVER_STATE_MACHINE_ARN",
    *TASK_VARIABLES.values(),
)
TRAFFIC_ENVIRONMENT = (
    "HOSTED_ZONE_ID",
    "RECORD_NAME",
    "RECORD_TYPE",
    "ONPREM_SET_IDENTIFIER",
    "AWS_SET_IDENTIFIER",
    "ROLLBACK_ALARM_NAMES",
    "HEALTH_ALARM_NAMES",
    "HEALTH_ALARM_REGION",
    "FORWARD_ALARM_NAMES",
    "FALLBACK_ALARM_NAMES",
    "WRITER_PARAMETER",
)


@dataclass
class World:
    route53: Any
    sns: Any
    sqs: Any
    ssm: Any
    stepfunctions: Any
    cloudwatch: Any
    health_cloudwatch: Any
    zone_id: str
    topic_arn: str
    queue_url: str | None
    writer_rollback_wait_seconds: float = 10
    machines: dict[str, str] = field(default_factory=dict)
    awslambda: Any = None
    iam: Any = None
    dms: Any = None
    task_arns: dict[str, str] = field(default_factory=dict)  # by role: forward, forward-cdc, fallback
    # Where the fence measurements go: CloudWatch cannot delete a datapoint, so each restore starts a
    # namespace of its own, in which no earlier test measured anything.
    metrics_namespace: str = METRICS_NAMESPACE
    built: dict[str, Any] = field(default_factory=dict)  # state() as build_world left it

    def environment(self) -> dict[str, str]:
        """What the stacks set on the rollback and traffic functions (the union of both)."""
        return {
            "HOSTED_ZONE_ID": self.zone_id,
            "RECORD_NAME": RECORD_NAME,
            "RECORD_TYPE": "A",
            "ONPREM_SET_IDENTIFIER": ONPREM_SET_IDENTIFIER,
            "AWS_SET_IDENTIFIER": AWS_SET_IDENTIFIER,
            "SNS_TOPIC_ARN": self.topic_arn,
            "WRITER_PARAMETER": WRITER_PARAMETER,
            "ROLLBACK_STATE_MACHINE_ARN": ROLLBACK_MACHINE_ARN,
            "ADVANCE_STATE_MACHINE_ARN": ADVANCE_MACHINE_ARN,
            "CUTOVER_STATE_MACHINE_ARN": CUTOVER_MACHINE_ARN,
            "WRITER_ROLLBACK_WAIT_SECONDS": str(self.writer_rollback_wait_seconds),
            "ROLLBACK_ALARM_NAMES": ",".join(ROLLBACK_ALARM_NAMES),
            "HEALTH_ALARM_NAMES": ",".join(HEALTH_ALARM_NAMES),
            "HEALTH_ALARM_REGION": HEALTH_ALARM_REGION,
            "FORWARD_ALARM_NAMES": ",".join(FORWARD_ALARM_NAMES),
            "FALLBACK_ALARM_NAMES": ",".join(FALLBACK_ALARM_NAMES),
            **{TASK_VARIABLES[role]: arn for role, arn in self.task_arns.items()},
            "FENCE_METRICS_NAMESPACE": self.metrics_namespace,
        }

    def members(self) -> dict[str, dict[str, Any]]:
        """The weighted members of RECORD_NAME A, by set identifier, read from Route 53 itself."""
        records = self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)
        return {
            record["SetIdentifier"]: record
            for record in records["ResourceRecordSets"]
            if record["Name"] == RECORD_NAME and record["Type"] == "A" and "SetIdentifier" in record
        }

    def weights(self) -> dict[str, int]:
        return {identifier: record["Weight"] for identifier, record in self.members().items()}

    def set_weights(self, onprem: int, aws: int) -> None:
        members = self.members()
        self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {**members[identifier], "Weight": weight},
                    }
                    for identifier, weight in (
                        (ONPREM_SET_IDENTIFIER, onprem),
                        (AWS_SET_IDENTIFIER, aws),
                    )
                ]
            },
        )

    def delete_member(self, identifier: str) -> None:
        self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": self.members()[identifier]}]
            },
        )

    def writer(self) -> dict[str, Any]:
        return json.loads(self.ssm.get_parameter(Name=WRITER_PARAMETER)["Parameter"]["Value"])

    def set_writer(self, writer: str, epoch: int) -> None:
        self.ssm.put_parameter(
            Name=WRITER_PARAMETER,
            Type="String",
            Overwrite=True,
            Value=writer_document(writer, epoch, "set by the test world"),
        )

    def publish_fence(self, *, onprem: float | None, aws: float | None, seconds_ago: float = 0) -> None:
        """Each side's `Fenced` (1 fenced, 0 open; None: not measured), as publish_metrics puts it."""
        timestamp = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
        data = [{"MetricName": "Fenced", "Dimensions": [{"Name": "Side", "Value": side}], "Timestamp": timestamp,
                 "Value": value, "Unit": "None"}
                for side, value in (("onprem", onprem), ("aws", aws)) if value is not None]
        if data:
            self.cloudwatch.put_metric_data(Namespace=self.metrics_namespace, MetricData=data)

    def publish_writer_fence(self) -> None:
        """The measurement of a world at rest: the writer parameter's side open, the other fenced, a
        little while ago."""
        writer = self.writer()["writer"]
        self.publish_fence(onprem=0 if writer == "onprem" else 1, aws=0 if writer == "aws" else 1,
                           seconds_ago=WORLD_FENCE_AGE_SECONDS)

    def task_statuses(self) -> dict[str, str]:
        tasks = self.dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": list(self.task_arns.values())}])["ReplicationTasks"]
        by_arn = {task["ReplicationTaskArn"]: task["Status"] for task in tasks}
        return {role: by_arn[arn] for role, arn in self.task_arns.items()}

    def run_tasks(self, *running: str) -> None:
        """The named task roles running, every other one stopped (as a direction switch leaves them)."""
        for role, status in self.task_statuses().items():
            if role in running and status != "running":
                self.dms.start_replication_task(ReplicationTaskArn=self.task_arns[role],
                                                StartReplicationTaskType="start-replication")
            elif role not in running and status == "running":
                self.dms.stop_replication_task(ReplicationTaskArn=self.task_arns[role])

    def alarm(self, name: str) -> dict[str, Any]:
        """The alarm, from whichever region holds it."""
        for cloudwatch in (self.cloudwatch, self.health_cloudwatch):
            alarms = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
            if alarms:
                return alarms[0]
        raise AssertionError(f"no alarm {name} in {REGION} or {HEALTH_ALARM_REGION}")

    def set_alarm_state(self, name: str, state: str) -> None:
        cloudwatch = self.health_cloudwatch if name in HEALTH_ALARM_NAMES else self.cloudwatch
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test world")

    def create_rollback_machine(self, definition: dict[str, Any]) -> str:
        """The rollback state machine under the ARN the function is configured with. moto executes
        it only if execution was switched on before this call (tests/rollback/conftest.py)."""
        arn = self.stepfunctions.create_state_machine(
            name=ROLLBACK_MACHINE_NAME,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/payment-migration-rollback-machine",
        )["stateMachineArn"]
        assert arn == ROLLBACK_MACHINE_ARN, arn
        return arn

    def create_controller_machine(self, name: str, definition: dict[str, Any]) -> str:
        """The advance or cutover state machine (ADVANCE_MACHINE_NAME, CUTOVER_MACHINE_NAME), under
        the ARN the rollback function is configured with; executed like the rollback machine."""
        return self.stepfunctions.create_state_machine(
            name=name,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/payment-migration-controller-machine",
        )["stateMachineArn"]

    def executions(self) -> list[dict[str, Any]]:
        return self.stepfunctions.list_executions(stateMachineArn=ROLLBACK_MACHINE_ARN)[
            "executions"
        ]

    def execution_input(self, arn: str) -> dict[str, Any]:
        return json.loads(self.stepfunctions.describe_execution(executionArn=arn)["input"])

    def notifications(self) -> list[dict[str, Any]]:
        """Everything published to the topic since the last call: SNS envelopes as SQS bodies."""
        assert self.queue_url, "this world was built without a subscribed queue"
        received: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    # -- what a test may change, read back and put back ---------------------------------------------

    def state(self) -> dict[str, Any]:
        """What the tests here change, as the server has it now: the zone's record sets, the alarms
        of both regions, the parameters with their values, the state machines, the functions and
        roles made for them, and the messages waiting in the subscribed queue."""
        queued = {}
        if self.queue_url:
            queued = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        return {
            "records": self._record_sets(),
            "alarms": {REGION: _alarm_settings(self.cloudwatch),
                       HEALTH_ALARM_REGION: _alarm_settings(self.health_cloudwatch)},
            "parameters": self._parameters(),
            "state_machines": sorted(machine["name"] for machine in
                                     self.stepfunctions.list_state_machines()["stateMachines"]),
            "functions": sorted(function["FunctionName"] for function in
                                self.awslambda.list_functions()["Functions"]),
            "roles": sorted(role["RoleName"] for role in self.iam.list_roles()["Roles"]),
            "running_tasks": sorted(role for role, status in self.task_statuses().items() if status == "running"),
            "queued": queued,
        }

    def restore(self) -> None:
        """Puts back what a test changed, as build_world left it (`built`), touching only what
        differs: state machines (their executions stopped first), functions and roles are deleted,
        record sets, alarms and parameters made again as they were, the queue drained."""
        self.delete_state_machines()
        for function in self.awslambda.list_functions()["Functions"]:
            self.awslambda.delete_function(FunctionName=function["FunctionName"])
        for role in self.iam.list_roles()["Roles"]:
            self.iam.delete_role(RoleName=role["RoleName"])

        # Deletions first, and the records read again after them: moto's DELETE of a record with a
        # set identifier also deletes those of other names that share it. Then UPSERT, not CREATE:
        # moto refuses to create a weighted member while another member of its set exists.
        built_keys = {_record_key(record) for record in self.built["records"]}
        self._change_records("DELETE", [record for record in self._record_sets()
                                        if _record_key(record) not in built_keys])
        records = self._record_sets()
        self._change_records("UPSERT", [record for record in self.built["records"] if record not in records])

        for region, cloudwatch in ((REGION, self.cloudwatch), (HEALTH_ALARM_REGION, self.health_cloudwatch)):
            built, now = self.built["alarms"][region], _alarm_settings(cloudwatch)
            extra = sorted(set(now) - set(built))
            if extra:
                cloudwatch.delete_alarms(AlarmNames=extra)
            _alarms(cloudwatch, tuple(name for name in built if now.get(name) != built[name]))

        parameters = self._parameters()
        extra = sorted(set(parameters) - set(self.built["parameters"]))
        if extra:
            self.ssm.delete_parameters(Names=extra)
        for name, value in self.built["parameters"].items():
            if parameters.get(name) != value:
                self.ssm.put_parameter(Name=name, Type="String", Overwrite=True, Value=value)

        self.run_tasks(*self.built["running_tasks"])
        self.metrics_namespace = f"{METRICS_NAMESPACE}/{uuid.uuid4().hex[:12]}"
        self.publish_writer_fence()

        if self.queue_url:
            self.notifications()

    def delete_state_machines(self) -> None:
        """Every state machine, its running executions stopped first. moto keeps the machines it
        executes apart from the others: this reaches those of the switch's current position
        (tests/rollback/conftest.py)."""
        for machine in self.stepfunctions.list_state_machines()["stateMachines"]:
            arn = machine["stateMachineArn"]
            for execution in self.stepfunctions.list_executions(
                stateMachineArn=arn, statusFilter="RUNNING"
            )["executions"]:
                self.stepfunctions.stop_execution(executionArn=execution["executionArn"])
            self.stepfunctions.delete_state_machine(stateMachineArn=arn)

    def _change_records(self, action: str, records: list[dict[str, Any]]) -> None:
        if records:
            self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={
                "Changes": [{"Action": action, "ResourceRecordSet": record} for record in records]})

    def _parameters(self) -> dict[str, str]:
        names = [parameter["Name"] for parameter in self.ssm.describe_parameters()["Parameters"]]
        if not names:
            return {}
        return {parameter["Name"]: parameter["Value"]
                for parameter in self.ssm.get_parameters(Names=names)["Parameters"]}

    def _record_sets(self) -> list[dict[str, Any]]:
        """Every record set of the zone but its own SOA and NS."""
        return [record for record in
                self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
                if not (record["Type"] in ("SOA", "NS") and record["Name"] == ZONE_NAME)]


def writer_document(writer: str, epoch: int, reason: str) -> str:
    return json.dumps(
        {"writer": writer, "epoch": epoch, "changed_at": "2026-01-01T03:00:00+00:00", "reason": reason}
    )


def switch_writer_to_onprem(epoch: int, *, wait_seconds: int = 0) -> dict[str, Any]:
    """A stand-in for the rollback state machine that does what its last step does: writes the
    writer parameter (onprem, the next epoch) through moto's own aws-sdk:ssm integration, after an
    optional Wait standing in for the fence and the direction switch."""
    put = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ssm:putParameter",
        "Parameters": {
            "Name": WRITER_PARAMETER,
            "Type": "String",
            "Overwrite": True,
            "Value": writer_document("onprem", epoch + 1, "rollback state machine"),
        },
        "End": True,
    }
    if not wait_seconds:
        return {"StartAt": "SwitchWriter", "States": {"SwitchWriter": put}}
    return {
        "StartAt": "FenceAndSwitchDirections",
        "States": {
            "FenceAndSwitchDirections": {
                "Type": "Wait", "Seconds": wait_seconds, "Next": "SwitchWriter"
            },
            "SwitchWriter": put,
        },
    }


def fail_with(error: str, cause: str) -> dict[str, Any]:
    return {"StartAt": "Fence", "States": {"Fence": {"Type": "Fail", "Error": error, "Cause": cause}}}


@dataclass
class FakeLambdaContext:
    function_name: str = "payment-rollback-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:eu-west-1:123456789012:function:payment-rollback-test"
    )
    aws_request_id: str = "6f1c2d3e-0000-4000-8000-000000000001"

    remaining_millis: int = 180_000  # within the rollback function's timeout (lib/stacks/cutover.py)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def build_world(
    *,
    onprem_weight: int = 90,
    aws_weight: int = 10,
    aws_member: str = "alias",
    writer: str = "onprem",
    writer_epoch: int = 0,
    subscribe_queue: bool = True,
) -> World:
    """`aws_member` is "alias" (alias A record to an ALB) or "records" (plain A records)."""
    route53 = boto3.client("route53")
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")
    cloudwatch = boto3.client("cloudwatch")
    health_cloudwatch = boto3.client("cloudwatch", region_name=HEALTH_ALARM_REGION)

    zone_id = route53.create_hosted_zone(Name=ZONE_NAME, CallerReference="payments-zone")[
        "HostedZone"
    ]["Id"].removeprefix("/hostedzone/")
    if aws_member == "alias":
        load_balancer = _load_balancer()
        aws_target: dict[str, Any] = {
            "AliasTarget": {
                "HostedZoneId": load_balancer["CanonicalHostedZoneId"],
                "DNSName": load_balancer["DNSName"],
                # As the routing stack has it: evaluating target health would move clients on
                # its own, like a health check on the record.
                "EvaluateTargetHealth": False,
            }
        }
    elif aws_member == "records":
        aws_target = {"TTL": TTL, "ResourceRecords": [{"Value": a} for a in AWS_ADDRESSES]}
    else:
        raise ValueError(f"aws_member must be 'alias' or 'records', not {aws_member!r}")

    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD_NAME,
                        "Type": "A",
                        "SetIdentifier": ONPREM_SET_IDENTIFIER,
                        "Weight": onprem_weight,
                        "TTL": TTL,
                        "ResourceRecords": [{"Value": a} for a in ONPREM_ADDRESSES],
                    },
                },
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD_NAME,
                        "Type": "A",
                        "SetIdentifier": AWS_SET_IDENTIFIER,
                        "Weight": aws_weight,
                        **aws_target,
                    },
                },
                # Neighbours on both sides in DNS order: reading "just this record set" is tested.
                _plain_record(f"admin.{ZONE_NAME}", "203.0.113.5"),
                _plain_record(f"api.{ZONE_NAME}", "2001:db8::10", record_type="AAAA"),
                _plain_record(f"zz.{ZONE_NAME}", "203.0.113.6"),
            ]
        },
    )

    _alarms(cloudwatch, (*ROLLBACK_ALARM_NAMES, *FORWARD_ALARM_NAMES, *FALLBACK_ALARM_NAMES))
    _alarms(health_cloudwatch, HEALTH_ALARM_NAMES)
    topic_arn = sns.create_topic(Name="payment-migration-alarms")["TopicArn"]
    queue_url = None
    if subscribe_queue:
        queue_url = sqs.create_queue(QueueName="alarm-topic-subscriber")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    world = World(
        route53=route53,
        sns=sns,
        sqs=sqs,
        ssm=boto3.client("ssm"),
        stepfunctions=boto3.client("stepfunctions"),
        cloudwatch=cloudwatch,
        health_cloudwatch=health_cloudwatch,
        zone_id=zone_id,
        topic_arn=topic_arn,
        queue_url=queue_url,
        awslambda=boto3.client("lambda"),
        iam=boto3.client("iam"),
        dms=boto3.client("dms"),
        task_arns=_replication_tasks(),
    )
    world.set_writer(writer, writer_epoch)
    world.publish_writer_fence()
    world.built = world.state()
    return world


def _alarms(cloudwatch: Any, names: tuple[str, ...]) -> None:
    """Metric alarms, OK and with actions enabled (moto has no composite alarms)."""
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="PaymentMigration",
            MetricName=name,
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
            ActionsEnabled=True,
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test world")


def _replication_tasks() -> dict[str, str]:
    """The migration stack's three tasks on a replication instance and four endpoints, the forward
    task started once (the runbook's first start)."""
    dms = boto3.client("dms")
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier="payments-test", ReplicationInstanceClass="dms.t3.medium",
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    endpoints = {
        name: dms.create_endpoint(EndpointIdentifier=f"payments-test-{name}", EndpointType=kind, EngineName="postgres",
                                  ServerName=f"{name}.internal", Port=5432, DatabaseName="payments",
                                  Username=f"dms_{kind}", Password="unused")["Endpoint"]["EndpointArn"]
        for name, kind in (("onprem-source", "source"), ("aurora-target", "target"),
                           ("aurora-source", "source"), ("onprem-target", "target"))}
    arns = {}
    for role, kind, source, target in (("forward", "full-load-and-cdc", "onprem-source", "aurora-target"),
                                       ("forward-cdc", "cdc", "onprem-source", "aurora-target"),
                                       ("fallback", "cdc", "aurora-source", "onprem-target")):
        arns[role] = dms.create_replication_task(
            ReplicationTaskIdentifier=f"payments-test-{role}", MigrationType=kind, TableMappings='{"rules": []}',
            SourceEndpointArn=endpoints[source], TargetEndpointArn=endpoints[target], ReplicationInstanceArn=instance,
        )["ReplicationTask"]["ReplicationTaskArn"]
    dms.start_replication_task(ReplicationTaskArn=arns["forward"], StartReplicationTaskType="start-replication")
    return arns


def _record_key(record: dict[str, Any]) -> tuple[str, str, str | None]:
    return record["Name"], record["Type"], record.get("SetIdentifier")


# What put_metric_alarm sets and the tests or the traffic function change on an alarm.
ALARM_SETTINGS = ("Namespace", "MetricName", "Statistic", "Period", "EvaluationPeriods", "Threshold",
                  "ComparisonOperator", "ActionsEnabled", "AlarmActions", "OKActions",
                  "InsufficientDataActions", "Dimensions", "StateValue")


def _alarm_settings(cloudwatch: Any) -> dict[str, dict[str, Any]]:
    return {alarm["AlarmName"]: {key: alarm.get(key) for key in ALARM_SETTINGS}
            for alarm in cloudwatch.describe_alarms()["MetricAlarms"]}

def _load_balancer() -> dict[str, Any]:
    ec2 = boto3.client("ec2")
    elbv2 = boto3.client("elbv2")
    vpc_id = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.40.{index}.0/24", AvailabilityZone=f"{REGION}{zone}"
        )["Subnet"]["SubnetId"]
        for index, zone in enumerate("ab")
    ]
    return elbv2.create_load_balancer(
        Name="payments", Subnets=subnet_ids, Type="application", Scheme="internet-facing"
    )["LoadBalancers"][0]


def _plain_record(name: str, value: str, record_type: str = "A") -> dict[str, Any]:
    return {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": name,
            "Type": record_type,
            "TTL": TTL,
            "ResourceRecords": [{"Value": value}],
        },
    }
