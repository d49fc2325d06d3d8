"""The Lambda handler end to end: secrets from moto in server mode, the real PostgreSQL server, the
environment the stack sets, and the EMF metrics the monitoring alarm watches."""

from __future__ import annotations

import json
import socket

import boto3
import pytest

from tests.validation.conftest import TABLES, emf_records, payment_id

REQUIRED_ENVIRONMENT = (  # the ports are optional (5432), as in every function
    "ONPREM_DB_HOST", "ONPREM_DB_NAME", "ONPREM_DB_SECRET_ARN",
    "AURORA_DB_HOST", "AURORA_DB_NAME", "AURORA_DB_SECRET_ARN",
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


def test_identical_databases_pass_and_report_zero_failures(readonly_lambda, capsys):
    result = readonly_lambda.invoke({})

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
    ({"recheck_seconds": "5"}, "'recheck_seconds'"),
    ({"recheck_seconds": -1}, "'recheck_seconds'"),
    ({"recheck_seconds": 301}, "'recheck_seconds'"),
    ({"recheck_seconds": float("nan")}, "'recheck_seconds'"),
    ({"recheck_seconds": True}, "'recheck_seconds'"),
    ({"recheck_rounds": 1.5}, "'recheck_rounds'"),
    ({"recheck_rounds": 21}, "'recheck_rounds'"),
    ({"recheck_rounds": 10, "recheck_seconds": 61}, "'recheck_rounds' (10) times 'recheck_seconds' (61)"),
    ({"check_sequences": "yes"}, "'check_sequences'"),
    ({"direction": "backward"}, "'direction'"),
    ({"action": "compare"}, "'action'"),
    ({"action": "plan", "chunk_rows": 0}, "'chunk_rows'"),
    ({"action": "plan", "chunk": {}}, "'chunk'"),
    ({"action": "validate_chunk"}, "'chunk'"),
    ({"action": "validate_chunk", "chunk": {"table": "public.payments"}}, "'chunk'"),
    ({"action": "validate_chunk", "chunk": {"table": "public.payments", "index": 0, "count": 1, "lower": None,
                                            "upper": None}, "tables": ["payments"]}, "'tables'"),
    ({"chunk": {"table": "public.payments", "index": 0, "count": 1}}, "'chunk'"),
    ({"action": "merge", "results": []}, "'plan'"),
    ({"action": "merge", "plan": {"status": "PLANNED", "items": []}, "results": []}, "'plan'"),
    ({"action": "merge", "plan": {"status": "PLANNED", "items": [{"action": "validate"}]}, "results": []}, "'plan'"),
    ({"action": "merge", "plan": {"status": "ERROR"}, "results": {}}, "'results'"),
])
def test_bad_event_is_an_error_naming_the_key(readonly_lambda, capsys, event, named):
    result = readonly_lambda.invoke(event)

    assert result["status"] == "ERROR"
    assert named in result["message"]
    assert result["tables"] == {}
    if not (isinstance(event, dict) and event.get("action") in ("plan", "validate_chunk")):  # their merge reports
        assert metric_values(capsys.readouterr().out, "ValidationFailed")[0][2] == 1.0


def test_unknown_table_in_event_is_an_error_naming_it(readonly_lambda):
    result = readonly_lambda.invoke({"tables": ["payments", "refunds"]})

    assert result["status"] == "ERROR"
    assert "refunds" in result["message"]


@pytest.mark.parametrize("name", REQUIRED_ENVIRONMENT)
def test_missing_environment_is_an_error_naming_the_variable(readonly_lambda, monkeypatch, name):
    monkeypatch.delenv(name)

    result = readonly_lambda.invoke({})

    assert (result["status"], result["message"]) == ("ERROR", f"configuration incomplete: {name} is not set")


@pytest.mark.parametrize("name, value, named", [
    ("AURORA_DB_PORT", "5432x", "AURORA_DB_PORT"),
    ("DB_SSLMODE", "required", "DB_SSLMODE"),
    ("SCHEMAS", "public,,billing", "SCHEMAS"),
    ("STATEMENT_TIMEOUT_SECONDS", "0", "STATEMENT_TIMEOUT_SECONDS"),
])
def test_malformed_environment_is_an_error_naming_the_variable(readonly_lambda, monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)

    result = readonly_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert named in result["message"]


def test_unreachable_database_is_an_error_with_a_message(readonly_lambda, monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AURORA_DB_PORT", str(port))

    result = readonly_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"].startswith(
        f"cannot connect to the aws database 127.0.0.1:{port}/{readonly_lambda.databases.target} as ")
    assert "Connection refused" in result["message"]
    output = capsys.readouterr()
    assert readonly_lambda.password not in result["message"] + output.out + output.err
    assert metric_values(output.out, "ValidationFailed")[0][2] == 1.0


def test_wrong_password_is_an_error_that_does_not_leak_it(readonly_lambda, capsys):
    wrong = "not-the-password-4711"
    boto3.client("secretsmanager").put_secret_value(
        SecretId=readonly_lambda.environment["ONPREM_DB_SECRET_ARN"],
        SecretString=json.dumps({"username": "payments_app", "password": wrong}),
    )

    result = readonly_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert "cannot connect to the onprem database" in result["message"]
    assert "password authentication failed" in result["message"]
    output = capsys.readouterr()
    assert wrong not in result["message"] + output.out + output.err


@pytest.mark.parametrize("secret", ["not json", json.dumps({"user": "payments_app", "password": "x"}), "[]"])
def test_malformed_secret_is_an_error_naming_the_secret_not_its_content(readonly_lambda, secret):
    arn = readonly_lambda.environment["AURORA_DB_SECRET_ARN"]
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=secret)

    result = readonly_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"] == f"secret {arn} must be a JSON object with string fields username and password"


