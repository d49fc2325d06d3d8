"""A customer-managed KMS key with rotation, an alias and an explicit key policy.

A key policy is a resource policy: its `"Resource": "*"` means "this key" and is the only value
AWS accepts there. It is written as the JSON document AWS documents, not as an identity-policy
data source, so identity-policy rules (no wildcard resources) keep applying to every role here."""

from __future__ import annotations

import json
from collections.abc import Sequence

from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct


def key_statement(sid: str, *, service: str, actions: Sequence[str],
                  conditions: dict[str, dict[str, object]] | None = None) -> dict:
    """Lets one AWS service principal use the key, under `conditions` ({test: {key: value}})."""
    statement = {"Sid": sid, "Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions),
                 "Resource": "*"}
    if conditions:
        statement["Condition"] = conditions
    return statement


class EncryptionKey(Construct):
    """The account's root keeps administration (so IAM policies can grant use and the key can
    never be orphaned); every other use is granted by `statements` or by IAM policies."""

    def __init__(self, scope: Construct, id_: str, *, alias: str, description: str, account_id: str,
                 partition: str, deletion_window_days: int, statements: Sequence[dict] = (),
                 key_spec: str = "SYMMETRIC_DEFAULT", key_usage: str = "ENCRYPT_DECRYPT",
                 provider=None) -> None:
        super().__init__(scope, id_)
        self.policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AccountAdministration", "Effect": "Allow",
                 "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"}, "Action": "kms:*",
                 "Resource": "*"},
                *statements,
            ],
        }
        symmetric = key_spec == "SYMMETRIC_DEFAULT"
        self.key = KmsKey(self, "key", description=description, enable_key_rotation=symmetric or None,
                          deletion_window_in_days=deletion_window_days, customer_master_key_spec=key_spec,
                          key_usage=key_usage, policy=json.dumps(self.policy), provider=provider)
        KmsAlias(self, "alias", name=f"alias/{alias}", target_key_id=self.key.key_id, provider=provider)
        self.arn = self.key.arn


def cloudwatch_logs_statement(*, region: str, account_id: str, partition: str) -> dict:
    """Lets CloudWatch Logs in this region use the key for this account's log groups only."""
    return key_statement(
        "CloudWatchLogs", service=f"logs.{region}.amazonaws.com",
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}})
