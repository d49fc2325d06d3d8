"""account: what exists once per AWS account, whichever environments share it.

DMS looks up two roles by fixed name (dms-vpc-role, dms-cloudwatch-logs-role). Kept in an
environment's migration stack, a routine destroy of that environment would delete what every other
environment's DMS in the account needs, and a second environment could not create them at all. So
they live here, deployed from exactly one environment per account (`migration.create_account_roles
= true`), before any migration stack; the others only read them."""

from __future__ import annotations

from constructs import Construct

from lib.cdk import TerraformResourceLifecycle
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy_attachment import IamRolePolicyAttachment
from lib.config import Config
from lib.constructs.iam import assume_role_policy
from lib.constructs.wait import PropagationDelay
from lib.stacks.base import BaseStack

# The role names DMS looks up itself (AWS accepts no others), with the managed policy each needs.
DMS_ACCOUNT_ROLES = {
    "dms-vpc-role": "AmazonDMSVPCManagementRole",
    "dms-cloudwatch-logs-role": "AmazonDMSCloudWatchLogsRole",
}
# IAM is eventually consistent: DMS can refuse a role for several seconds after it exists.
IAM_PROPAGATION_SECONDS = 15


class AccountStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config) -> None:
        super().__init__(scope, "account", config=config)
        trust = assume_role_policy(self, "dms-trust", "dms.amazonaws.com")
        attachments = []
        for name, managed_policy in DMS_ACCOUNT_ROLES.items():
            # Every environment's DMS in the account depends on them: kept from `terraform destroy`
            # where config asks for it.
            role = IamRole(self, name, name=name, assume_role_policy=trust.json,
                           description="Account-wide role AWS DMS uses (created by payment-migration)",
                           lifecycle=TerraformResourceLifecycle(prevent_destroy=config.security.prevent_destroy))
            attachments.append(IamRolePolicyAttachment(
                self, f"{name}-policy", role=role.name,
                policy_arn=f"arn:{self.partition}:iam::aws:policy/service-role/{managed_policy}"))
        # The apply ends only once DMS can use the roles, so a migration stack applied right after
        # does not meet a "role not configured properly" refusal.
        PropagationDelay(self, "iam-propagation", seconds=IAM_PROPAGATION_SECONDS,
                         triggers=[attachment.id for attachment in attachments],
                         reason="IAM propagation before DMS uses the roles")
