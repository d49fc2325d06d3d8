"""The payment core: plain functions over a psycopg2 connection and the reference schema
(schema/payments.sql). The handler calls them; tests call them directly against a real PostgreSQL.

Each function runs in its own transaction (`with conn:` commits, or rolls back on error).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg2
import psycopg2.errors
from psycopg2.extras import Json

from payment_api.errors import IdempotencyConflict, PaymentNotFound, UnknownCustomer
from payment_api.models import PaymentRequest

HEALTH_STATEMENT_TIMEOUT = "1s"
_CENT = Decimal("0.01")
_COLUMNS = "payment_id, customer_id, amount, currency, status, payment_token, created_at, updated_at, request_hash"


@dataclass(frozen=True)
class Payment:
    payment_id: str
    customer_id: str
    amount: Decimal
    currency: str
    status: str
    payment_token: str | None
    created_at: datetime
    updated_at: datetime
    request_hash: str

    def to_json(self) -> dict:
        return {
            "payment_id": self.payment_id,
            "customer_id": self.customer_id,
            "amount": f"{self.amount:.2f}",
            "currency": self.currency,
            "status": self.status,
            "payment_token": self.payment_token,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class CreateResult:
    payment: Payment
    created: bool  # False: an earlier request with the same idempotency key made it


def request_hash(request: PaymentRequest) -> str:
    """Fingerprint of what a request asks for, so "10.5" and "10.50" are the same request."""
    canonical = {
        "customer_id": str(request.customer_id),
        "amount": str(request.amount.quantize(_CENT)),
        "currency": request.currency,
        "payment_token": request.payment_token,
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "v1:" + hashlib.sha256(encoded.encode()).hexdigest()


def create_payment(conn, request: PaymentRequest, idempotency_key: str) -> CreateResult:
    """Create the payment and its audit row in one transaction, or return the payment an earlier
    request with this idempotency key created. Safe under concurrency: the unique index on
    idempotency_key decides which insert wins; the loser waits for the winner to commit and
    then reads its row."""
    fingerprint = request_hash(request)
    payment_id = str(uuid.uuid4())
    with conn, conn.cursor() as cur:
        try:
            cur.execute(
                f"""INSERT INTO payments (payment_id, customer_id, amount, currency, payment_token,
                                          idempotency_key, request_hash)
                    VALUES (%s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING {_COLUMNS}""",
                (payment_id, str(request.customer_id), request.amount, request.currency,
                 request.payment_token, idempotency_key, fingerprint),
            )
        except psycopg2.errors.ForeignKeyViolation as exc:  # the only foreign key of payments
            raise UnknownCustomer(request.customer_id) from exc
        row = cur.fetchone()
        if row is not None:
            payment = Payment(*row)
            cur.execute(
                "INSERT INTO audit_log (entity, entity_id, action, detail) VALUES ('payment', %s, 'created', %s)",
                (payment.payment_id, Json({
                    "customer_id": payment.customer_id,
                    "amount": f"{payment.amount:.2f}",
                    "currency": payment.currency,
                    "idempotency_key": idempotency_key,
                    "source": "payment-api",
                })),
            )
            return CreateResult(payment, created=True)
        cur.execute(f"SELECT {_COLUMNS} FROM payments WHERE idempotency_key = %s", (idempotency_key,))
        row = cur.fetchone()
    if row is None:
        # Nothing deletes payments, so a key that conflicted has a row.
        raise RuntimeError("idempotency key conflicted on insert but no payment holds it")
    existing = Payment(*row)
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict()
    return CreateResult(existing, created=False)


def get_payment(conn, payment_id: uuid.UUID) -> Payment:
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM payments WHERE payment_id = %s", (str(payment_id),))
        row = cur.fetchone()
    if row is None:
        raise PaymentNotFound(payment_id)
    return Payment(*row)


def check_database(conn) -> None:
    """Raise unless the database answers a query on the payments table within a second."""
    with conn, conn.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout = %s", (HEALTH_STATEMENT_TIMEOUT,))
        cur.execute("SELECT 1 FROM payments LIMIT 1")
        cur.fetchall()
