"""The Lambda handler end to end: secrets from moto in server mode, the real PostgreSQL server, the
environment the stack sets, and the EMF metrics the monitoring alarm watches."""

from __future__ import annotations

import json
import socket

import boto3
import pytest

from tests.validation.conftest import TABLES, emf_records, payment_id

REQUIRED_ENVIRONMENT = (
    "SOURCE_DB_HOST", "SOURCE_DB_PORT", "SOURCE_DB_NAME", "SOURCE_SECRET_ARN",
    "TARGET_DB_HOST", "TARGET_DB_PORT", "TARGET_DB_NAME", "TARGET_SECRET_ARN", "DB_SSLMODE",
)


def metric_values(stdout: str, name: str) -> list[tuple[str, dict, float]]:
    """(namespace, dimensions, value) of every EMF record carrying metric `name`."""
    found = []
    for record in emf_records(stdout):
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        if any(metric["Name"] == name for metric in directive["Metrics"]):
            dimensions = {key: record[key] for keys in directive["Dimensions"] for key in keys}
            value = record[name]
            (value,) = value if isinstance(value, list) else [value]  # Powertools writes [value]
            found.append((directive["Namespace"], dimensions, value))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_identical_databases_pass_and_report_zero_failures(validation_lambda, capsys):
    result = validation_lambda.invoke({})

    assert result["status"] == "PASSED", result["message"]
    assert {name: table["status"] for name, table in result["tables"].items()} == {name: "PASSED" for name in TABLES}
    stdout = capsys.readouterr().out
    assert metric_values(stdout, "ValidationFailed") == [("PaymentMigration", {"service": "validation"}, 0.0)]
    assert ("PaymentMigration", {"service": "validation", "table": "public.payments"}, 0.0) in \
        metric_values(stdout, "MismatchedRows")


def test_changed_row_fails_with_its_key_and_counts_in_metrics(validation_lambda, capsys):
    validation_lambda.databases.on_target("DELETE FROM transactions WHERE payment_id = %s", (payment_id(3),))
    validation_lambda.databases.on_target("DELETE FROM payments WHERE payment_id = %s", (payment_id(3),))

    result = validation_lambda.invoke({})

    assert result["status"] == "FAILED"
    payments = result["tables"]["public.payments"]
    assert (payments["missing_in_target"], payments["missing_in_target_total"]) == ([{"payment_id": payment_id(3)}], 1)
    assert result["tables"]["public.transactions"]["missing_in_target_total"] == 1  # payment 3 has one transaction
    stdout = capsys.readouterr().out
    assert metric_values(stdout, "ValidationFailed") == [("PaymentMigration", {"service": "validation"}, 1.0)]
    missing = {dims["table"]: value for _, dims, value in metric_values(stdout, "MissingInTarget")}
    assert missing == {"public.audit_log": 0, "public.customers": 0, "public.payments": 1, "public.transactions": 1}


def test_event_chooses_tables_and_caps_the_lists(validation_lambda):
    validation_lambda.databases.on_target("DELETE FROM audit_log WHERE audit_id IN (7, 8, 9)")

    result = validation_lambda.invoke({"tables": ["audit_log"], "max_diffs_per_table": 1})

    assert list(result["tables"]) == ["public.audit_log"]
    audit_log = result["tables"]["public.audit_log"]
    assert (audit_log["missing_in_target"], audit_log["missing_in_target_total"]) == ([{"audit_id": 7}], 3)


def test_schemas_and_metrics_namespace_come_from_the_environment(validation_lambda, monkeypatch, capsys):
    validation_lambda.databases.on_both("CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int PRIMARY KEY)")
    monkeypatch.setenv("SCHEMAS", "billing")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MigrationRehearsal")
    handler = validation_lambda.reload()

    result = validation_lambda.invoke({})

    assert list(result["tables"]) == ["billing.invoices"]
    assert handler.NAMESPACE == "MigrationRehearsal"
    assert metric_values(capsys.readouterr().out, "ValidationFailed") == [
        ("MigrationRehearsal", {"service": "validation"}, 0.0)]


