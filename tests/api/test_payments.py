"""The payment core called directly on psycopg2 connections to the real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest

from payment_api import payments
from payment_api.errors import IdempotencyConflict, PaymentNotFound, UnknownCustomer
from payment_api.models import PaymentRequest


@pytest.fixture
def request_for(customer_id):
    def make(**overrides) -> PaymentRequest:
        return PaymentRequest(**{"customer_id": customer_id, "amount": "42.00", "currency": "GBP", **overrides})
    return make


@pytest.fixture
def connect(postgres, payments_db):
    opened = []

    def make():
        conn = postgres.app_connect(payments_db)
        opened.append(conn)
        return conn
    yield make
    for conn in opened:
        conn.close()


def count(conn, table: str) -> int:
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def test_create_then_get(connect, request_for):
    conn = connect()
    result = payments.create_payment(conn, request_for(), "core-1")
    assert result.created
    assert result.payment.amount == Decimal("42.00")
    assert payments.get_payment(conn, uuid.UUID(result.payment.payment_id)) == result.payment


def test_the_request_hash_ignores_how_the_amount_is_written(request_for):
    assert payments.request_hash(request_for(amount="7")) == payments.request_hash(request_for(amount="7.00"))
    assert payments.request_hash(request_for(amount="7")) != payments.request_hash(request_for(amount="7.01"))


def test_replay_and_conflict(connect, request_for):
    conn = connect()
    first = payments.create_payment(conn, request_for(), "core-2")
    again = payments.create_payment(conn, request_for(), "core-2")
    assert (again.created, again.payment) == (False, first.payment)
    with pytest.raises(IdempotencyConflict):
        payments.create_payment(conn, request_for(currency="EUR"), "core-2")
    assert (count(conn, "payments"), count(conn, "audit_log")) == (1, 1)


def test_unknown_customer_leaves_nothing_behind(connect, request_for):
    conn = connect()
    with pytest.raises(UnknownCustomer, match="customer_id"):
        payments.create_payment(conn, request_for(customer_id=str(uuid.uuid4())), "core-3")
    assert count(conn, "payments") == 0
    assert conn.closed == 0 and payments.create_payment(conn, request_for(), "core-3").created, \
        "the connection is unusable after a refused payment"


def test_get_unknown_payment_raises(connect):
    with pytest.raises(PaymentNotFound):
        payments.get_payment(connect(), uuid.uuid4())


def test_concurrent_requests_with_one_key_create_one_payment(connect, request_for):
    """Many connections race on the same key: exactly one creates, all see the same payment."""
    workers = 8
    barrier = threading.Barrier(workers)
    results, errors = [], []
    connections = [connect() for _ in range(workers)]

    def attempt(conn):
        barrier.wait()
        try:
            results.append(payments.create_payment(conn, request_for(), "raced-key"))
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, f"concurrent creates failed: {errors!r}"
    assert sum(result.created for result in results) == 1
    assert len({result.payment.payment_id for result in results}) == 1
    assert (count(connections[0], "payments"), count(connections[0], "audit_log")) == (1, 1)


def test_check_database_passes_on_the_schema_and_fails_without_it(connect, postgres):
    payments.check_database(connect())
    postgres.create_database("payment_api_empty")
    conn = postgres.app_connect("payment_api_empty")
    try:
        with pytest.raises(Exception, match="payments"):
            payments.check_database(conn)
    finally:
        conn.close()
