"""cutover: the controller that keeps one writer at a time — Step Functions state machines (advance,
cutover, writer rollback), the Lambda steps they call, and the rollback function (manual and
automatic), which starts and watches those state machines.

Two controls, kept apart: the writer (the SSM parameter the security stack created, naming the
database that accepts writes) changes only in a fenced step; the weights of the service name move
in phases. The step function runs in the VPC (it works on both databases as payment_controller);
the traffic and rollback functions run outside it (Route 53, CloudWatch, Step Functions), one zip
(lib/lambda/rollback), the weighted pair wired the same way for both. Nothing reads this stack.
"""

from __future__ import annotations

import json
from pathlib import Path

from constructs import Construct

from lib.cdk import Fn
from lib.cdk.aws.cloudwatch_event_rule import CloudwatchEventRule
from lib.cdk.aws.cloudwatch_event_target import CloudwatchEventTarget
from lib.cdk.aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from lib.cdk.aws.lambda_permission import LambdaPermission
from lib.cdk.aws.sns_topic_subscription import SnsTopicSubscription
from lib.config import Config
from lib.constructs.iam import allow
from lib.constructs.python_function import FunctionPlacement, PythonFunction
from lib.constructs.state_machine import StateMachine
from lib.names import replication_slot_name
from lib.stacks.access import database_environment, read_secrets_statements
from lib.stacks.base import BaseStack
from lib.stacks.compute import METRICS_NAMESPACE
from lib.stacks.database import DatabaseStack
from lib.stacks.migration import MigrationStack
from lib.stacks.monitoring import ROLLBACK_SERVICE, STEP_SERVICE, MonitoringStack
from lib.stacks.network import NetworkStack
from lib.stacks.routing import RoutingStack
from lib.stacks.security import SecurityStack
from lib.stacks.validation import ValidationStack
from lib.workflows.cutover import advance_definition, cutover_definition, rollback_definition

STEP_HANDLER = "payment_cutover.handler.lambda_handler"
TRAFFIC_HANDLER = "payment_rollback.traffic.lambda_handler"
TRAFFIC_SERVICE = "traffic"
ROLLBACK_HANDLER = "payment_rollback.handler.lambda_handler"
# How long the rollback waits for the fenced writer rollback it started, and its timeout: the
# wait plus the worst case of its bounded Route 53 and SNS retries, with room to report.
WRITER_ROLLBACK_WAIT_SECONDS = 150
ROLLBACK_TIMEOUT_SECONDS = 240


class CutoverStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, bundles: dict[str, Path], network: NetworkStack,
                 security: SecurityStack, database: DatabaseStack, migration: MigrationStack,
                 routing: RoutingStack, monitoring: MonitoringStack, validation: ValidationStack) -> None:
        super().__init__(scope, "cutover", config=config)
        common = dict(region=config.region, account_id=self.account_id, partition=self.partition,
                      runtime=config.compute.runtime, reserved_concurrency=config.cutover.reserved_concurrency)
        logs = dict(logs_key_arn=security.logs_key.arn, environment_key_arn=security.data_key.arn,
                    log_retention_days=config.logs.retention_days)
        self.steps = self._step_function(config, bundles["cutover"], network, security, database, migration, common,
                                         logs)
        self.traffic = self._traffic_function(config, bundles["rollback"], security, routing, monitoring, common, logs)
        self._metrics_schedule(config)
        self.validation_scheduler = self._validation_scheduler(config, bundles["cutover"], network, security,
                                                               database, migration, common, logs)
        validator = validation.validator.arn
        arns = dict(step_arn=self.steps.arn, validation_arn=validator, traffic_arn=self.traffic.arn)
        calls = [self.steps.arn, self.traffic.arn, validator]
        machine = dict(account_id=self.account_id, logs_key_arn=security.logs_key.arn,
                       log_retention_days=config.logs.retention_days)
        self.cutover_machine = StateMachine(
            self, "cutover", name=self.names.cutover, description="the fenced data cutover, on-prem to Aurora",
            definition=cutover_definition(**arns), functions=calls, **machine)
        self.writer_rollback_machine = StateMachine(
            self, "writer-rollback", name=self.names.writer_rollback,
            description="traffic to on-prem, then the writer back behind a fence",
            definition=rollback_definition(**arns), functions=calls, **machine)
        self.rollback = self._rollback_function(config, bundles["rollback"], security, migration, routing,
                                                monitoring, logs)
        self.advance_machine = StateMachine(
            self, "advance", name=self.names.advance, description="one phase forward, bake, roll back on an alarm",
            definition=advance_definition(traffic_arn=self.traffic.arn, validation_arn=validator,
                                          rollback_arn=self.rollback.arn, bake_checks=config.cutover.bake_minutes,
                                          onprem_application=config.cutover.onprem_application),
            functions=[self.traffic.arn, validator, self.rollback.arn], **machine)

    def _step_function(self, config: Config, bundle: Path, network: NetworkStack, security: SecurityStack,
                       database: DatabaseStack, migration: MigrationStack, common: dict, logs: dict) -> PythonFunction:
        cutover = config.cutover
        task_arns = [migration.forward_task_arn, migration.forward_cdc_task_arn, migration.fallback_task_arn]
        return PythonFunction(
            self, "steps", function_name=self.names.steps,
            description="Cutover controller steps: fence, replication marker, sequences, direction switch, writer",
            bundle=bundle, handler=STEP_HANDLER, memory_mb=256,
            # One invocation waits at most step_wait_seconds, then answers (a retry resumes).
            timeout_seconds=cutover.step_wait_seconds + 60,
            placement=FunctionPlacement(subnet_ids=network.private_subnet_ids,
                                        security_group_ids=[security.controller_security_group_id], **logs),
            environment=_controller_environment(config, security, database, migration),
            statements=[
                allow(["ssm:GetParameter", "ssm:PutParameter"], [security.writer_parameter_arn], sid="Writer"),
                *read_secrets_statements(config, security, role="payment_controller"),
                allow(["dms:StartReplicationTask", "dms:StopReplicationTask"], task_arns, sid="SwitchDirections"),
                # Preflight: can the replication instance reach each endpoint of the direction to start?
                allow(["dms:TestConnection"], [migration.replication_instance_arn, *migration.endpoint_arns],
                      sid="TestEndpoints"),
                # DescribeReplicationTasks and DescribeConnections support no resource-level permission.
                allow(["dms:DescribeReplicationTasks", "dms:DescribeConnections"], ["*"], sid="DescribeTasks"),
                allow(["cloudwatch:PutMetricData"], ["*"], sid="SlotAndFenceMetrics",
                      conditions=[("StringEquals", "cloudwatch:namespace", [METRICS_NAMESPACE])]),
            ],
            **common)

    def _traffic_function(self, config: Config, bundle: Path, security: SecurityStack, routing: RoutingStack,
                          monitoring: MonitoringStack, common: dict, logs: dict) -> PythonFunction:
        region = config.region
        alarm_arn = f"arn:{self.partition}:cloudwatch:{region}:{self.account_id}:alarm:"
        health_arn = f"arn:{self.partition}:cloudwatch:{routing.health_alarm_region}:{self.account_id}:alarm:"
        rollback_alarms = monitoring.rollback_alarm_names
        replication_alarms = [*monitoring.replication_alarm_names["forward"],
                              *monitoring.replication_alarm_names["fallback"]]
        health_alarms = [routing.health_alarm_names["aws"]]
        return PythonFunction(
            # Outside the VPC, like the rollback: moving clients must not depend on the network.
            self, "traffic", function_name=self.names.traffic,
            description="Cutover controller: weights of the service name, alarms while a phase bakes",
            bundle=bundle, handler=TRAFFIC_HANDLER, memory_mb=256, timeout_seconds=60,
            placement=FunctionPlacement(**logs),
            environment={
                **_weighted_pair_environment(security, routing),
                "ROLLBACK_ALARM_NAMES": ",".join(rollback_alarms),
                "HEALTH_ALARM_NAMES": ",".join(health_alarms),
                "HEALTH_ALARM_REGION": routing.health_alarm_region,
                "FORWARD_ALARM_NAMES": ",".join(monitoring.replication_alarm_names["forward"]),
                "FALLBACK_ALARM_NAMES": ",".join(monitoring.replication_alarm_names["fallback"]),
                "POWERTOOLS_SERVICE_NAME": TRAFFIC_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                *_weighted_pair_statements(self.partition, security, routing),
                allow(["cloudwatch:DescribeAlarms"],
                      [*(alarm_arn + name for name in [*rollback_alarms, *replication_alarms]),
                       *(health_arn + name for name in health_alarms)], sid="ReadAlarms"),
                # SetAlarmState: an alarm already in ALARM when its actions go on is set to OK, so
                # that a condition still breaching transitions (and notifies) again.
                allow(["cloudwatch:EnableAlarmActions", "cloudwatch:DisableAlarmActions", "cloudwatch:SetAlarmState"],
                      [alarm_arn + name for name in replication_alarms], sid="ReplicationAlarmActions"),
            ],
            **common)

    def _validation_scheduler(self, config: Config, bundle: Path, network: NetworkStack, security: SecurityStack,
                              database: DatabaseStack, migration: MigrationStack, common: dict,
                              logs: dict) -> PythonFunction:
        """The scheduled validation (payment_cutover.steps.scheduled_validation): every row at most
        every validation.full_every, otherwise the rows changed since the last PASSED checkpoint — a
        logical slot on the writer, which only the controller's role may make and read. The step
        function's code, in a function of its own: a full pass runs for minutes, and the steps'
        short timeout bounds the switch lease. It takes no lease and changes no fence."""
        validation = config.validation
        function = PythonFunction(
            self, "validation-scheduler", function_name=self.names.validation_scheduler,
            description="Scheduled validation: a full pass at most every full_every, else what changed since",
            bundle=bundle, handler=STEP_HANDLER, memory_mb=validation.memory_mb,
            timeout_seconds=validation.timeout_seconds,
            placement=FunctionPlacement(subnet_ids=network.private_subnet_ids,
                                        security_group_ids=[security.controller_security_group_id], **logs),
            environment={**_controller_environment(config, security, database, migration),
                         "FULL_EVERY_SECONDS": str(validation.full_every_seconds),
                         "RECHECK_ROUNDS": str(validation.recheck_rounds),
                         "RECHECK_SECONDS": str(validation.recheck_seconds)},
            statements=[
                allow(["ssm:GetParameter"], [security.writer_parameter_arn], sid="ReadWriter"),
                *read_secrets_statements(config, security, role="payment_controller"),
                allow(["cloudwatch:PutMetricData"], ["*"], sid="ValidationMetrics",
                      conditions=[("StringEquals", "cloudwatch:namespace", [METRICS_NAMESPACE])]),
            ],
            **{**common, "reserved_concurrency": 1})  # one run at a time: two would race for the checkpoint
        rule = CloudwatchEventRule(self, "validation-schedule", name=self.resource_name("validation-schedule"),
                                   description="Runs the scheduled validation",
                                   schedule_expression=validation.schedule)
        CloudwatchEventTarget(self, "validation-schedule-target", rule=rule.name, arn=function.arn,
                              input=json.dumps({"step": "scheduled_validation"}))
        LambdaPermission(self, "validation-schedule-invoke", statement_id="AllowValidationSchedule",
                         action="lambda:InvokeFunction", function_name=function.function_name,
                         principal="events.amazonaws.com", source_arn=rule.arn)
        return function

    def _metrics_schedule(self, config: Config) -> None:
        """Slot lag, WAL held and fence state of both sides every minute, for the monitoring
        stack's alarms (which treat a silence as missing data)."""
        rule = CloudwatchEventRule(self, "metrics-schedule", name=self.resource_name("cutover-metrics"),
                                   description="Publishes replication slot and fence metrics of both databases",
                                   schedule_expression="rate(1 minute)")
        CloudwatchEventTarget(self, "metrics-target", rule=rule.name, arn=self.steps.arn,
                              input=json.dumps({"step": "publish_metrics"}))
        LambdaPermission(self, "metrics-invoke", statement_id="AllowMetricsSchedule",
                         action="lambda:InvokeFunction", function_name=self.steps.function_name,
                         principal="events.amazonaws.com", source_arn=rule.arn)

    def _rollback_function(self, config: Config, bundle: Path, security: SecurityStack, migration: MigrationStack,
                           routing: RoutingStack, monitoring: MonitoringStack, logs: dict) -> PythonFunction:
        """The one emergency path: `aws lambda invoke --function-name payment-rollback-<env>`, or the
        composite alarm through the rollback topic. All traffic to on-prem in one Route 53 change;
        after the data cutover, the writer rollback state machine too."""
        writer_rollback, cutover = self.writer_rollback_machine.arn, self.cutover_machine.arn
        # The advance machine invokes this function (its RollBack state) and this function stops
        # advance executions: Terraform cannot create either first from the other's attribute, so
        # the advance machine is known by its name, in this stack's partition, region and account.
        states = f"arn:{self.partition}:states:{config.region}:{self.account_id}"
        advance, advance_executions = (f"{states}:stateMachine:{self.names.advance}",
                                       f"{states}:execution:{self.names.advance}:*")
        function = PythonFunction(
            # Outside the VPC on purpose: the way back must not depend on the network it leaves.
            self, "rollback", function_name=self.names.rollback,
            description="All traffic back to on-prem in one Route 53 change; after the data cutover, the fenced "
                        "writer rollback too",
            bundle=bundle, handler=ROLLBACK_HANDLER, memory_mb=256, timeout_seconds=ROLLBACK_TIMEOUT_SECONDS,
            # Reserved so that a rollback can run even when the API has used up the account's concurrency.
            reserved_concurrency=config.validation.rollback_reserved_concurrency,
            dead_letter_key_arn=security.data_key.arn,
            placement=FunctionPlacement(**logs),
            environment={
                **_weighted_pair_environment(security, routing),
                "ROLLBACK_STATE_MACHINE_ARN": writer_rollback,
                "ADVANCE_STATE_MACHINE_ARN": advance,
                "CUTOVER_STATE_MACHINE_ARN": cutover,
                "WRITER_ROLLBACK_WAIT_SECONDS": str(WRITER_ROLLBACK_WAIT_SECONDS),
                "SNS_TOPIC_ARN": monitoring.alarm_topic_arn,
                # Whether the on-prem writer accepts writes, seen from outside the VPC: the DMS tasks'
                # statuses (the direction) and the fence the step function measures every minute.
                "DMS_FORWARD_TASK_ARN": migration.forward_task_arn,
                "DMS_FORWARD_CDC_TASK_ARN": migration.forward_cdc_task_arn,
                "DMS_FALLBACK_TASK_ARN": migration.fallback_task_arn,
                "FENCE_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_SERVICE_NAME": ROLLBACK_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                *_weighted_pair_statements(self.partition, security, routing),
                allow(["states:StartExecution"], [writer_rollback], sid="StartWriterRollback"),
                allow(["states:DescribeExecution"], [_executions(writer_rollback)], sid="WatchWriterRollback"),
                allow(["states:ListExecutions"], [advance, cutover], sid="FindControllerExecutions"),
                # GetExecutionHistory: an advance execution waiting on this function (its RollBack
                # state) is left to finish; StopExecution on advance only: a cutover is waited for.
                allow(["states:StopExecution", "states:DescribeExecution", "states:GetExecutionHistory"],
                      [advance_executions], sid="StopAdvance"),
                allow(["states:DescribeExecution"], [_executions(cutover)], sid="WatchCutover"),
                # Neither DescribeReplicationTasks nor GetMetricData supports a resource-level permission.
                allow(["dms:DescribeReplicationTasks"], ["*"], sid="ReadReplicationDirection"),
                allow(["cloudwatch:GetMetricData"], ["*"], sid="ReadFenceMeasurements"),
                allow(["sns:Publish"], [monitoring.alarm_topic_arn], sid="Notify"),
                allow(["kms:GenerateDataKey*", "kms:Decrypt"], [monitoring.alarm_key_arn], sid="EncryptNotification",
                      conditions=[("StringEquals", "kms:ViaService", [f"sns.{config.region}.amazonaws.com"])]),
            ],
            region=config.region, account_id=self.account_id, partition=self.partition,
            runtime=config.compute.runtime)
        CloudwatchMetricAlarm(
            self, "rollback-dead-letters", alarm_name=self.resource_name("rollback-dead-letters"),
            alarm_description="An automatic rollback failed every attempt: roll back by hand (README)",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": function.dead_letter_queue.name}, statistic="Maximum", period=60,
            evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[monitoring.alarm_topic_arn])
        if config.validation.automatic_rollback:
            # The monitoring stack's composite alarm notifies the rollback topic; this function acts on it.
            LambdaPermission(self, "rollback-from-alarm", statement_id="AllowCutoverUnhealthyTopic",
                             action="lambda:InvokeFunction", function_name=function.function_name,
                             principal="sns.amazonaws.com", source_arn=monitoring.rollback_topic_arn)
            SnsTopicSubscription(self, "rollback-subscription", topic_arn=monitoring.rollback_topic_arn,
                                 protocol="lambda", endpoint=function.arn)
        return function


