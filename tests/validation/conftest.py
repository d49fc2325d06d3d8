"""Fixtures for the validation Lambda: a source and a target database loaded with the reference
schema and the same rows, connections to them, and the handler wired to them through moto."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg2
import pytest
from psycopg2 import sql

# Rows in both databases: 40 customers, 300 payments, 1-3 transactions each (composite key),
# 200 audit entries (identity key). Some emails, tokens and processor refs are NULL.
SEED_SQL = """
INSERT INTO customers (customer_id, external_ref, display_name, email, created_at)
SELECT md5('customer-' || i)::uuid, 'CUST-' || i, 'Customer ' || i,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'c' || i || '@mail.test' END,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, 40) AS i;

INSERT INTO payments (payment_id, customer_id, amount, currency, status, payment_token,
                      idempotency_key, request_hash, created_at, updated_at)
SELECT md5('payment-' || i)::uuid, md5('customer-' || (1 + i % 40))::uuid, (i * 13 % 5000 + 1) / 100.0,
       (ARRAY['EUR', 'USD', 'GBP'])[1 + i % 3],
       (ARRAY['pending', 'authorized', 'captured', 'failed', 'refunded'])[1 + i % 5],
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'tok_' || substr(md5('token-' || i), 1, 16) END,
       'idem-' || i, md5('request-' || i),
       timestamptz '2024-02-01 00:00:00+00' + i * interval '1 minute',
       timestamptz '2024-02-01 00:00:00+00' + i * interval '1 minute' + interval '30 seconds'
FROM generate_series(1, 300) AS i;

INSERT INTO transactions (payment_id, seq, kind, amount, processor_ref, occurred_at)
SELECT md5('payment-' || i)::uuid, s, (ARRAY['authorize', 'capture', 'refund'])[s], (i * 13 % 5000 + 1) / 100.0,
       CASE WHEN s = 2 THEN NULL ELSE 'proc-' || i || '-' || s END,
       timestamptz '2024-02-01 00:00:00+00' + i * interval '1 minute' + s * interval '1 second'
FROM generate_series(1, 300) AS i, generate_series(1, 1 + i % 3) AS s;

INSERT INTO audit_log (entity, entity_id, action, detail, recorded_at)
SELECT 'payment', md5('payment-' || i), 'created', jsonb_build_object('amount', i, 'tags', jsonb_build_array('a', i)),
       timestamptz '2024-02-01 00:00:00+00' + i * interval '1 minute'
FROM generate_series(1, 200) AS i;
"""

TABLES = ("public.audit_log", "public.customers", "public.payments", "public.transactions")
ROW_COUNTS = {"public.audit_log": 200, "public.customers": 40, "public.payments": 300, "public.transactions": 600}

def payment_id(i: int) -> str:
    """The id the seed gives payment i (md5('payment-' || i)::uuid)."""
    return str(uuid.UUID(hashlib.md5(f"payment-{i}".encode()).hexdigest()))


def customer_id(i: int) -> str:
    return str(uuid.UUID(hashlib.md5(f"customer-{i}".encode()).hexdigest()))


@dataclass
class Databases:
    """A source and a target database on the test server, loaded with the same rows."""

    server: Any
    source: str
    target: str

    def on_source(self, statements: str, params=None) -> None:
        self.server.execute(self.source, statements, params)

    def on_target(self, statements: str, params=None) -> None:
        self.server.execute(self.target, statements, params)

    def on_both(self, statements: str, params=None) -> None:
        self.on_source(statements, params)
        self.on_target(statements, params)


class DatabasePool:
    """Fresh (source, target) pairs, copies of a template loaded with the schema and the seed rows.

    Copying a database costs a fifth of a second, most of a small test's time: a background thread
    makes the next pairs while a test runs, and drops the pairs of finished tests (so the cluster
    stays small and the session's teardown quick)."""

    AHEAD = 2

    def __init__(self, postgres, template: str):
        self._postgres = postgres
        self.template = template
        self._numbers = itertools.count(1)
        self._ready: queue.Queue = queue.Queue()
        self._finished: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="database-pool", daemon=True)
        self._thread.start()

    def take(self) -> tuple[str, str]:
        while True:
            try:
                return self._ready.get(timeout=0.1)
            except queue.Empty:
                if self._failure is not None:
                    raise RuntimeError("the database pool failed") from self._failure

    def give_back(self, names: tuple[str, str]) -> None:
        self._finished.put(names)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _work(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    for name in self._finished.get_nowait():
                        self._postgres.admin_execute(
                            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                    continue
                except queue.Empty:
                    pass
                if self._ready.qsize() >= self.AHEAD:
                    self._stopping.wait(0.01)
                    continue
                number = next(self._numbers)
                pair = (f"validation_source_{number}", f"validation_target_{number}")
                for name in pair:
                    copy_database(self._postgres, name, self.template)
                self._ready.put(pair)
        except BaseException as error:  # noqa: BLE001 - raised in the test that waits for a pair
            self._failure = error


@pytest.fixture(scope="session")
def database_pool(postgres) -> Iterator[DatabasePool]:
    template = "validation_template"
    postgres.create_payment_database(template)
    postgres.execute(template, SEED_SQL + "ANALYZE;")
    pool = DatabasePool(postgres, template)
    yield pool
    pool.stop()


def copy_database(postgres, name: str, template: str) -> str:
    """A new database `name`, a copy of `template` (which nobody may be connected to)."""
    postgres.admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    postgres.admin_execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(template), sql.Identifier(postgres.app_user)))
    return name


@pytest.fixture
def databases(postgres, database_pool: DatabasePool) -> Iterator[Databases]:
    source, target = database_pool.take()
    yield Databases(postgres, source, target)
    database_pool.give_back((source, target))


