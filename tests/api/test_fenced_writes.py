"""What the payment API answers on a fenced side, with the roles of schema/roles.sql on two real
PostgreSQL servers: a write refused by the fence — read-only (25006) or for lack of privilege once
payment_writer is revoked (42501) — is 503 writer_fenced + Retry-After and lands nowhere, reads keep
working; a refusal for lack of privilege on a side that is not fenced is a missing grant: 500, logged
as such, never a retry."""

from __future__ import annotations

import json

import boto3
import psycopg2.errors
import pytest

from lib.local.postgres.replication import add_customer, api_environment
from payment_cutover import fence
from tests.support.handlers import PaymentApi, create_writer_parameter

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
WRITER_PARAMETER = "/payment-migration/test/writer"


@pytest.fixture
def api(pair, aws, monkeypatch):
    create_writer_parameter(boto3.client("ssm"), WRITER_PARAMETER)
    for name, value in api_environment(pair, WRITER_PARAMETER, boto3.client("secretsmanager"),
                                       cache_seconds=30).items():
        monkeypatch.setenv(name, value)
    client = PaymentApi()
    yield client
    client.reset()


@pytest.fixture
def customer(pair) -> str:
    """A customer on both sides (written on each, as replication would)."""
    customer_id = add_customer(pair.onprem)
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM customers"), "the customer to reach aws")
    return customer_id


def stored(db, key: str) -> int:
    return db.scalar("SELECT count(*) FROM payments WHERE idempotency_key = %s", (key,))


def logged(caplog) -> list[dict]:
    return [{**vars(record), "message": record.getMessage()} for record in caplog.records
            if record.name.startswith("payment-api")]


def writer_moves_to_aws(pair) -> None:
    """What the cutover does besides the fence (the sequence advanced on aws, the parameter switched)."""
    pair.aws.postgres.admin_execute("SELECT setval('audit_log_audit_id_seq', 1000)", dbname=pair.aws.dbname)
    boto3.client("ssm").put_parameter(Name=WRITER_PARAMETER, Type="String", Overwrite=True, Value=json.dumps(
        {"writer": "aws", "epoch": 1, "changed_at": "", "reason": "test"}))


def emitted_metrics(capsys) -> list[str]:
    """The names of the metrics the handler printed (CloudWatch embedded metric format) since the last call."""
    names = []
    for line in capsys.readouterr().out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []) if isinstance(record, dict) else []:
            names += [metric["Name"] for metric in directive["Metrics"]]
    return names


def test_a_write_to_the_fenced_side_is_503_with_retry_after_and_reads_keep_working(pair, api, customer, capsys):
    status, _, created = api.create(customer, "before-fence")
    assert status == 201, created
    fence.fence(pair.connection("onprem", "payment_controller"), ["payment_app"])
    assert api.call("GET", f"/payments/{created['payment_id']}")[0] == 200, "reads stopped on the fenced side"
    assert api.call("GET", "/health")[0] == 200
    emitted_metrics(capsys)
    status, headers, refused = api.create(customer, "during-fence")
    assert (status, refused["error"], headers["retry-after"]) == (503, "writer_fenced", "2"), refused
    # counted apart, so that the rollback alarm can leave the fence's own refusals out
    refusal_metrics = emitted_metrics(capsys)
    assert "WriterFenced" in refusal_metrics and "DatabasePermissionDenied" not in refusal_metrics, refusal_metrics
    assert stored(pair.onprem, "during-fence") == 0
    # the refusal dropped the cached writer (cache 30 s here): the next write asks SSM again
    writer_moves_to_aws(pair)
    status, _, retried = api.create(customer, "during-fence")
    assert status == 201, retried
    assert (stored(pair.aws, "during-fence"), stored(pair.onprem, "during-fence")) == (1, 0)


