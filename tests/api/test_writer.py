"""The payment API follows the writer parameter: it writes to the current writer only, answers a write
the fenced side refuses with 503 writer_fenced + Retry-After, and keeps reads working."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from payment_cutover import fence

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def body(customer_id: str) -> dict:
    return {"customer_id": customer_id, "amount": "10.00", "currency": "EUR"}


def set_writer(writer: str, parameter: str) -> None:
    boto3.client("ssm").put_parameter(Name=parameter, Type="String", Overwrite=True,
                                      Value=json.dumps({"writer": writer, "epoch": 1, "changed_at": "", "reason": "t"}))


def count(postgres, dbname: str, query: str, params=None):
    conn = postgres.admin_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def aurora_customer(postgres, aurora_db, customer_id) -> str:
    postgres.execute(aurora_db, "INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, %s, %s)",
                     (customer_id, "onprem-42", "Ada Lovelace"))
    return customer_id


def test_writes_go_to_the_writer_and_follow_it_when_it_changes(api, postgres, payments_db, aurora_db,
                                                               aurora_customer, writer_parameter, monkeypatch):
    monkeypatch.setenv("WRITER_CACHE_SECONDS", "0")
    assert api.create(body(aurora_customer), key="on-onprem").status == 201
    onprem_backend = api.handler._database.run(lambda conn: conn.get_backend_pid())
    set_writer("aws", writer_parameter)
    assert api.create(body(aurora_customer), key="on-aws").status == 201
    assert count(postgres, payments_db, "SELECT array_agg(idempotency_key) FROM payments") == ["on-onprem"]
    assert count(postgres, aurora_db, "SELECT array_agg(idempotency_key) FROM payments") == ["on-aws"]
    assert count(postgres, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                 (onprem_backend,)) == 0, "the connection to the old writer was kept"


def test_a_write_to_the_fenced_side_is_503_with_retry_after_and_reads_keep_working(
        api, postgres, payments_db, aurora_db, aurora_customer, writer_parameter):
    created = api.create(body(aurora_customer), key="before-fence")
    assert created.status == 201
    admin = postgres.admin_connect(payments_db)
    try:
        fence.fence(admin, [postgres.app_user])
    finally:
        admin.close()
    read = api.call("GET", f"/payments/{created.body['payment_id']}")
    assert read.status == 200, f"reads stopped on the fenced side: {read}"
    assert api.call("GET", "/health").status == 200
    refused = api.create(body(aurora_customer), key="during-fence")
    assert refused.status == 503, str(refused)
    assert refused.body["error"] == "writer_fenced"
    assert refused.headers["retry-after"] == "2"
    assert count(postgres, payments_db, "SELECT count(*) FROM payments WHERE idempotency_key = 'during-fence'") == 0
    # the refusal dropped the cached writer (cache 5 s here): the next write asks SSM again
    set_writer("aws", writer_parameter)
    retried = api.create(body(aurora_customer), key="during-fence")
    assert retried.status == 201, str(retried)
    assert count(postgres, aurora_db, "SELECT count(*) FROM payments WHERE idempotency_key = 'during-fence'") == 1


def test_the_last_writer_keeps_serving_when_ssm_cannot_be_read(api, customer_id, writer_parameter, monkeypatch):
    monkeypatch.setenv("WRITER_CACHE_SECONDS", "0")
    assert api.create(body(customer_id)).status == 201
    boto3.client("ssm").delete_parameter(Name=writer_parameter)
    assert api.create(body(customer_id)).status == 201


@pytest.mark.parametrize("value", ["aws", '{"writer": "azure"}', "[]"])
def test_a_malformed_writer_parameter_is_503_naming_it(api, writer_parameter, value):
    boto3.client("ssm").put_parameter(Name=writer_parameter, Type="String", Overwrite=True, Value=value)
    response = api.call("GET", "/health")
    assert response.status == 503, str(response)
    assert writer_parameter in response.body["reason"]


def test_the_cache_must_be_a_small_number_of_seconds(api, monkeypatch):
    monkeypatch.setenv("WRITER_CACHE_SECONDS", "600")
    response = api.call("GET", "/health")
    assert response.status == 503 and "WRITER_CACHE_SECONDS" in response.body["reason"], str(response)


def test_unknown_payment_on_the_writer_is_404_not_a_fence_error(api, payments_db):
    assert api.call("GET", f"/payments/{uuid.uuid4()}").status == 404
