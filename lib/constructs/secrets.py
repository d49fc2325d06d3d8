"""One Secrets Manager secret per database role and side, created empty: the operator puts each
value from a prompt (README, Credentials), so no password reaches code, plan or state.

The roles are those schema/roles.sql creates on both databases, one per purpose; the Aurora master
secret (RDS-managed) stays break-glass and nothing deployed reads it."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from lib.cdk.aws.secretsmanager_secret import SecretsmanagerSecret
from lib.names import SIDES, secret_name


@dataclass(frozen=True)
class DatabaseRole:
    name: str
    purpose: str
    needs_endpoint: bool = False  # DMS reads host and port from the secret too


DATABASE_ROLES = (
    DatabaseRole("payment_app", "the payment API's writes and reads (fenced off the side that is not the writer)"),
    DatabaseRole("payment_validator", "the validation Lambda (SELECT only)"),
    DatabaseRole("payment_controller", "the cutover controller (fence, markers, sequences, replication slots)"),
    DatabaseRole("dms_source", "DMS reading this side's changes (REPLICATION + SELECT)", needs_endpoint=True),
    DatabaseRole("dms_target", "DMS applying changes to this side (DML on the replicated tables)",
                 needs_endpoint=True),
)
SIDE_NAMES = {"onprem": "on-prem PostgreSQL", "aws": "Aurora PostgreSQL"}


class DatabaseCredentials(Construct):
    def __init__(self, scope: Construct, id_: str, *, env_name: str, key_arn: str, recovery_window_days: int):
        super().__init__(scope, id_)
        self.key_arn = key_arn
        self._arns: dict[tuple[str, str], str] = {}
        self._names_and_arns: list[tuple[str, str]] = []
        for side in SIDES:
            for role in DATABASE_ROLES:
                fields = '{"username", "password", "host", "port"}' if role.needs_endpoint else \
                    '{"username", "password"}'
                name = secret_name(env_name, side, role.name)
                secret = SecretsmanagerSecret(
                    self, f"{side}-{role.name}", name=name,
                    description=f"{SIDE_NAMES[side]} role {role.name}, {role.purpose}: {fields}; "
                                "value set by the operator",
                    kms_key_id=key_arn, recovery_window_in_days=recovery_window_days)
                self._arns[(side, role.name)] = secret.arn
                self._names_and_arns.append((name, secret.arn))

    def arn(self, side: str, role: str) -> str:
        return self._arns[(side, role)]

    def names_and_arns(self) -> list[tuple[str, str]]:
        """Every secret's name and ARN, on-prem's first."""
        return list(self._names_and_arns)


def secret_names(env_name: str) -> dict[tuple[str, str], str]:
    """(side, role) → name, for every database secret of an environment (alarms name them)."""
    return {(side, role.name): secret_name(env_name, side, role.name) for side in SIDES for role in DATABASE_ROLES}
