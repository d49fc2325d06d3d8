"""A customer-managed KMS key with rotation, an alias and an explicit key policy."""

from __future__ import annotations

from collections.abc import Sequence

from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from lib.constructs.iam import allow, policy_document


class EncryptionKey(Construct):
    """The account's root keeps administration (so IAM policies can grant use and the key can
    never be orphaned); every other use is granted by `statements`."""

    def __init__(self, scope: Construct, id_: str, *, alias: str, description: str, account_id: str,
                 partition: str, deletion_window_days: int,
                 statements: Sequence[DataAwsIamPolicyDocumentStatement] = (),
                 key_spec: str = "SYMMETRIC_DEFAULT", key_usage: str = "ENCRYPT_DECRYPT",
                 provider=None) -> None:
        super().__init__(scope, id_)
        root = f"arn:{partition}:iam::{account_id}:root"
        policy = policy_document(self, "policy", [
            allow(["kms:*"], ["*"], sid="AccountAdministration", principals={"AWS": [root]}),
            *statements,
        ])
        symmetric = key_spec == "SYMMETRIC_DEFAULT"
        self.key = KmsKey(self, "key", description=description, enable_key_rotation=symmetric or None,
                          deletion_window_in_days=deletion_window_days, customer_master_key_spec=key_spec,
                          key_usage=key_usage, policy=policy.json, provider=provider)
        KmsAlias(self, "alias", name=f"alias/{alias}", target_key_id=self.key.key_id, provider=provider)
        self.arn = self.key.arn


def cloudwatch_logs_statement(*, region: str, account_id: str, partition: str) -> DataAwsIamPolicyDocumentStatement:
    """Lets CloudWatch Logs in this region use the key for this account's log groups only."""
    return allow(
        ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"], ["*"],
        sid="CloudWatchLogs",
        principals={"Service": [f"logs.{region}.amazonaws.com"]},
        conditions=[("ArnLike", "kms:EncryptionContext:aws:logs:arn",
                     [f"arn:{partition}:logs:{region}:{account_id}:log-group:*"])],
    )