@pytest.fixture
def connect(postgres) -> Iterator[Callable[..., Any]]:
    """connect(dbname, **libpq options): an application connection, closed after the test."""
    opened = []

    def open_connection(dbname: str, **options):
        conn = psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.app_user,
                                password=postgres.app_password, dbname=dbname, sslmode="verify-full",
                                sslrootcert=postgres.ca_certificate, **options)
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        conn.close()


# 100,000 rows with a composite text key, wide enough (~250 bytes) that the first pass's page
# sample finds bounds for well over eight chunks.
LEDGER = """
CREATE TABLE ledger (
    account text NOT NULL,
    entry   integer NOT NULL,
    amount  numeric(12,2) NOT NULL,
    memo    text,
    PRIMARY KEY (account, entry)
);
INSERT INTO ledger
SELECT 'acct-' || lpad(a::text, 4, '0'), e, (a * 100 + e) / 7.0, repeat(md5(a || '-' || e), 6)
FROM generate_series(0, 999) AS a, generate_series(1, 100) AS e;
ANALYZE ledger;
"""


def ledger_databases(postgres, pool: DatabasePool, prefix: str) -> Iterator[Databases]:
    """The seeded databases plus the ledger, with differences planted in the target (in the
    ledger, the audit sequence, a dropped table) and a table without key on both: a pair for
    tests that only read it, made once per module (the target a copy of the source, then changed)."""
    pair = Databases(postgres, copy_database(postgres, f"{prefix}_source", pool.template), f"{prefix}_target")
    pair.on_source(LEDGER + "CREATE TABLE notes (body text);")
    copy_database(postgres, pair.target, pair.source)
    pair.on_target("""
        -- differences spread over the key space: before the first key, inside, past the last
        DELETE FROM ledger WHERE entry = 50 AND account IN ('acct-0003', 'acct-0250', 'acct-0510', 'acct-0999');
        UPDATE ledger SET amount = amount + 1 WHERE entry IN (7, 77) AND account LIKE 'acct-0_10';
        UPDATE ledger SET memo = NULL WHERE account = 'acct-0700' AND entry BETWEEN 10 AND 12;
        INSERT INTO ledger VALUES ('acct-', 1, 1, NULL), ('acct-0500', 101, 1, 'x'), ('zz', 1, 1, NULL);
        SELECT setval('audit_log_audit_id_seq', 10);
        DROP TABLE customers CASCADE;
        ANALYZE;
    """)
    yield pair
    for name in (pair.source, pair.target):
        postgres.admin_execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class FakeLambdaContext:
    function_name = "payment-validation-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:payment-validation-test"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


@dataclass
class Lambda:
    """The handler module, configured for the test's databases, and its environment."""

    handler: Any
    databases: Databases
    environment: dict[str, str]
    password: str

    def reload(self):
        """Import the handler again, after a test changed the environment it reads at import."""
        self.handler = importlib.reload(self.handler)
        self.handler.metrics.clear_metrics()
        return self.handler

    def invoke(self, event: Any = None) -> dict[str, Any]:
        result = self.handler.lambda_handler({} if event is None else event, FakeLambdaContext())
        json.dumps(result)  # the response must be JSON
        return result


@pytest.fixture
def validation_lambda(aws, postgres, databases: Databases, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lambda]:
    """Secrets in moto, the environment the stack sets, and a freshly imported handler (its
    module-level clients are built against this test's moto server)."""
    yield from lambda_for(postgres, databases, monkeypatch)


@pytest.fixture(scope="session")
def untouched_databases(postgres, database_pool: DatabasePool) -> Databases:
    """One pair for the tests that never change a database (nor reach one): no copying per test."""
    source, target = database_pool.take()
    return Databases(postgres, source, target)


@pytest.fixture
def readonly_lambda(aws, postgres, untouched_databases: Databases, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lambda]:
    """validation_lambda on the shared, untouched databases: for tests that change no row."""
    yield from lambda_for(postgres, untouched_databases, monkeypatch)


def lambda_for(postgres, databases: Databases, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lambda]:
    """The handler, freshly imported, with the secrets and the environment the stack gives it."""
    environment = function_environment(postgres, databases)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("SCHEMAS", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "STATEMENT_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    handler = importlib.reload(importlib.import_module("payment_validation.handler"))
    handler.metrics.clear_metrics()
    yield Lambda(handler, databases, environment, postgres.app_password)
    handler.metrics.clear_metrics()


def function_environment(postgres, databases: Databases) -> dict[str, str]:
    """The environment the stack gives the function for `databases`, its two secrets created in
    the Secrets Manager this process's boto3 reaches."""
    secrets = boto3.client("secretsmanager")
    credentials = json.dumps({"username": postgres.app_user, "password": postgres.app_password})
    source_arn = secrets.create_secret(Name="onprem-db", SecretString=credentials)["ARN"]
    target_arn = secrets.create_secret(Name="aurora-db", SecretString=credentials)["ARN"]
    return {
        "ONPREM_DB_HOST": postgres.host, "ONPREM_DB_PORT": str(postgres.port),
        "ONPREM_DB_NAME": databases.source, "ONPREM_DB_SECRET_ARN": source_arn,
        "AURORA_DB_HOST": postgres.host, "AURORA_DB_PORT": str(postgres.port),
        "AURORA_DB_NAME": databases.target, "AURORA_DB_SECRET_ARN": target_arn,
        **postgres.tls_environment(),  # verify-full against the test CA
        # rechecks without waiting: the tests' differences are there to stay
        "RECHECK_SECONDS": "0", "RECHECK_ROUNDS": "1",
    }


def emf_records(stdout: str) -> list[dict[str, Any]]:
    """The EMF metric blobs Powertools printed."""
    records = []
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" in record:
            records.append(record)
    return records