@pytest.mark.parametrize("event, named", [
    ({"tabels": ["payments"]}, "'tabels'"),
    ({"tables": "payments"}, "'tables'"),
    ({"tables": []}, "'tables'"),
    ({"tables": ["payments", 7]}, "'tables'"),
    ({"max_diffs_per_table": "10"}, "'max_diffs_per_table'"),
    ({"max_diffs_per_table": True}, "'max_diffs_per_table'"),
    ({"max_diffs_per_table": -1}, "'max_diffs_per_table'"),
    (["payments"], "JSON object"),
])
def test_bad_event_is_an_error_naming_the_key(validation_lambda, capsys, event, named):
    result = validation_lambda.invoke(event)

    assert result["status"] == "ERROR"
    assert named in result["message"]
    assert result["tables"] == {}
    assert metric_values(capsys.readouterr().out, "ValidationFailed")[0][2] == 1.0


def test_unknown_table_in_event_is_an_error_naming_it(validation_lambda):
    result = validation_lambda.invoke({"tables": ["payments", "refunds"]})

    assert result["status"] == "ERROR"
    assert "refunds" in result["message"]


@pytest.mark.parametrize("name", REQUIRED_ENVIRONMENT)
def test_missing_environment_is_an_error_naming_the_variable(validation_lambda, monkeypatch, name):
    monkeypatch.delenv(name)

    result = validation_lambda.invoke({})

    assert (result["status"], result["message"]) == ("ERROR", f"missing environment variable {name}")


@pytest.mark.parametrize("name, value, named", [
    ("TARGET_DB_PORT", "5432x", "TARGET_DB_PORT"),
    ("DB_SSLMODE", "required", "DB_SSLMODE"),
    ("SCHEMAS", "public,,billing", "SCHEMAS"),
    ("STATEMENT_TIMEOUT_SECONDS", "0", "STATEMENT_TIMEOUT_SECONDS"),
])
def test_malformed_environment_is_an_error_naming_the_variable(validation_lambda, monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)

    result = validation_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert named in result["message"]


def test_unreachable_database_is_an_error_with_a_message(validation_lambda, monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("TARGET_DB_PORT", str(port))

    result = validation_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"].startswith(
        f"cannot connect to the target database 127.0.0.1:{port}/{validation_lambda.databases.target}: ")
    assert "Connection refused" in result["message"]
    output = capsys.readouterr()
    assert validation_lambda.password not in result["message"] + output.out + output.err
    assert metric_values(output.out, "ValidationFailed")[0][2] == 1.0


def test_wrong_password_is_an_error_that_does_not_leak_it(validation_lambda, capsys):
    wrong = "not-the-password-4711"
    boto3.client("secretsmanager").put_secret_value(
        SecretId=validation_lambda.environment["SOURCE_SECRET_ARN"],
        SecretString=json.dumps({"username": "payments_app", "password": wrong}),
    )

    result = validation_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert "cannot connect to the source database" in result["message"]
    assert "password authentication failed" in result["message"]
    output = capsys.readouterr()
    assert wrong not in result["message"] + output.out + output.err


@pytest.mark.parametrize("secret", ["not json", json.dumps({"user": "payments_app", "password": "x"}), "[]"])
def test_malformed_secret_is_an_error_naming_the_secret_not_its_content(validation_lambda, secret):
    arn = validation_lambda.environment["TARGET_SECRET_ARN"]
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=secret)

    result = validation_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"] == f"secret {arn} must be a JSON object with string fields username and password"


def test_missing_secret_is_an_error_naming_it(validation_lambda, monkeypatch):
    arn = validation_lambda.environment["SOURCE_SECRET_ARN"].replace("onprem-db", "gone")
    monkeypatch.setenv("SOURCE_SECRET_ARN", arn)

    result = validation_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"] == f"cannot read secret {arn}: ResourceNotFoundException"
