"""A Step Functions state machine done once, right: its own role that may invoke exactly the
functions its definition calls, execution logs in a CMK-encrypted log group, X-Ray tracing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from constructs import Construct

from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy import IamRolePolicy
from lib.cdk.aws.sfn_state_machine import (
    SfnStateMachine,
    SfnStateMachineLoggingConfiguration,
    SfnStateMachineTracingConfiguration,
)
from lib.constructs.iam import allow, assume_role_policy, policy_document

# Log delivery and X-Ray have no resource-level permissions in IAM.
_UNSCOPABLE = ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
               "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
               "logs:DescribeLogGroups", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
               "xray:GetSamplingRules", "xray:GetSamplingTargets"]


class StateMachine(Construct):
    def __init__(self, scope: Construct, id_: str, *, name: str, description: str, definition: dict[str, Any],
                 functions: Sequence[str], account_id: str, logs_key_arn: str, log_retention_days: int,
                 statements: Sequence[DataAwsIamPolicyDocumentStatement] = ()) -> None:
        super().__init__(scope, id_)
        log_group = CloudwatchLogGroup(self, "logs", name=f"/aws/vendedlogs/states/{name}", kms_key_id=logs_key_arn,
                                       retention_in_days=log_retention_days)
        # Suffixed: a machine may share its name with a function (payment-validation-<env>), whose
        # role carries the function's name, and IAM role names are unique in the account.
        self.role = IamRole(self, "role", name=f"{name}-states", description=f"State machine {name}: {description}",
                            assume_role_policy=assume_role_policy(self, "trust", "states.amazonaws.com",
                                                                  account_id=account_id).json)
        policy = IamRolePolicy(self, "policy", role=self.role.id, name="state-machine",
                               policy=policy_document(self, "permissions", [
                                   *([allow(["lambda:InvokeFunction"], [*functions, *(f"{arn}:*" for arn in functions)],
                                            sid="InvokeSteps")] if functions else []),
                                   *statements,
                                   allow(_UNSCOPABLE, ["*"], sid="LogsAndTraces"),
                               ]).json)
        self.machine = SfnStateMachine(
            self, "machine", name=name, role_arn=self.role.arn, type="STANDARD",
            definition=json.dumps(definition, indent=1),
            logging_configuration=SfnStateMachineLoggingConfiguration(
                log_destination=f"{log_group.arn}:*", include_execution_data=True, level="ALL"),
            tracing_configuration=SfnStateMachineTracingConfiguration(enabled=True),
            depends_on=[policy])
        self.arn = self.machine.arn
