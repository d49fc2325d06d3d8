"""cutover: the controller that keeps one writer at a time — Step Functions state machines (advance,
cutover, writer rollback) and the Lambda steps they call.

Two controls, kept apart: the writer (the SSM parameter the security stack created, naming the
database that accepts writes) changes only in a fenced step; the weights of the service name move
in phases. The step function runs in the VPC (it works on both databases as payment_controller);
the traffic function runs outside it (Route 53, CloudWatch alarms), like the rollback Lambda it
shares its code with. Nothing reads this stack: the rollback Lambda (validation stack, upstream)
starts the writer rollback by the state machine's name.
"""

from __future__ import annotations

import json
from pathlib import Path

from constructs import Construct

from lib.cdk.aws.cloudwatch_event_rule import CloudwatchEventRule
from lib.cdk.aws.cloudwatch_event_target import CloudwatchEventTarget
from lib.cdk.aws.lambda_permission import LambdaPermission
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
from lib.stacks.monitoring import STEP_SERVICE, MonitoringStack
from lib.stacks.network import NetworkStack
from lib.stacks.routing import RoutingStack
from lib.stacks.security import SecurityStack
from lib.stacks.validation import ValidationStack
from lib.workflows.cutover import advance_definition, cutover_definition, rollback_definition

STEP_HANDLER = "payment_cutover.handler.lambda_handler"
TRAFFIC_HANDLER = "payment_rollback.traffic.lambda_handler"
TRAFFIC_SERVICE = "traffic"


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
        self._state_machines(config, security, validation)

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
                "HOSTED_ZONE_ID": routing.zone_id,
                "RECORD_NAME": routing.record_name,
                "RECORD_TYPE": routing.record_type,
                "ONPREM_SET_IDENTIFIER": routing.onprem_set_identifier,
                "AWS_SET_IDENTIFIER": routing.aws_set_identifier,
                "WRITER_PARAMETER": security.writer_parameter_name,
                "ROLLBACK_ALARM_NAMES": ",".join(rollback_alarms),
                "HEALTH_ALARM_NAMES": ",".join(health_alarms),
                "HEALTH_ALARM_REGION": routing.health_alarm_region,
                "FORWARD_ALARM_NAMES": ",".join(monitoring.replication_alarm_names["forward"]),
                "FALLBACK_ALARM_NAMES": ",".join(monitoring.replication_alarm_names["fallback"]),
                "POWERTOOLS_SERVICE_NAME": TRAFFIC_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                *routing.weighted_record_statements(self.partition),
                allow(["ssm:GetParameter"], [security.writer_parameter_arn], sid="ReadWriter"),
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

    def _state_machines(self, config: Config, security: SecurityStack, validation: ValidationStack) -> None:
        validator, rollback = validation.validator.arn, validation.rollback.arn
        arns = dict(step_arn=self.steps.arn, validation_arn=validator, traffic_arn=self.traffic.arn)
        machines = {
            "advance": (self.names.advance, "one phase forward, bake, roll back on an alarm",
                        advance_definition(traffic_arn=self.traffic.arn, validation_arn=validator,
                                           rollback_arn=rollback, bake_checks=config.cutover.bake_minutes),
                        [self.traffic.arn, validator, rollback]),
            "cutover": (self.names.cutover, "the fenced data cutover, on-prem to Aurora",
                        cutover_definition(**arns), [self.steps.arn, self.traffic.arn, validator]),
            "writer-rollback": (self.names.writer_rollback,
                                "traffic to on-prem, then the writer back behind a fence",
                                rollback_definition(**arns), [self.steps.arn, self.traffic.arn, validator]),
        }
        self.state_machine_arns = {
            id_: StateMachine(self, id_, name=name, description=description, definition=definition,
                              functions=functions, account_id=self.account_id, logs_key_arn=security.logs_key.arn,
                              log_retention_days=config.logs.retention_days).arn
            for id_, (name, description, definition, functions) in machines.items()
        }


def _controller_environment(config: Config, security: SecurityStack, database: DatabaseStack,
                            migration: MigrationStack) -> dict[str, str]:
    """What a function running the controller's code as payment_controller is told (payment_cutover.settings)."""
    cutover = config.cutover
    return {
        "WRITER_PARAMETER": security.writer_parameter_name,
        "APPLICATION_ROLES": ",".join(cutover.application_roles),
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
