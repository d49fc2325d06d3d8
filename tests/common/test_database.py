"""Database settings and credentials as every function reads them (payment_common.database): one set
of names, and one answer to "is it worth a retry"."""

from __future__ import annotations

import json

import boto3
import pytest

from payment_common.aws import client_config
from payment_common.database import (
    RDS_CA_BUNDLE, CredentialCache, DatabaseSettings, database_settings, read_credentials,
)
from payment_common.errors import AwsUnavailable, ConfigurationError, DatabaseUnavailable

SIDES_ENVIRONMENT = {"ONPREM_DB_HOST": "10.0.0.5", "ONPREM_DB_NAME": "payments", "ONPREM_DB_SECRET_ARN": "arn:onprem",
                     "AURORA_DB_HOST": "aurora.internal", "AURORA_DB_PORT": "6543", "AURORA_DB_NAME": "payments",
                     "AURORA_DB_SECRET_ARN": "arn:aws", "AURORA_DB_REPLICATION_SECRET_ARN": "arn:aws-replication"}


def test_both_sides_are_read_from_one_set_of_names():
    sides = database_settings(SIDES_ENVIRONMENT, connect_timeout_seconds=7)
    onprem, aws = sides["onprem"], sides["aws"]
    assert (onprem.side, str(onprem), onprem.secret_arn) == ("onprem", "10.0.0.5:5432/payments", "arn:onprem")
    assert (aws.side, str(aws), aws.secret_arn) == ("aws", "aurora.internal:6543/payments", "arn:aws")
    assert (aws.replication_secret_arn, onprem.replication_secret_arn) == ("arn:aws-replication", None)
    assert {side.sslmode for side in sides.values()} == {"verify-full"}
    assert {side.sslrootcert for side in sides.values()} == {RDS_CA_BUNDLE}
    assert {side.connect_timeout_seconds for side in sides.values()} == {7}
    assert database_settings({**SIDES_ENVIRONMENT, "DB_CONNECT_TIMEOUT": "2"})["aws"].connect_timeout_seconds == 2


@pytest.mark.parametrize("name, value, message", [
    ("AURORA_DB_HOST", "", "configuration incomplete: AURORA_DB_HOST is not set"),
    ("ONPREM_DB_PORT", "0", "ONPREM_DB_PORT must be an integer from 1 to 65535, got '0'"),
    ("ONPREM_DB_PORT", "5432x", "ONPREM_DB_PORT must be an integer from 1 to 65535"),
    ("DB_CONNECT_TIMEOUT", "600", "DB_CONNECT_TIMEOUT must be an integer from 1 to 60"),
    ("DB_SSLMODE", "prefer", "DB_SSLMODE must be one of require, verify-ca, verify-full, got 'prefer'"),
])
def test_a_wrong_setting_is_a_configuration_error_naming_it(name, value, message):
    with pytest.raises(ConfigurationError, match=message):
        database_settings({**SIDES_ENVIRONMENT, name: value})


def test_an_unreadable_secret_means_the_same_in_every_function(aws):
    secrets = boto3.client("secretsmanager")
    good = secrets.create_secret(Name="good", SecretString=json.dumps({"username": "app", "password": "pw"}))["ARN"]
    assert read_credentials(secrets, good) == ("app", "pw")

    # Gone (or not ours to read): a human fixes the deployment, a retry cannot.
    with pytest.raises(ConfigurationError, match="cannot read secret arn:gone: GetSecretValue ResourceNotFound") as gone:
        read_credentials(secrets, "arn:gone")
    assert not gone.value.retryable

    # Not a username and a password: the message names the secret, never its content.
    for content in ("not json", json.dumps({"user": "app", "password": "s3cr3t-content"}), "[]"):
        secrets.put_secret_value(SecretId=good, SecretString=content)
        with pytest.raises(ConfigurationError, match="must be a JSON object with string fields") as malformed:
            read_credentials(secrets, good)
        assert "s3cr3t-content" not in str(malformed.value)

    # Secrets Manager cannot be reached now (refused at once: nothing listens on the discard port).
    unreachable = boto3.client("secretsmanager", endpoint_url="http://127.0.0.1:9",
                               config=client_config(1, connect_timeout=1, read_timeout=1))
    with pytest.raises(AwsUnavailable, match=f"cannot read secret {good}") as later:
        read_credentials(unreachable, good)
    assert later.value.retryable


def test_credentials_are_kept_for_their_age_and_read_again_after_a_refused_connection(aws):
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="kept", SecretString=json.dumps({"username": "app", "password": "one"}))["ARN"]
    now = [1000.0]
    cache = CredentialCache(max_age_seconds=60, clock=lambda: now[0])
    assert cache.read(secrets, arn) == ("app", "one")

    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "app", "password": "two"}))
    now[0] += 59
    assert cache.read(secrets, arn) == ("app", "one"), "read again before its age"
    now[0] += 1
    assert cache.read(secrets, arn) == ("app", "two"), "kept past its age"

    # a connection refused with the kept credentials (here: nothing listens) forgets them
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "app", "password": "three"}))
    nowhere = DatabaseSettings(side="aws", host="127.0.0.1", port=9, dbname="payments", secret_arn=arn,
                               sslmode="require", sslrootcert=None, connect_timeout_seconds=1)
    with pytest.raises(DatabaseUnavailable, match="cannot connect to the aws database 127.0.0.1:9/payments as app"):
        cache.connect(nowhere, secrets, arn, application_name="test")
    assert cache.read(secrets, arn) == ("app", "three")
