"""A Python Lambda done once, right: the bundled zip as an asset, its own role, its own encrypted
log group, VPC placement, X-Ray, env encrypted with a CMK — and a role that can do exactly what the
function needs plus what the caller grants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from constructs import Construct

from lib.cdk import AssetType, TerraformAsset, TerraformStack
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy import IamRolePolicy
from lib.cdk.aws.lambda_function import (
    LambdaFunction,
    LambdaFunctionDeadLetterConfig,
    LambdaFunctionEnvironment,
    LambdaFunctionLoggingConfig,
    LambdaFunctionTracingConfig,
    LambdaFunctionVpcConfig,
)
from lib.cdk.aws.sqs_queue import SqsQueue
from lib.constructs.iam import allow, assume_role_policy, policy_document


@dataclass(frozen=True)
class FunctionPlacement:
    """Where the function runs and how its logs and environment are protected. Without subnets
    the function runs outside any VPC (and its role gets no network-interface permissions)."""

    logs_key_arn: str
    environment_key_arn: str
    log_retention_days: int
    subnet_ids: Sequence[str] = ()
    security_group_ids: Sequence[str] = ()


class PythonFunction(Construct):
    def __init__(self, scope: Construct, id_: str, *, function_name: str, description: str, bundle: Path,
                 handler: str, runtime: str, memory_mb: int, timeout_seconds: int, placement: FunctionPlacement,
                 region: str, account_id: str, partition: str, environment: dict[str, str],
                 statements: Sequence[DataAwsIamPolicyDocumentStatement] = (),
                 reserved_concurrency: int | None = None, dead_letter_key_arn: str | None = None) -> None:
        super().__init__(scope, id_)
        if not bundle.is_file():
            raise FileNotFoundError(f"{function_name}: bundle {bundle} is missing (build it with `make synth`)")
        asset = _asset(scope, bundle)

        self.log_group = CloudwatchLogGroup(self, "logs", name=f"/aws/lambda/{function_name}",
                                            kms_key_id=placement.logs_key_arn,
                                            retention_in_days=placement.log_retention_days)
        self.role = IamRole(self, "role", name=function_name,
                            description=f"Execution role of {function_name}",
                            assume_role_policy=assume_role_policy(self, "trust", "lambda.amazonaws.com",
                                                                  account_id=account_id).json)
        in_vpc = bool(placement.subnet_ids)
        baseline = [
            allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{self.log_group.arn}:*"], sid="OwnLogGroup"),
            allow(["kms:Decrypt"], [placement.environment_key_arn], sid="DecryptEnvironment",
                  conditions=[("StringEquals", "kms:ViaService", [f"lambda.{region}.amazonaws.com"])]),
        ]
        unscopable = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
        if in_vpc:
            ec2 = f"arn:{partition}:ec2:{region}:{account_id}"
            baseline += [
                # ENIs in the configured subnets with the configured groups only.
                allow(["ec2:CreateNetworkInterface"],
                      [f"{ec2}:network-interface/*", *(f"{ec2}:subnet/{subnet}" for subnet in placement.subnet_ids),
                       *(f"{ec2}:security-group/{group}" for group in placement.security_group_ids)],
                      sid="VpcNetworkInterfaces"),
                allow(["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                       "ec2:UnassignPrivateIpAddresses"], [f"{ec2}:network-interface/*"],
                      sid="VpcNetworkInterfaceLifecycle"),
            ]
            unscopable = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeVpcs", *unscopable]
        # Describe calls and X-Ray segments have no resource-level permissions in IAM.
        baseline.append(allow(unscopable, ["*"], sid="UnscopableReads"))
        self.dead_letter_queue = None
        if dead_letter_key_arn:
            # Asynchronous invocations that fail every retry land here instead of vanishing.
            self.dead_letter_queue = SqsQueue(self, "dead-letters", name=f"{function_name}-dead-letters",
                                              kms_master_key_id=dead_letter_key_arn,
                                              message_retention_seconds=14 * 24 * 3600)
            baseline += [
                allow(["sqs:SendMessage"], [self.dead_letter_queue.arn], sid="DeadLetters"),
                allow(["kms:GenerateDataKey", "kms:Decrypt"], [dead_letter_key_arn], sid="EncryptDeadLetters",
                      conditions=[("StringEquals", "kms:ViaService", [f"sqs.{region}.amazonaws.com"])]),
            ]
        self.role_policy = IamRolePolicy(self, "policy", role=self.role.id, name="function",
                                         policy=policy_document(self, "permissions", [*baseline, *statements]).json)

        self.function = LambdaFunction(
            self, "function", function_name=function_name, description=description,
            filename=asset.path, source_code_hash=asset.asset_hash,
            handler=handler, runtime=runtime, architectures=["x86_64"],
            memory_size=memory_mb, timeout=timeout_seconds, role=self.role.arn,
            reserved_concurrent_executions=reserved_concurrency,
            kms_key_arn=placement.environment_key_arn,
            environment=LambdaFunctionEnvironment(variables=environment) if environment else None,
            vpc_config=LambdaFunctionVpcConfig(subnet_ids=list(placement.subnet_ids),
                                               security_group_ids=list(placement.security_group_ids))
            if in_vpc else None,
            tracing_config=LambdaFunctionTracingConfig(mode="Active"),
            dead_letter_config=LambdaFunctionDeadLetterConfig(target_arn=self.dead_letter_queue.arn)
            if self.dead_letter_queue else None,
            logging_config=LambdaFunctionLoggingConfig(log_format="JSON", log_group=self.log_group.name),
            # Created after, and destroyed before, its permissions: a function in a VPC cleans up its
            # network interfaces with them, or they linger and block the security group's removal.
            depends_on=[self.log_group, self.role_policy],
        )
        self.function_name = self.function.function_name
        self.arn = self.function.arn


def _asset(scope: Construct, bundle: Path) -> TerraformAsset:
    """One asset per zip and stack: the functions that run the same zip (the steps and the
    validation scheduler; the traffic and rollback functions) share its one upload."""
    stack = TerraformStack.of(scope)
    asset_id = f"bundle-{bundle.stem}"
    existing = stack.node.try_find_child(asset_id)
    return existing if existing is not None else TerraformAsset(stack, asset_id, path=str(bundle), type=AssetType.FILE)
