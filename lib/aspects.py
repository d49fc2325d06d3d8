"""Rules that hold for every resource of the app, checked once over the whole construct tree
instead of by `if`s in each stack. A violation fails synthesis, naming the resource's path,
before anything is written."""

from __future__ import annotations

import jsii
from constructs import IConstruct, IValidation

from lib.cdk import IAspect
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.lambda_function import LambdaFunction
from lib.cdk.aws.rds_cluster import RdsCluster
from lib.cdk.aws.sns_topic import SnsTopic
from lib.cdk.aws.sqs_queue import SqsQueue


@jsii.implements(IAspect)
class SecureDefaults:
    """Encryption with customer-managed keys everywhere it applies, bounded log retention,
    traced Lambdas, and no database password handled by Terraform."""

    def visit(self, node: IConstruct) -> None:
        problems = self._problems(node)
        if problems:
            node.node.add_validation(_Failed([f"{node.node.path}: {problem}" for problem in problems]))

    @staticmethod
    def _problems(node: IConstruct) -> list[str]:
        if isinstance(node, CloudwatchLogGroup):
            return [message for missing, message in (
                (node.kms_key_id_input is None, "log group without a KMS key"),
                (node.retention_in_days_input is None, "log group without retention"),
            ) if missing]
        if isinstance(node, SnsTopic) and node.kms_master_key_id_input is None:
            return ["SNS topic without a KMS key"]
        if isinstance(node, SqsQueue) and node.kms_master_key_id_input is None:
            return ["SQS queue without a KMS key"]
        if isinstance(node, LambdaFunction):
            return [message for missing, message in (
                (node.kms_key_arn_input is None, "Lambda environment not encrypted with a CMK"),
                (node.tracing_config_input is None, "Lambda without X-Ray tracing"),
            ) if missing]
        if isinstance(node, RdsCluster) and (node.master_password_input is not None
                                             or node.manage_master_user_password_input is not True):
            return ["database password handled by Terraform: use manage_master_user_password"]
        return []


@jsii.implements(IValidation)
class _Failed:
    """A validation that reports fixed problems; cdktf fails synthesis when any is reported."""

    def __init__(self, problems: list[str]) -> None:
        self._problems = problems

    def validate(self) -> list[str]:
        return self._problems