def _weighted_pair_environment(security: SecurityStack, routing: RoutingStack) -> dict[str, str]:
    """Where the traffic and rollback functions find the weights and the writer."""
    return {
        "HOSTED_ZONE_ID": routing.zone_id,
        "RECORD_NAME": routing.record_name,
        "RECORD_TYPE": routing.record_type,
        "ONPREM_SET_IDENTIFIER": routing.onprem_set_identifier,
        "AWS_SET_IDENTIFIER": routing.aws_set_identifier,
        "WRITER_PARAMETER": security.writer_parameter_name,
    }


def _weighted_pair_statements(partition: str, security: SecurityStack, routing: RoutingStack) -> list:
    """Move the weighted pair (UPSERT of its name and type only) and read the writer."""
    return [*routing.weighted_record_statements(partition),
            allow(["ssm:GetParameter"], [security.writer_parameter_arn], sid="ReadWriter")]


def _executions(state_machine_arn: str) -> str:
    """The ARNs of a state machine's executions (arn:…:execution:<machine>:*), from its ARN (a token)."""
    return Fn.join("", [Fn.replace(state_machine_arn, ":stateMachine:", ":execution:"), ":*"])


def _controller_environment(config: Config, security: SecurityStack, database: DatabaseStack,
                            migration: MigrationStack) -> dict[str, str]:
    """What a function running the controller's code as payment_controller is told (payment_cutover.settings)."""
    cutover = config.cutover
    return {
        "WRITER_PARAMETER": security.writer_parameter_name,
        "APPLICATION_ROLES": ",".join(cutover.fenced_roles),
        "ONPREM_APPLICATION": cutover.onprem_application,
        **({"ONPREM_APPLICATION_ROLE": cutover.onprem_application_role} if cutover.onprem_application_role else {}),
        "LEGACY_WINDOW_SECONDS": str(config.routing.ttl_seconds + cutover.legacy_margin_seconds),
        "REPLICATION_DRIVER": "dms",
        "DMS_FORWARD_TASK_ARN": migration.forward_task_arn,
        "DMS_FALLBACK_TASK_ARN": migration.fallback_task_arn,
        "DMS_FORWARD_CDC_TASK_ARN": migration.forward_cdc_task_arn,
        "FORWARD_SLOT_NAME": replication_slot_name(config.name, "forward"),
        "FALLBACK_SLOT_NAME": replication_slot_name(config.name, "fallback"),
        "SCHEMA": config.migration.schema,
        "TABLES": ",".join(config.migration.tables),
        "WAIT_SECONDS": str(cutover.step_wait_seconds),
        **database_environment(config, database, security, role="payment_controller"),
        "POWERTOOLS_SERVICE_NAME": STEP_SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
    }
