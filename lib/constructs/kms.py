"""A customer-managed KMS key with rotation, an alias and an explicit key policy that keeps
administering a key apart from using it (PCI DSS 3.6.1, 3.7).

The policy has up to four kinds of statement:

- `AccountKeyPolicyRecovery` — the account (its root principal, i.e. whatever IAM allows) may read
  and replace the key policy and nothing else. AWS requires that some principal can always change
  a key policy, or the key becomes unmanageable for good; with this statement the key can never be
  orphaned (say, if every administrator role is deleted), but recovering it is a `PutKeyPolicy`,
  recorded by CloudTrail, never a silent IAM grant of `kms:Decrypt`. This replaces AWS's default
  "enable IAM policies" statement (`kms:*` for the account), which would let any IAM policy of the
  account grant use of the key.
- `KeyAdministration` — the configured administrator roles (`security.key_administrator_arns`)
  manage the key's life: policy, rotation, aliases, tags, grants' revocation, deletion. They
  cannot encrypt, decrypt or create grants.
- `KeyUseThroughServices`, `GrantsForServices` — principals of this account whose own IAM policy
  allows it may use the key, but only through the AWS services named for the key (`kms:ViaService`):
  the Lambda roles decrypt their environment through Lambda and their secrets through Secrets
  Manager, RDS and DMS encrypt storage with grants, … Nobody decrypts with the key directly.
- service principals (CloudWatch Logs, alarms, Route 53 DNSSEC) given by the key's owner.

A key policy is a resource policy: its `"Resource": "*"` means "this key" and is the only value
AWS accepts there. It is written as the JSON document AWS documents, not as an identity-policy
data source, so identity-policy rules (no wildcard resources) keep applying to every role here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from constructs import Construct

from lib.cdk import TerraformResourceLifecycle
from lib.cdk.aws.kms_alias import KmsAlias
from lib.cdk.aws.kms_key import KmsKey
from lib.config import Config

# Managing a key's life, without any cryptographic use: no Encrypt/Decrypt/GenerateDataKey/Sign,
# and no CreateGrant (a grant is a way to use the key). GetPublicKey only reads the public half.
ADMINISTRATION_ACTIONS = (
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:GetKeyRotationStatus",
    "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:RotateKeyOnDemand", "kms:ListKeyRotations",
    "kms:EnableKey", "kms:DisableKey", "kms:UpdateKeyDescription", "kms:CreateAlias", "kms:UpdateAlias",
    "kms:DeleteAlias", "kms:TagResource", "kms:UntagResource", "kms:ListResourceTags", "kms:ListKeyPolicies",
    "kms:ListGrants", "kms:RevokeGrant", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:GetPublicKey",
)
RECOVERY_ACTIONS = ("kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey")
SERVICE_USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey")
SERVICE_GRANT_ACTIONS = ("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant")


@dataclass(frozen=True)
class KeyGovernance:
    """What every key of an environment shares: the account, who administers the keys, how long a
    deleted key waits, and whether Terraform may destroy a key at all."""

    account_id: str
    partition: str
    region: str
    administrator_arns: Sequence[str]
    deletion_window_days: int
    prevent_destroy: bool

    @classmethod
    def of(cls, config: Config, *, account_id: str, partition: str) -> KeyGovernance:
        security = config.security
        return cls(account_id=account_id, partition=partition, region=config.region,
                   administrator_arns=security.key_administrator_arns,
                   deletion_window_days=security.kms_deletion_window_days, prevent_destroy=security.prevent_destroy)

    @property
    def account_root(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:root"


def key_statement(sid: str, *, service: str, actions: Sequence[str],
                  conditions: dict[str, dict[str, object]] | None = None) -> dict:
    """Lets one AWS service principal use the key, under `conditions` ({test: {key: value}})."""
    statement = {"Sid": sid, "Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions),
                 "Resource": "*"}
    if conditions:
        statement["Condition"] = conditions
    return statement


def key_policy(governance: KeyGovernance, *, region: str, used_through: Sequence[str] = (),
               statements: Sequence[dict] = ()) -> dict:
    """The key policy document (see the module docstring). `used_through`: the services (`rds`,
    `secretsmanager`, …) in `region` through which the account's principals may use the key."""
    root = {"AWS": governance.account_root}
    policy_statements = [
        {"Sid": "AccountKeyPolicyRecovery", "Effect": "Allow", "Principal": root,
         "Action": list(RECOVERY_ACTIONS), "Resource": "*"},
        {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": list(governance.administrator_arns)},
         "Action": list(ADMINISTRATION_ACTIONS), "Resource": "*"},
    ]
    if used_through:
        via = {"kms:ViaService": [f"{service}.{region}.amazonaws.com" for service in used_through]}
        policy_statements += [
            {"Sid": "KeyUseThroughServices", "Effect": "Allow", "Principal": root,
             "Action": list(SERVICE_USE_ACTIONS), "Resource": "*", "Condition": {"StringEquals": via}},
            {"Sid": "GrantsForServices", "Effect": "Allow", "Principal": root, "Action": list(SERVICE_GRANT_ACTIONS),
             "Resource": "*",
             "Condition": {"StringEquals": via, "Bool": {"kms:GrantIsForAWSResource": "true"}}},
        ]
    return {"Version": "2012-10-17", "Statement": [*policy_statements, *statements]}


class EncryptionKey(Construct):
    """A key under `governance`: rotated (symmetric keys), aliased, its policy from `key_policy`,
    and kept from `terraform destroy` where the environment asks for it."""

    def __init__(self, scope: Construct, id_: str, *, alias: str, description: str, governance: KeyGovernance,
                 used_through: Sequence[str] = (), statements: Sequence[dict] = (),
                 key_spec: str = "SYMMETRIC_DEFAULT", key_usage: str = "ENCRYPT_DECRYPT",
                 region: str | None = None, provider=None) -> None:
        super().__init__(scope, id_)
        self.policy = key_policy(governance, region=region or governance.region, used_through=used_through,
                                 statements=statements)
        symmetric = key_spec == "SYMMETRIC_DEFAULT"
        self.key = KmsKey(self, "key", description=description, enable_key_rotation=symmetric or None,
                          deletion_window_in_days=governance.deletion_window_days, customer_master_key_spec=key_spec,
                          key_usage=key_usage, policy=json.dumps(self.policy), provider=provider,
                          lifecycle=TerraformResourceLifecycle(prevent_destroy=governance.prevent_destroy))
        KmsAlias(self, "alias", name=f"alias/{alias}", target_key_id=self.key.key_id, provider=provider)
        self.arn = self.key.arn


def cloudwatch_logs_statement(*, region: str, account_id: str, partition: str) -> dict:
    """Lets CloudWatch Logs in this region use the key for this account's log groups only."""
    return key_statement(
        "CloudWatchLogs", service=f"logs.{region}.amazonaws.com",
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}})
