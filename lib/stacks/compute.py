"""compute: the payment API Lambda in the private subnets. It writes to whichever database the
writer parameter names (on-prem through the VPN before the data cutover, Aurora after), as the
payment_app role of that side."""

from __future__ import annotations

from pathlib import Path

from constructs import Construct

from lib.config import Config
from lib.constructs.iam import allow
from lib.constructs.python_function import FunctionPlacement, PythonFunction
from lib.stacks.base import BaseStack
from lib.stacks.database import DatabaseStack
from lib.stacks.network import NetworkStack
from lib.stacks.access import database_environment, read_secrets_statements
from lib.stacks.security import SecurityStack

API_HANDLER = "payment_api.handler.lambda_handler"
METRICS_NAMESPACE = "PaymentMigration"
# The payment API's Powertools service (its metrics' `service` dimension), and the metric it puts for
# each write a fenced database refused (503 writer_fenced): the rollback alarm leaves those out.
API_SERVICE = "payment-api"
WRITER_FENCED_METRIC = "WriterFenced"


class ComputeStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, bundle: Path, network: NetworkStack,
                 security: SecurityStack, database: DatabaseStack) -> None:
        super().__init__(scope, "compute", config=config)
        compute = config.compute
        self.api = PythonFunction(
            self, "api", function_name=self.names.api,
            description="Payment API behind the ALB: health, create payment (idempotent), get payment",
            bundle=bundle, handler=API_HANDLER, runtime=compute.runtime, memory_mb=compute.memory_mb,
            timeout_seconds=compute.timeout_seconds, reserved_concurrency=compute.reserved_concurrency,
            placement=FunctionPlacement(
                subnet_ids=network.private_subnet_ids,
                security_group_ids=[security.lambda_security_group_id],
                logs_key_arn=security.logs_key.arn, environment_key_arn=security.data_key.arn,
                log_retention_days=config.logs.retention_days),
            region=config.region, account_id=self.account_id, partition=self.partition,
            environment={
                "WRITER_PARAMETER": security.writer_parameter_name,
                "WRITER_CACHE_SECONDS": str(config.cutover.writer_cache_seconds),
                **database_environment(config, database, security, role="payment_app"),
                "POWERTOOLS_SERVICE_NAME": API_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                allow(["ssm:GetParameter"], [security.writer_parameter_arn], sid="ReadWriter"),
                *read_secrets_statements(config, security, role="payment_app"),
            ],
        )
        self.function_name = self.api.function_name
        self.function_arn = self.api.arn
