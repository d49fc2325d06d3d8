"""compute: the payment API Lambda in the private subnets, reading the RDS-managed secret."""

from __future__ import annotations

from pathlib import Path

from constructs import Construct

from lib.config import Config
from lib.constructs.iam import allow
from lib.constructs.python_function import FunctionPlacement, PythonFunction
from lib.stacks.base import BaseStack
from lib.stacks.database import DatabaseStack
from lib.stacks.network import NetworkStack
from lib.stacks.security import SecurityStack

API_HANDLER = "payment_api.handler.lambda_handler"
METRICS_NAMESPACE = "PaymentMigration"


class ComputeStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, bundle: Path, network: NetworkStack,
                 security: SecurityStack, database: DatabaseStack) -> None:
        super().__init__(scope, "compute", config=config)
        compute = config.compute
        self.api = PythonFunction(
            self, "api", function_name=self.resource_name("api"),
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
                "DB_HOST": database.endpoint,
                "DB_PORT": str(database.port),
                "DB_NAME": database.database_name,
                "DB_SECRET_ARN": database.master_secret_arn,
                "DB_SSLMODE": "require",
                "POWERTOOLS_SERVICE_NAME": "payment-api",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                allow(["secretsmanager:GetSecretValue"], [database.master_secret_arn], sid="ReadDatabaseSecret"),
                allow(["kms:Decrypt"], [database.master_secret_key_arn], sid="DecryptDatabaseSecret",
                      conditions=[("StringEquals", "kms:ViaService", [f"secretsmanager.{config.region}.amazonaws.com"])]),
            ],
        )
        self.function_name = self.api.function_name
        self.function_arn = self.api.arn
