"""How the Lambdas reach the two databases: their environment (<SIDE>_DB_HOST, _PORT, _NAME,
_SECRET_ARN for each side, and the TLS mode) and the permissions to read one role's secrets."""

from __future__ import annotations

from lib.config import Config
from lib.constructs.iam import allow
from lib.stacks.database import DatabaseStack
from lib.stacks.security import SecurityStack

SIDE_PREFIXES = {"onprem": "ONPREM_DB_", "aws": "AURORA_DB_"}
# Verified TLS on both sides: Aurora against the RDS CA bundle in the zip (the functions' default),
# on-prem against its own CA, which the bundle carries at this path (lib/app.py).
DB_SSLMODE = "verify-full"
ONPREM_CA_PATH = "/var/task/certs/onprem-ca.pem"


def database_environment(config: Config, database: DatabaseStack, security: SecurityStack, *,
                         role: str) -> dict[str, str]:
    """Both sides' endpoints, with the secret of `role` on each (schema/roles.sql's roles)."""
    endpoints = {"onprem": (config.onprem.db_host, str(config.onprem.db_port), config.onprem.db_name),
                 "aws": (database.endpoint, str(database.port), database.database_name)}
    environment = {"DB_SSLMODE": DB_SSLMODE, "ONPREM_DB_SSLROOTCERT": ONPREM_CA_PATH}
    for side, (host, port, name) in endpoints.items():
        prefix = SIDE_PREFIXES[side]
        environment.update({f"{prefix}HOST": host, f"{prefix}PORT": port, f"{prefix}NAME": name,
                            f"{prefix}SECRET_ARN": security.database_secrets.arn(side, role)})
    return environment


def read_secrets_statements(config: Config, security: SecurityStack, *, role: str) -> list:
    """GetSecretValue on `role`'s two secrets, and decrypting them through Secrets Manager only."""
    return [
        allow(["secretsmanager:GetSecretValue"], [security.database_secrets.arn(side, role) for side in SIDE_PREFIXES],
              sid=f"Read{''.join(part.title() for part in role.split('_'))}Secrets"),
        allow(["kms:Decrypt"], [security.database_secrets.key_arn], sid="DecryptDatabaseSecrets",
              conditions=[("StringEquals", "kms:ViaService", [f"secretsmanager.{config.region}.amazonaws.com"])]),
    ]
