"""validation: the validation Lambda (called by the cutover's state machines and on demand; the
schedule runs the cutover stack's validation scheduler, which keeps the checkpoints) and the rollback
Lambda (manual and automatic)."""

from __future__ import annotations

from pathlib import Path

from constructs import Construct

from lib.cdk.aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from lib.cdk.aws.lambda_permission import LambdaPermission
from lib.cdk.aws.sns_topic_subscription import SnsTopicSubscription
from lib.config import Config
from lib.constructs.iam import allow
from lib.constructs.python_function import FunctionPlacement, PythonFunction
from lib.constructs.state_machine import StateMachine
from lib.stacks.base import BaseStack
from lib.stacks.access import DB_SSLMODE, ONPREM_CA_PATH, read_secrets_statements
from lib.stacks.compute import METRICS_NAMESPACE
from lib.stacks.database import DatabaseStack
from lib.stacks.migration import MigrationStack
from lib.stacks.monitoring import ROLLBACK_SERVICE, VALIDATION_SERVICE, MonitoringStack
from lib.stacks.network import NetworkStack
from lib.stacks.routing import RoutingStack
from lib.stacks.security import SecurityStack
from lib.workflows.validation import validation_definition

VALIDATION_HANDLER = "payment_validation.handler.lambda_handler"
ROLLBACK_HANDLER = "payment_rollback.handler.lambda_handler"
# How long the rollback waits for the fenced writer rollback it started, and its timeout: the
# wait plus the worst case of its bounded Route 53 and SNS retries, with room to report.
WRITER_ROLLBACK_WAIT_SECONDS = 150
ROLLBACK_TIMEOUT_SECONDS = 240


class ValidationStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, bundles: dict[str, Path], network: NetworkStack,
                 security: SecurityStack, database: DatabaseStack, migration: MigrationStack,
                 routing: RoutingStack, monitoring: MonitoringStack) -> None:
        super().__init__(scope, "validation", config=config)
        self._common = dict(region=config.region, account_id=self.account_id, partition=self.partition,
                            runtime=config.compute.runtime)
        self._validation(config, bundles["validation"], network, security, database)
        self._rollback(config, bundles["rollback"], security, migration, routing, monitoring)
        self._distributed_validation(config, security)

    def _validation(self, config: Config, bundle: Path, network: NetworkStack, security: SecurityStack,
                    database: DatabaseStack) -> None:
        secrets = security.database_secrets
        self.validator = PythonFunction(
            # The monitoring stack (upstream) alarms on this name's errors.
            self, "validator", function_name=self.names.validation,
            description="Compares on-prem and Aurora row by row; PASSED / FAILED / ERROR",
            bundle=bundle, handler=VALIDATION_HANDLER, memory_mb=config.validation.memory_mb,
            timeout_seconds=config.validation.timeout_seconds,
            reserved_concurrency=config.validation.reserved_concurrency,
            dead_letter_key_arn=security.data_key.arn,
            placement=FunctionPlacement(
                subnet_ids=network.private_subnet_ids, security_group_ids=[security.validation_security_group_id],
                logs_key_arn=security.logs_key.arn, environment_key_arn=security.data_key.arn,
                log_retention_days=config.logs.retention_days),
            # Reads as payment_validator on both sides (SELECT only, read-only sessions).
            environment={
                "SOURCE_DB_HOST": config.onprem.db_host,
                "SOURCE_DB_PORT": str(config.onprem.db_port),
                "SOURCE_DB_NAME": config.onprem.db_name,
                "SOURCE_SECRET_ARN": secrets.arn("onprem", "payment_validator"),
                "TARGET_DB_HOST": database.endpoint,
                "TARGET_DB_PORT": str(database.port),
                "TARGET_DB_NAME": database.database_name,
                "TARGET_SECRET_ARN": secrets.arn("aws", "payment_validator"),
                "DB_SSLMODE": DB_SSLMODE,
                "SOURCE_DB_SSLROOTCERT": ONPREM_CA_PATH,
                "SCHEMAS": config.migration.schema,
                "RECHECK_SECONDS": str(config.validation.recheck_seconds),
                "RECHECK_ROUNDS": str(config.validation.recheck_rounds),
                "POWERTOOLS_SERVICE_NAME": VALIDATION_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=read_secrets_statements(config, security, role="payment_validator"),
            **self._common)

    def _rollback(self, config: Config, bundle: Path, security: SecurityStack, migration: MigrationStack,
                  routing: RoutingStack, monitoring: MonitoringStack) -> None:
        # The writer rollback (cutover stack, downstream) is started by its name: no cross-stack read.
        machine = self.names.writer_rollback
        machine_arn = f"arn:{self.partition}:states:{config.region}:{self.account_id}:stateMachine:{machine}"
        executions = f"arn:{self.partition}:states:{config.region}:{self.account_id}:execution:{machine}:*"
        # The controller's advance and cutover, also by name: a rollback stops the first and waits
        # for the second (never stopped mid-way: it could leave both sides fenced).
        advance, cutover = self.names.advance, self.names.cutover
        advance_arn, cutover_arn = (f"arn:{self.partition}:states:{config.region}:{self.account_id}:stateMachine:{name}"
                                    for name in (advance, cutover))
        advance_executions, cutover_executions = (
            f"arn:{self.partition}:states:{config.region}:{self.account_id}:execution:{name}:*"
            for name in (advance, cutover))
        # Outside the VPC on purpose: the way back must not depend on the network it leaves.
        self.rollback = PythonFunction(
            self, "rollback", function_name=self.names.rollback,
            description="All traffic back to on-prem in one Route 53 change; after the data cutover, the fenced "
                        "writer rollback too",
            bundle=bundle, handler=ROLLBACK_HANDLER, memory_mb=256, timeout_seconds=ROLLBACK_TIMEOUT_SECONDS,
            # Reserved so that a rollback can run even when the API has used up the account's concurrency.
            reserved_concurrency=config.validation.rollback_reserved_concurrency,
            dead_letter_key_arn=security.data_key.arn,
            placement=FunctionPlacement(logs_key_arn=security.logs_key.arn,
                                        environment_key_arn=security.data_key.arn,
                                        log_retention_days=config.logs.retention_days),
            environment={
                "HOSTED_ZONE_ID": routing.zone_id,
                "RECORD_NAME": routing.record_name,
                "RECORD_TYPE": routing.record_type,
                "ONPREM_SET_IDENTIFIER": routing.onprem_set_identifier,
                "AWS_SET_IDENTIFIER": routing.aws_set_identifier,
                "WRITER_PARAMETER": security.writer_parameter_name,
                "ROLLBACK_STATE_MACHINE_ARN": machine_arn,
                "ADVANCE_STATE_MACHINE_ARN": advance_arn,
                "CUTOVER_STATE_MACHINE_ARN": cutover_arn,
                "WRITER_ROLLBACK_WAIT_SECONDS": str(WRITER_ROLLBACK_WAIT_SECONDS),
                "SNS_TOPIC_ARN": monitoring.alarm_topic_arn,
                # Whether the on-prem writer accepts writes, seen from outside the VPC: the DMS tasks'
                # statuses (the direction) and the fence the cutover controller measures every minute.
                "DMS_FORWARD_TASK_ARN": migration.forward_task_arn,
                "DMS_FORWARD_CDC_TASK_ARN": migration.forward_cdc_task_arn,
                "DMS_FALLBACK_TASK_ARN": migration.fallback_task_arn,
                "FENCE_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_SERVICE_NAME": ROLLBACK_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                *routing.weighted_record_statements(self.partition),
                allow(["ssm:GetParameter"], [security.writer_parameter_arn], sid="ReadWriter"),
                allow(["states:StartExecution"], [machine_arn], sid="StartWriterRollback"),
                allow(["states:DescribeExecution"], [executions], sid="WatchWriterRollback"),
                allow(["states:ListExecutions"], [advance_arn, cutover_arn], sid="FindControllerExecutions"),
                # GetExecutionHistory: an advance execution waiting on this function (its RollBack
                # state) is left to finish; StopExecution on advance only: a cutover is waited for.
                allow(["states:StopExecution", "states:DescribeExecution", "states:GetExecutionHistory"],
                      [advance_executions], sid="StopAdvance"),
                allow(["states:DescribeExecution"], [cutover_executions], sid="WatchCutover"),
                # Neither DescribeReplicationTasks nor GetMetricData supports a resource-level permission.
                allow(["dms:DescribeReplicationTasks"], ["*"], sid="ReadReplicationDirection"),
                allow(["cloudwatch:GetMetricData"], ["*"], sid="ReadFenceMeasurements"),
                allow(["sns:Publish"], [monitoring.alarm_topic_arn], sid="Notify"),
                allow(["kms:GenerateDataKey*", "kms:Decrypt"], [monitoring.alarm_key_arn], sid="EncryptNotification",
                      conditions=[("StringEquals", "kms:ViaService", [f"sns.{config.region}.amazonaws.com"])]),
            ],
            **self._common)
        CloudwatchMetricAlarm(
            self, "rollback-dead-letters", alarm_name=self.resource_name("rollback-dead-letters"),
            alarm_description="An automatic rollback failed every attempt: roll back by hand (README)",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.rollback.dead_letter_queue.name}, statistic="Maximum", period=60,
            evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[monitoring.alarm_topic_arn])
        if config.validation.automatic_rollback:
            LambdaPermission(self, "rollback-from-alarm", statement_id="AllowCutoverUnhealthyTopic",
                             action="lambda:InvokeFunction", function_name=self.rollback.function_name,
                             principal="sns.amazonaws.com", source_arn=monitoring.rollback_topic_arn)
            SnsTopicSubscription(self, "rollback-subscription", topic_arn=monitoring.rollback_topic_arn,
                                 protocol="lambda", endpoint=self.rollback.arn)

    def _distributed_validation(self, config: Config, security: SecurityStack) -> None:
        """Tables beyond one invocation's 15 minutes: a plan step cuts them into key-range chunks,
        a distributed map validates validation.max_concurrency chunks at a time, a merge step
        joins the chunks' reports into one (lib/workflows/validation.py)."""
        name = self.names.validation
        # A distributed map runs its chunks as child executions of this state machine.
        own = f"arn:{self.partition}:states:{config.region}:{self.account_id}:stateMachine:{name}"
        children = f"arn:{self.partition}:states:{config.region}:{self.account_id}:execution:{name}/*:*"
        self.distributed = StateMachine(
            self, "distributed", name=name, description="validation of large tables in parallel chunks",
            definition=validation_definition(function_arn=self.validator.arn,
                                             max_concurrency=config.validation.max_concurrency),
            functions=[self.validator.arn], account_id=self.account_id, logs_key_arn=security.logs_key.arn,
            log_retention_days=config.logs.retention_days,
            statements=[allow(["states:StartExecution"], [own], sid="MapChildren"),
                        allow(["states:DescribeExecution", "states:StopExecution"], [children], sid="MapChildrenRuns")])
