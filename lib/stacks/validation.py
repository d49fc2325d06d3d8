"""validation: the validation Lambda (called by the cutover's state machines and on demand; the
schedule runs the cutover stack's validation scheduler, which keeps the checkpoints) and the
distributed validation of large tables. The rollback is the cutover stack's (lib/stacks/cutover.py)."""

from __future__ import annotations

from pathlib import Path

from constructs import Construct

from lib.config import Config
from lib.constructs.iam import allow
from lib.constructs.python_function import FunctionPlacement, PythonFunction
from lib.constructs.state_machine import StateMachine
from lib.stacks.base import BaseStack
from lib.stacks.access import database_environment, read_secrets_statements
from lib.stacks.compute import METRICS_NAMESPACE
from lib.stacks.database import DatabaseStack
from lib.stacks.monitoring import VALIDATION_SERVICE
from lib.stacks.network import NetworkStack
from lib.stacks.security import SecurityStack
from lib.workflows.validation import validation_definition

VALIDATION_HANDLER = "payment_validation.handler.lambda_handler"


class ValidationStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, bundle: Path, network: NetworkStack,
                 security: SecurityStack, database: DatabaseStack) -> None:
        super().__init__(scope, "validation", config=config)
        self._common = dict(region=config.region, account_id=self.account_id, partition=self.partition,
                            runtime=config.compute.runtime)
        self._validation(config, bundle, network, security, database)
        self._distributed_validation(config, security)

    def _validation(self, config: Config, bundle: Path, network: NetworkStack, security: SecurityStack,
                    database: DatabaseStack) -> None:
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
                **database_environment(config, database, security, role="payment_validator"),
                "SCHEMAS": config.migration.schema,
                "RECHECK_SECONDS": str(config.validation.recheck_seconds),
                "RECHECK_ROUNDS": str(config.validation.recheck_rounds),
                "POWERTOOLS_SERVICE_NAME": VALIDATION_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=read_secrets_statements(config, security, role="payment_validator"),
            **self._common)

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