def test_missing_secret_is_an_error_naming_it(readonly_lambda, monkeypatch):
    arn = readonly_lambda.environment["ONPREM_DB_SECRET_ARN"].replace("onprem-db", "gone")
    monkeypatch.setenv("ONPREM_DB_SECRET_ARN", arn)

    result = readonly_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"].startswith(f"cannot read secret {arn}: GetSecretValue ResourceNotFoundException"), \
        result["message"]


def test_recheck_defaults_come_from_the_environment_and_the_event_overrides_them(validation_lambda, monkeypatch):
    validation_lambda.databases.on_target("DELETE FROM audit_log WHERE audit_id = 9")
    monkeypatch.setenv("RECHECK_ROUNDS", "2")

    from_environment = validation_lambda.invoke({"tables": ["audit_log"]})
    from_event = validation_lambda.invoke({"tables": ["audit_log"], "recheck_rounds": 0})

    assert (from_environment["status"], from_environment["recheck_rounds"]) == ("FAILED", 2)
    assert (from_event["status"], from_event["recheck_rounds"]) == ("FAILED", 0)


def test_without_recheck_settings_the_documented_defaults_apply():
    from payment_validation.config import DEFAULT_RECHECK_ROUNDS, DEFAULT_RECHECK_SECONDS, Settings

    environment = {name: "x" for name in REQUIRED_ENVIRONMENT} | {"ONPREM_DB_PORT": "5432", "AURORA_DB_PORT": "5432",
                                                                  "DB_SSLMODE": "require"}

    settings = Settings.from_environment(environment)

    assert (settings.recheck_seconds, settings.recheck_rounds) == (DEFAULT_RECHECK_SECONDS, DEFAULT_RECHECK_ROUNDS)
    assert DEFAULT_RECHECK_SECONDS * DEFAULT_RECHECK_ROUNDS <= 60


@pytest.mark.parametrize("name, value", [
    ("RECHECK_SECONDS", "soon"), ("RECHECK_SECONDS", "-1"), ("RECHECK_ROUNDS", "three"), ("RECHECK_ROUNDS", "21"),
])
def test_malformed_recheck_environment_is_an_error_naming_the_variable(readonly_lambda, monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    result = readonly_lambda.invoke({})

    assert result["status"] == "ERROR"
    assert result["message"].startswith(f"{name} must be")


def test_reverse_direction_swaps_source_and_target(validation_lambda):
    """After the data cutover the old writer is Aurora (AURORA_DB_*): a row only it holds is missing in
    the new writer, on-prem (ONPREM_DB_*)."""
    validation_lambda.databases.on_target("INSERT INTO customers (customer_id, external_ref, display_name) "
                                          "VALUES ('00000000-0000-4000-8000-00000000beef', 'CUST-X', 'Aurora only')")

    forward = validation_lambda.invoke({"tables": ["customers"]})
    reverse = validation_lambda.invoke({"tables": ["customers"], "direction": "reverse"})

    assert (forward["direction"], forward["tables"]["public.customers"]["message"]) == ("forward", "1 extra_in_target")
    assert (reverse["direction"], reverse["tables"]["public.customers"]["message"]) == ("reverse", "1 missing_in_target")


def test_check_sequences_in_reverse_looks_at_the_new_writer(validation_lambda):
    """The cutover advanced Aurora's sequences but the rollback's new writer is on-prem: its
    sequence, behind, fails the check only in the reverse direction."""
    validation_lambda.databases.on_source("SELECT setval('audit_log_audit_id_seq', 20)")

    forward = validation_lambda.invoke({"tables": ["audit_log"], "check_sequences": True})
    reverse = validation_lambda.invoke({"tables": ["audit_log"], "check_sequences": True, "direction": "reverse"})

    assert forward["status"] == "PASSED", forward["message"]
    assert reverse["status"] == "FAILED"
    assert "sequence public.audit_log_audit_id_seq is behind column audit_id on target" in reverse["message"]


def test_plan_and_chunk_actions_emit_no_metrics_and_merge_does(readonly_lambda, capsys):
    plan = readonly_lambda.invoke({"action": "plan", "tables": ["payments"]})
    chunk = readonly_lambda.invoke(plan["items"][0])
    capsys.readouterr()

    merged = readonly_lambda.invoke({"action": "merge", "plan": plan, "results": [chunk]})

    assert (plan["status"], chunk["status"], merged["status"]) == ("PLANNED", "PASSED", "PASSED")
    assert metric_values(capsys.readouterr().out, "ValidationFailed") == [
        ("PaymentMigration", {"service": "validation"}, 0.0)]


def test_a_failed_plan_merges_into_an_error(readonly_lambda):
    plan = readonly_lambda.invoke({"action": "plan", "tables": ["refunds"]})

    merged = readonly_lambda.invoke({"action": "merge", "plan": plan, "results": []})

    assert (plan["status"], plan["items"]) == ("ERROR", [])
    assert merged["status"] == "ERROR"
    assert merged["message"].startswith("planning failed: tables not found") and "refunds" in merged["message"]


def test_a_chunk_that_cannot_run_names_its_chunk(readonly_lambda, monkeypatch):
    plan = readonly_lambda.invoke({"action": "plan", "tables": ["payments"]})
    monkeypatch.setenv("AURORA_DB_PORT", str(free_port()))

    chunk = readonly_lambda.invoke(plan["items"][0])
    merged = readonly_lambda.invoke({"action": "merge", "plan": plan, "results": [chunk]})

    assert (chunk["status"], chunk["chunk"]) == ("ERROR", plan["items"][0]["chunk"])
    assert merged["tables"]["public.payments"]["message"].startswith(
        "public.payments chunk 1 of 1: cannot connect to the aws database")
