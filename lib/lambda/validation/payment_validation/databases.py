"""Open the source and target connections with credentials from Secrets Manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError

from .config import ConfigurationError, DatabaseSettings, Settings
from .engine import ValidationError

CONNECT_TIMEOUT_SECONDS = 10


class DatabaseUnreachableError(ValidationError):
    pass


def read_credentials(secrets_manager, secret_arn: str) -> tuple[str, str]:
    """(username, password) from a secret holding {"username": …, "password": …}."""
    try:
        secret = secrets_manager.get_secret_value(SecretId=secret_arn)["SecretString"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise ConfigurationError(f"cannot read secret {secret_arn}: {code}") from error
    except (BotoCoreError, KeyError) as error:
        raise ConfigurationError(f"cannot read secret {secret_arn}: {error}") from error
    try:
        fields = json.loads(secret)
        username, password = fields["username"], fields["password"]
    except (ValueError, TypeError, KeyError):
        username = password = None
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        # never echo the secret's content
        raise ConfigurationError(f"secret {secret_arn} must be a JSON object with string fields username and password")
    return username, password


def connect(database: DatabaseSettings, side: str, settings: Settings, secrets_manager):
    username, password = read_credentials(secrets_manager, database.secret_arn)
    try:
        return psycopg2.connect(
            host=database.host, port=database.port, dbname=database.name, user=username, password=password,
            sslmode=settings.sslmode, sslrootcert=database.sslrootcert,
            connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="payment-validation",
        )
    except psycopg2.Error as error:
        # libpq's message names host, port and user, never the password
        reason = " ".join(str(error).split())
        raise DatabaseUnreachableError(f"cannot connect to the {side} database {database}: {reason}") from error


@contextmanager
def open_databases(settings: Settings, secrets_manager, direction: str = "forward") -> Iterator[tuple]:
    """(source, target) connections, closed on exit; `direction` as in Settings.databases."""
    source_database, target_database = settings.databases(direction)
    with ExitStack() as stack:
        source = connect(source_database, "source", settings, secrets_manager)
        stack.callback(source.close)
        target = connect(target_database, "target", settings, secrets_manager)
        stack.callback(target.close)
        yield source, target
