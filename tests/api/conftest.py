"""Fixtures for the payment API: a payments database on the session's PostgreSQL, the database
secret in moto's Secrets Manager, the function's environment, and ALB events."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

import boto3
import pytest

from lib.local.postgres.replication import acquire_servers, release_servers, shared_pair
from lib.local.postgres.server import PostgresServer


@dataclass
class FakeLambdaContext:
    function_name: str = "payment-api-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:payment-api-test"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@dataclass
class ApiResponse:
    status: int
    headers: dict
    body: dict | None

    def __str__(self) -> str:
        return f"{self.status} {self.body}"


@dataclass
class ApiClient:
    """Calls `lambda_handler` with the events an ALB sends."""

    handler: object
    db_name: str
    postgres: PostgresServer

    def call(self, method: str, path: str, *, body: str | dict | None = None,
             headers: dict[str, str] | None = None, base64_body: bool = False) -> ApiResponse:
        raw = json.dumps(body) if isinstance(body, dict) else body
        if raw is not None and base64_body:
            raw = base64.b64encode(raw.encode()).decode()
        event = {
            "requestContext": {"elb": {"targetGroupArn":
                               "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/payment-api/0123456789abcdef"}},
            "httpMethod": method,
            "path": path,
            "queryStringParameters": {},
            "headers": {"host": "payments.test", "content-type": "application/json",
                        "x-amzn-trace-id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                        **{name.lower(): value for name, value in (headers or {}).items()}},
            "body": raw or "",
            "isBase64Encoded": base64_body,
        }
        result = self.handler.lambda_handler(event, FakeLambdaContext())
        text = result.get("body") or ""
        return ApiResponse(result["statusCode"], {k.lower(): v for k, v in (result.get("headers") or {}).items()},
                           json.loads(text) if text else None)

    def create(self, body: dict, key: str | None = None) -> ApiResponse:
        return self.call("POST", "/payments", body=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})

    def scalar(self, query: str, params=None):
        conn = self.postgres.app_connect(self.db_name)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchone()[0]
        finally:
            conn.close()


API_DATABASES = ("payment_api_test", "payment_api_aurora")


@pytest.fixture(scope="session")
def api_databases(postgres: PostgresServer) -> tuple[str, str]:
    """The two payment databases of the API tests (on-prem's, Aurora's), made once per session and
    emptied before each test."""
    for name in API_DATABASES:
        postgres.create_payment_database(name)
    return API_DATABASES


@pytest.fixture
def payments_db(postgres: PostgresServer, api_databases) -> str:
    for name in api_databases:
        conn = postgres.admin_connect(name)
        try:
            with conn.cursor() as cur:  # sessions an earlier test left (and their locks), then the rows
                cur.execute("""SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                               WHERE datname = current_database() AND pid <> pg_backend_pid()
                                 AND backend_type = 'client backend'""")
                cur.execute("TRUNCATE customers, payments, transactions, audit_log RESTART IDENTITY")
        finally:
            conn.close()
    return api_databases[0]


@pytest.fixture
def customer_id(postgres: PostgresServer, payments_db: str) -> str:
    customer = str(uuid.uuid4())
    postgres.execute(payments_db,
                     "INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, %s, %s)",
                     (customer, "onprem-42", "Ada Lovelace"))
    return customer


@pytest.fixture
def db_secret_arn(aws, postgres: PostgresServer) -> str:
    client = boto3.client("secretsmanager")
    secret = client.create_secret(
        Name="rds!cluster-payment-test",
        SecretString=json.dumps({"username": postgres.app_user, "password": postgres.app_password}),
    )
    return secret["ARN"]


WRITER_PARAMETER = "/payment-migration/test/writer"


@pytest.fixture
def aurora_db(payments_db: str, api_databases) -> str:
    """The other side's database (on the same server here): the API must not use it while on-prem writes."""
    return api_databases[1]


@pytest.fixture
def writer_parameter(aws) -> str:
    boto3.client("ssm").put_parameter(Name=WRITER_PARAMETER, Type="String", Overwrite=True, Value=json.dumps(
        {"writer": "onprem", "epoch": 0, "changed_at": "2026-01-01T00:00:00+00:00", "reason": "initial"}))
    return WRITER_PARAMETER


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, payments_db: str, aurora_db: str,
                 db_secret_arn: str, writer_parameter: str) -> dict[str, str]:
    env = {
        "WRITER_PARAMETER": writer_parameter,
        "WRITER_CACHE_SECONDS": "5",
        "ONPREM_DB_SECRET_ARN": db_secret_arn,
        "ONPREM_DB_HOST": postgres.host,
        "ONPREM_DB_PORT": str(postgres.port),
        "ONPREM_DB_NAME": payments_db,
        "AURORA_DB_SECRET_ARN": db_secret_arn,
        "AURORA_DB_HOST": postgres.host,
        "AURORA_DB_PORT": str(postgres.port),
        "AURORA_DB_NAME": aurora_db,
        **postgres.tls_environment(),  # verify-full against the test CA
        "POWERTOOLS_METRICS_NAMESPACE": "PaymentMigrationTest",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def api(function_env: dict[str, str], postgres: PostgresServer, payments_db: str) -> ApiClient:
    """The handler module with fresh state: no kept connection, no buffered metrics."""
    from payment_api import handler

    handler.metrics.clear_metrics()
    handler._database = None
    yield ApiClient(handler, payments_db, postgres)
    if handler._database is not None:
        handler._database.close()
    handler._database = None
    handler.metrics.clear_metrics()


@pytest.fixture(scope="session")
def servers():
    """Two PostgreSQL servers (on-prem, AWS) for the tests that switch the writer with real replication
    and fence with schema/roles.sql (shared with tests/cutover: started once per process)."""
    yield acquire_servers()
    release_servers()


@pytest.fixture
def pair(servers):
    replicated = shared_pair(servers)
    yield replicated
    replicated.close_connections()
