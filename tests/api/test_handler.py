"""The payment API end to end: ALB events through lambda_handler, a real PostgreSQL with the
reference schema, the credentials in (moto's) Secrets Manager."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

# Powertools warns when an invocation (a health check, a refused request) records no metric.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def payment_body(customer_id: str, **overrides) -> dict:
    return {**{"customer_id": customer_id, "amount": "125.50", "currency": "EUR"}, **overrides}


# --- health -------------------------------------------------------------------------------------

def test_health_is_ok_when_the_database_answers(api):
    response = api.call("GET", "/health")
    assert (response.status, response.body) == (200, {"status": "ok"}), str(response)


def test_health_is_503_while_the_database_is_down_and_recovers_after(api, postgres):
    assert api.call("GET", "/health").status == 200  # a kept connection, which the stop breaks
    postgres.stop()
    try:
        down = api.call("GET", "/health")
        assert down.status == 503, str(down)
        assert down.body["status"] == "unavailable"
        assert down.body["reason"].startswith("database"), str(down)
        assert postgres.app_password not in str(down.body), "the reason leaks the database password"
    finally:
        postgres.start()
    recovered = api.call("GET", "/health")
    assert recovered.status == 200, f"health did not reconnect after the database came back: {recovered}"


def test_health_is_503_without_leaking_when_the_secret_is_missing(api, function_env, monkeypatch):
    monkeypatch.setenv("ONPREM_DB_SECRET_ARN", function_env["ONPREM_DB_SECRET_ARN"] + "-gone")
    response = api.call("GET", "/health")
    assert (response.status, response.body["reason"]) == (503, "database credentials unavailable"), str(response)


def test_health_is_503_when_the_password_is_wrong(api, db_secret_arn, postgres):
    boto3.client("secretsmanager").put_secret_value(
        SecretId=db_secret_arn,
        SecretString=json.dumps({"username": postgres.app_user, "password": "not-the-password"}))
    response = api.call("GET", "/health")
    assert (response.status, response.body["reason"]) == (503, "database unreachable"), str(response)
    assert "not-the-password" not in str(response.body)


@pytest.mark.parametrize("setting", ["WRITER_PARAMETER", "ONPREM_DB_SECRET_ARN", "ONPREM_DB_HOST",
                                     "ONPREM_DB_NAME", "AURORA_DB_SECRET_ARN", "AURORA_DB_HOST", "AURORA_DB_NAME"])
def test_health_is_503_naming_a_missing_setting(api, monkeypatch, setting):
    monkeypatch.delenv(setting)
    response = api.call("GET", "/health")
    assert response.status == 503, str(response)
    assert response.body["reason"] == f"configuration incomplete: {setting} is not set"


def test_plaintext_sslmode_is_refused(api, monkeypatch):
    monkeypatch.setenv("DB_SSLMODE", "disable")
    response = api.call("GET", "/health")
    assert response.status == 503 and "DB_SSLMODE" in response.body["reason"], str(response)


# --- create -------------------------------------------------------------------------------------

def test_create_returns_201_with_the_payment_and_writes_an_audit_row(api, customer_id):
    response = api.create(payment_body(customer_id, payment_token="tok_abcdEFGH1234"), key="order-1001")
    assert response.status == 201, str(response)
    payment = response.body
    assert uuid.UUID(payment["payment_id"])
    assert {k: payment[k] for k in ("customer_id", "amount", "currency", "status", "payment_token")} == {
        "customer_id": customer_id, "amount": "125.50", "currency": "EUR", "status": "pending",
        "payment_token": "tok_abcdEFGH1234"}
    assert response.headers["location"] == f"/payments/{payment['payment_id']}"
    assert response.headers["content-type"] == "application/json"
    assert api.scalar("SELECT amount::text FROM payments WHERE payment_id = %s", (payment["payment_id"],)) == "125.50"
    audit = api.scalar("SELECT count(*) FROM audit_log "
                       "WHERE entity = 'payment' AND entity_id = %s AND action = 'created'", (payment["payment_id"],))
    assert audit == 1, "the payment has no audit_log row"


def test_create_accepts_a_base64_encoded_body(api, customer_id):
    response = api.call("POST", "/payments", body=payment_body(customer_id), base64_body=True,
                        headers={"Idempotency-Key": "b64-1"})
    assert response.status == 201, str(response)


def test_retry_with_the_same_key_and_body_returns_the_same_payment_and_creates_nothing(api, customer_id):
    first = api.create(payment_body(customer_id), key="retry-key")
    retry = api.create(payment_body(customer_id), key="retry-key")
    assert first.status == 201, str(first)
    assert retry.status == 200, str(retry)
    assert retry.body == first.body
    assert retry.headers.get("idempotent-replayed") == "true"
    assert api.scalar("SELECT count(*) FROM payments WHERE idempotency_key = 'retry-key'") == 1
    assert api.scalar("SELECT count(*) FROM audit_log") == 1, "the retry wrote a second audit row"


def test_retry_with_an_equivalent_amount_is_the_same_request(api, customer_id):
    first = api.create(payment_body(customer_id, amount="10.5"), key="equivalent")
    retry = api.create(payment_body(customer_id, amount="10.50"), key="equivalent")
    assert (first.status, retry.status) == (201, 200), f"{first} / {retry}"
    assert retry.body["payment_id"] == first.body["payment_id"]


@pytest.mark.parametrize("change", [{"amount": "125.51"}, {"currency": "USD"},
                                    {"payment_token": "tok_other_token_1"}])
def test_same_key_with_another_body_is_409(api, customer_id, change):
    assert api.create(payment_body(customer_id), key="reused").status == 201
    conflict = api.create(payment_body(customer_id, **change), key="reused")
    assert conflict.status == 409, str(conflict)
    assert conflict.body["error"] == "idempotency_conflict"
    assert api.scalar("SELECT count(*) FROM payments") == 1


def test_same_key_for_another_customer_is_409(api, customer_id, postgres, payments_db):
    other = str(uuid.uuid4())
    postgres.execute(payments_db, "INSERT INTO customers (customer_id, external_ref, display_name) "
                                  "VALUES (%s, 'onprem-43', 'Grace Hopper')", (other,))
    assert api.create(payment_body(customer_id), key="shared").status == 201
    assert api.create(payment_body(other), key="shared").status == 409


def test_unknown_customer_is_422_naming_customer_id(api, customer_id):
    response = api.create(payment_body(str(uuid.uuid4())))
    assert response.status == 422, str(response)
    assert response.body["fields"] == ["customer_id"]
    assert api.scalar("SELECT count(*) FROM payments") == 0


def test_missing_idempotency_key_is_400(api, customer_id):
    response = api.call("POST", "/payments", body=payment_body(customer_id))
    assert response.status == 400, str(response)
    assert response.body["fields"] == ["Idempotency-Key"]


def test_overlong_idempotency_key_is_400(api, customer_id):
    response = api.create(payment_body(customer_id), key="k" * 256)
    assert response.status == 400 and response.body["fields"] == ["Idempotency-Key"], str(response)


@pytest.mark.parametrize(("field", "value"), [
    ("amount", "0"),
    ("amount", "0.00"),
    ("amount", "-1"),
    ("amount", "abc"),
    ("amount", "1.234"),
    ("amount", "1e3"),
    ("amount", " 12.50"),
    ("amount", 12.5),  # a JSON number: money must arrive as a string
    ("amount", "12345678901234567.00"),  # does not fit numeric(18,2)
    ("currency", "usd"),
    ("currency", "EURO"),
    ("currency", "XXX"),  # ISO 4217 "no currency"
    ("currency", "ABC"),
    ("currency", 978),
    ("customer_id", "not-a-uuid"),
    ("customer_id", 42),
    ("payment_token", "tok_short"),
])
def test_bad_field_is_400_naming_it(api, customer_id, field, value):
    response = api.create({**payment_body(customer_id), field: value})
    assert response.status == 400, f"{field}={value!r}: {response}"
    assert response.body["fields"] == [field], f"{field}={value!r}: {response}"
    assert api.scalar("SELECT count(*) FROM payments") == 0


@pytest.mark.parametrize("field", ["customer_id", "amount", "currency"])
def test_missing_field_is_400_naming_it(api, customer_id, field):
    body = payment_body(customer_id)
    del body[field]
    response = api.create(body)
    assert response.status == 400, str(response)
    assert response.body["fields"] == [field]
    assert response.body["errors"] == [{"field": field, "message": "is required"}]


@pytest.mark.parametrize(("field", "value"), [("card_number", "4111111111111111"),
                                             ("payment_token", "4111111111111111")])
def test_a_card_number_is_refused_without_being_echoed_or_logged(api, customer_id, capsys, field, value):
    response = api.create(payment_body(customer_id, **{field: value}))
    assert response.status == 400, str(response)
    assert response.body["fields"] == [field]
    assert value not in str(response.body) and value not in str(response.headers)
    logged = capsys.readouterr()
    assert value not in logged.out + logged.err, "the card number reached the log"


def test_every_bad_field_is_named(api):
    response = api.create({"amount": "abc", "currency": "usd"})
    assert response.status == 400
    assert sorted(response.body["fields"]) == ["amount", "currency", "customer_id"], str(response)


@pytest.mark.parametrize("raw", ["not json", "", "[1, 2]", '"text"', "{"])
def test_body_that_is_not_a_json_object_is_400(api, raw):
    response = api.call("POST", "/payments", body=raw, headers={"Idempotency-Key": "k1"})
    assert response.status == 400, f"{raw!r}: {response}"
    assert response.body["fields"] == ["body"]


# --- get ----------------------------------------------------------------------------------------

def test_get_returns_the_created_payment(api, customer_id):
    created = api.create(payment_body(customer_id))
    response = api.call("GET", f"/payments/{created.body['payment_id']}")
    assert response.status == 200, str(response)
    assert response.body == created.body


def test_get_unknown_payment_is_404(api, payments_db):
    response = api.call("GET", f"/payments/{uuid.uuid4()}")
    assert response.status == 404, str(response)
    assert response.body["error"] == "payment_not_found"


def test_get_with_a_malformed_id_is_400(api, payments_db):
    response = api.call("GET", "/payments/12345")
    assert response.status == 400, str(response)
    assert response.body["fields"] == ["payment_id"]


def test_unknown_route_is_404(api):
    response = api.call("GET", "/nothing-here")
    assert (response.status, response.body["error"]) == (404, "not_found"), str(response)


# --- the kept connection -------------------------------------------------------------------------

def test_a_broken_kept_connection_is_replaced(api, customer_id, postgres, payments_db):
    assert api.create(payment_body(customer_id), key="before").status == 201
    postgres.admin_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'payment-api'")
    after = api.create(payment_body(customer_id), key="after")
    assert after.status == 201, f"the API did not reconnect: {after}"


def test_the_connection_is_kept_across_invocations(api, customer_id):
    api.call("GET", "/health")
    backend = api.handler._database.run(lambda conn: conn.get_backend_pid())
    api.call("GET", "/health")
    api.create(payment_body(customer_id))
    assert api.handler._database.run(lambda conn: conn.get_backend_pid()) == backend
