"""Where the two databases are, how their certificates are verified, who we are, and connecting.

The environment, the same for every function that connects (the stacks set it):

    ONPREM_DB_HOST, ONPREM_DB_PORT, ONPREM_DB_NAME, ONPREM_DB_SECRET_ARN   the on-prem database
    AURORA_DB_HOST, AURORA_DB_PORT, AURORA_DB_NAME, AURORA_DB_SECRET_ARN   the Aurora database
        <prefix>PORT optional (default 5432); each secret a JSON object with "username" and
        "password" (as RDS-managed secrets are)
    <prefix>REPLICATION_SECRET_ARN, <prefix>SUBSCRIPTION_SECRET_ARN   optional: the cutover's
        postgres-logical driver's publisher and subscription-manager roles
    DB_SSLMODE       optional: verify-full (default: certificate and name checked), verify-ca, or
                     require (encrypted, server not verified). TLS is never optional.
    DB_SSLROOTCERT   optional: the CA bundle for verify-ca / verify-full (default: the RDS CA bundle
                     in the zip); <prefix>SSLROOTCERT overrides it per side (on-prem has its own CA)
    DB_CONNECT_TIMEOUT  optional: seconds (1 to 60; each function has its default)

Errors, the same in every function: a setting or a secret's content wrong is ConfigurationError; a
secret that cannot be read now (throttling, the network) is AwsUnavailable, one that cannot be read
at all (missing, access denied) ConfigurationError; a database that cannot be reached is
DatabaseUnavailable."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, ConfigurationError, DatabaseUnavailable, describe_aws_error
from payment_common.sides import AWS, ONPREM

TLS_SSLMODES = ("require", "verify-ca", "verify-full")
DEFAULT_SSLMODE = "verify-full"
# The Amazon RDS CA bundle lib/bundler.py puts at the zip's root (certs/), beside this package: what
# verify-ca / verify-full trust when the environment names no other file.
RDS_CA_BUNDLE = str(Path(__file__).resolve().parents[1] / "certs" / "rds-global-bundle.pem")
# Environment prefix of each side's settings.
SIDE_PREFIXES = {ONPREM: "ONPREM_DB_", AWS: "AURORA_DB_"}
MAX_CONNECT_TIMEOUT_SECONDS = 60
# Secrets Manager answers these when the secret cannot be read however often one asks.
_SECRET_CONFIGURATION_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException",
                                         "AccessDenied", "DecryptionFailure", "InvalidRequestException",
                                         "InvalidParameterException"})


@dataclass(frozen=True)
class DatabaseSettings:
    side: str
    host: str
    dbname: str
    secret_arn: str
    port: int = 5432
    sslmode: str = DEFAULT_SSLMODE
    sslrootcert: str | None = RDS_CA_BUNDLE  # the CA file its certificate is verified with (None: not verified)
    connect_timeout_seconds: int = 5
    replication_secret_arn: str | None = None  # the cutover's postgres-logical publisher role
    subscription_secret_arn: str | None = None  # who manages subscriptions there (PG15: a superuser)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


def database_settings(environ: Mapping[str, str], *, connect_timeout_seconds: int = 5) -> dict[str, DatabaseSettings]:
    """Both sides' settings, from the environment described above; `connect_timeout_seconds` is
    the default of DB_CONNECT_TIMEOUT."""
    sslmode = _value(environ, "DB_SSLMODE") or DEFAULT_SSLMODE
    if sslmode not in TLS_SSLMODES:
        raise ConfigurationError(f"configuration invalid: DB_SSLMODE must be one of {', '.join(TLS_SSLMODES)}, "
                                 f"got {sslmode!r}")
    connect_timeout = _integer(environ, "DB_CONNECT_TIMEOUT", connect_timeout_seconds, MAX_CONNECT_TIMEOUT_SECONDS)
    return {side: DatabaseSettings(
        side=side,
        host=_required(environ, f"{prefix}HOST"),
        port=_integer(environ, f"{prefix}PORT", 5432, 65535),
        dbname=_required(environ, f"{prefix}NAME"),
        secret_arn=_required(environ, f"{prefix}SECRET_ARN"),
        sslmode=sslmode,
        sslrootcert=(_value(environ, f"{prefix}SSLROOTCERT") or _value(environ, "DB_SSLROOTCERT")
                     or (RDS_CA_BUNDLE if sslmode.startswith("verify-") else None)),
        connect_timeout_seconds=connect_timeout,
        replication_secret_arn=_value(environ, f"{prefix}REPLICATION_SECRET_ARN"),
        subscription_secret_arn=_value(environ, f"{prefix}SUBSCRIPTION_SECRET_ARN"),
    ) for side, prefix in SIDE_PREFIXES.items()}


def read_credentials(secrets: Any, secret_arn: str) -> tuple[str, str]:
    """(username, password) from a secret holding {"username": ..., "password": ...}."""
    try:
        text = secrets.get_secret_value(SecretId=secret_arn)["SecretString"]
    except ClientError as error:
        reason = describe_aws_error(error)
        if error.response.get("Error", {}).get("Code") in _SECRET_CONFIGURATION_CODES:
            raise ConfigurationError(f"cannot read secret {secret_arn}: {reason}") from error
        raise AwsUnavailable(f"cannot read secret {secret_arn}: {reason}") from error
    except BotoCoreError as error:
        raise AwsUnavailable(f"cannot read secret {secret_arn}: {describe_aws_error(error)}") from error
    except KeyError:
        raise ConfigurationError(f"secret {secret_arn} has no string value") from None
    try:
        fields = json.loads(text)
        username, password = fields["username"], fields["password"]
    except (ValueError, TypeError, KeyError):
        username = password = None
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        # never echo the secret's content
        raise ConfigurationError(f"secret {secret_arn} must be a JSON object with string fields username and password")
    return username, password


class CredentialCache:
    """Credentials read from Secrets Manager, kept for `max_age_seconds` in this process (a warm
    Lambda execution environment, as the AWS Parameters and Secrets extension keeps them): a cutover
    step connects as four to six roles, and a read per role per step is a round trip inside the
    fenced window, when every write waits. A rotated secret is read again once the age passes, or
    at once after `forget` (a connection with the cached credentials refused)."""

    def __init__(self, max_age_seconds: float = 300.0, clock: Any = time.monotonic):
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._kept: dict[str, tuple[float, tuple[str, str]]] = {}

    def read(self, secrets: Any, secret_arn: str) -> tuple[str, str]:
        kept = self._kept.get(secret_arn)
        if kept is not None and self._clock() - kept[0] < self.max_age_seconds:
            return kept[1]
        credentials = read_credentials(secrets, secret_arn)
        self._kept[secret_arn] = (self._clock(), credentials)
        return credentials

    def forget(self, secret_arn: str) -> None:
        self._kept.pop(secret_arn, None)

    def connect(self, settings: DatabaseSettings, secrets: Any, secret_arn: str, *, application_name: str,
                **options: Any):
        """`connect` as the role of `secret_arn`; a refused connection forgets its credentials, so
        the retry reads the secret again."""
        user, password = self.read(secrets, secret_arn)
        try:
            return connect(settings, user, password, application_name=application_name, **options)
        except DatabaseUnavailable:
            self.forget(secret_arn)
            raise


def connect(settings: DatabaseSettings, user: str, password: str, *, application_name: str, **options: Any):
    """A psycopg2 connection with the settings' TLS; `options` go to psycopg2.connect (e.g.
    options="-c statement_timeout=5000", keepalives=1). DatabaseUnavailable naming the server and
    the user (libpq's message never holds the password) when it cannot be opened."""
    import psycopg2  # only the functions that connect ship a driver

    try:
        return psycopg2.connect(host=settings.host, port=settings.port, dbname=settings.dbname, user=user,
                                password=password, sslmode=settings.sslmode, sslrootcert=settings.sslrootcert,
                                connect_timeout=settings.connect_timeout_seconds,
                                application_name=application_name, **options)
    except psycopg2.OperationalError as error:
        reason = " ".join(str(error).split())
        raise DatabaseUnavailable(f"cannot connect to the {settings.side} database {settings} as {user}: "
                                  f"{reason}") from error


def _value(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name, "").strip() or None


def _required(environ: Mapping[str, str], name: str) -> str:
    value = _value(environ, name)
    if value is None:
        raise ConfigurationError(f"configuration incomplete: {name} is not set")
    return value


def _integer(environ: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = _value(environ, name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]+", raw) or not 0 < int(raw) <= maximum:
        raise ConfigurationError(f"configuration invalid: {name} must be an integer from 1 to {maximum}, got {raw!r}")
    return int(raw)
