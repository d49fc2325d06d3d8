"""The payment API follows the writer parameter: it writes to the current writer only. (What a fenced
side answers: test_fenced_writes.py, with the roles of schema/roles.sql.)"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

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


@pytest.mark.parametrize("epoch", [-1, "3", 1.5, True])
def test_a_writer_record_with_a_bad_epoch_is_refused_as_every_function_refuses_it(api, customer_id, writer_parameter,
                                                                                   monkeypatch, epoch):
    monkeypatch.setenv("WRITER_CACHE_SECONDS", "0")
    boto3.client("ssm").put_parameter(Name=writer_parameter, Type="String", Overwrite=True,
                                      Value=json.dumps({"writer": "onprem", "epoch": epoch}))
    response = api.create(body(customer_id))
    assert (response.status, response.body["error"]) == (503, "configuration_error"), str(response)
    assert writer_parameter in response.body["message"] and "'epoch'" in response.body["message"], str(response)
    health = api.call("GET", "/health")
    assert health.status == 503 and "'epoch' must be a non-negative integer" in health.body["reason"], str(health)


def test_the_cache_must_be_a_small_number_of_seconds(api, monkeypatch):
    monkeypatch.setenv("WRITER_CACHE_SECONDS", "600")
    response = api.call("GET", "/health")
    assert response.status == 503 and "WRITER_CACHE_SECONDS" in response.body["reason"], str(response)


def test_unknown_payment_on_the_writer_is_404_not_a_fence_error(api, payments_db):
    assert api.call("GET", f"/payments/{uuid.uuid4()}").status == 404