def test_a_write_refused_for_lack_of_privilege_on_a_fenced_side_is_503(pair, api, customer, caplog):
    """The privilege part of the fence alone (a session that got past the read-only default: one that
    started before the fence, or the moment between its two parts) is answered the same way."""
    assert api.create(customer, "open")[0] == 201
    pair.onprem.postgres.admin_execute("REVOKE payment_writer FROM payment_app")
    caplog.clear()
    status, headers, refused = api.create(customer, "privilege-fenced")
    assert (status, refused["error"], headers.get("retry-after")) == (503, "writer_fenced", "2"), refused
    assert stored(pair.onprem, "privilege-fenced") == 0
    records = logged(caplog)
    assert any(r["message"] == "write refused for lack of privilege on a fenced side"
               and "not a member of payment_writer" in r.get("reason", "") for r in records), records
    assert not any(r["levelname"] == "ERROR" for r in records), "a fenced write was logged as an error"


def test_a_missing_grant_on_the_writer_is_500_logged_and_not_a_retry(pair, api, customer, caplog):
    pair.onprem.postgres.admin_execute("REVOKE INSERT ON audit_log FROM payment_writer", dbname=pair.onprem.dbname)
    caplog.clear()
    status, headers, body = api.create(customer, "missing-grant")
    assert (status, body["error"]) == (500, "internal_error"), body
    assert "retry-after" not in headers
    assert stored(pair.onprem, "missing-grant") == 0, "the payment was kept without its audit row"
    errors = [r for r in logged(caplog) if r["levelname"] == "ERROR"]
    assert any("a grant is missing" in r.get("message", "") and r.get("writer_member") is True
               and r.get("detail") == "permission denied for table audit_log" for r in errors), errors


def test_a_privilege_refusal_after_the_writer_moved_is_503_and_the_retry_lands_on_the_new_writer(
        pair, api, customer):
    assert api.create(customer, "first")[0] == 201  # the API caches onprem as the writer for 30 s
    pair.onprem.postgres.admin_execute("REVOKE INSERT ON audit_log FROM payment_writer", dbname=pair.onprem.dbname)
    writer_moves_to_aws(pair)
    status, headers, refused = api.create(customer, "moved")
    assert (status, refused["error"], headers.get("retry-after")) == (503, "writer_fenced", "2"), refused
    status, _, created = api.create(customer, "moved")
    assert status == 201, created
    assert (stored(pair.aws, "moved"), stored(pair.onprem, "moved")) == (1, 0)


def test_a_read_refused_for_lack_of_privilege_is_never_a_fence(pair, api, customer):
    status, _, created = api.create(customer, "readable")
    assert status == 201
    pair.onprem.postgres.admin_execute("REVOKE payment_writer FROM payment_app")  # the side looks fenced...
    pair.onprem.postgres.admin_execute("REVOKE SELECT ON payments FROM payment_app", dbname=pair.onprem.dbname)
    status, headers, body = api.call("GET", f"/payments/{created['payment_id']}")
    assert (status, body["error"]) == (500, "internal_error"), body  # ...but the fence never takes SELECT
    assert "retry-after" not in headers


class _EndedConnection:
    """A connection the fence ends between the refused write and the membership check."""

    closed = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cursor(self):
        self.closed = 1
        raise psycopg2.errors.AdminShutdown("terminating connection due to administrator command")


def test_a_session_ended_right_after_its_privilege_refusal_is_the_fence():
    """The fence revokes payment_writer, then ends the sessions: a session refused for lack of privilege
    may be gone before its membership can be checked. That is the fence (503), not a missing grant."""
    from payment_api.database import Database
    from payment_api.errors import WriterFenced
    from payment_api.writer import WriterDatabase
    from payment_common.database import DatabaseSettings

    database = Database(DatabaseSettings(side="onprem", secret_arn="unused", host="unused", dbname="unused"))
    refused = database._privilege_refused(_EndedConnection(), psycopg2.errors.InsufficientPrivilege(), write=True)
    assert (refused.session_ended, refused.writer_member) == (True, None)

    class Directory:
        def current(self):
            return "aws"  # the writer parameter has not moved yet

        def invalidate(self):
            pass

    class Refusing:
        def run(self, operation, *, write=False):
            raise refused

        def close(self):
            pass

    writer = WriterDatabase({}, Directory())
    writer._databases = {"aws": Refusing()}
    with pytest.raises(WriterFenced):
        writer.run(lambda conn: None, write=True)
