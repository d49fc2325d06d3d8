"""Exactly once across a data cutover: the payment API, two real PostgreSQL servers joined by logical
replication, the controller's steps. A payment created on the old writer and retried after the
switch is replayed, not stored again; a write during the fence is refused and lands nowhere until
its retry reaches the new writer."""

from __future__ import annotations

import boto3
import pytest

from lib.local.postgres.replication import add_customer, api_environment
from payment_cutover import steps
from tests.support.handlers import PaymentApi, create_writer_parameter

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
WRITER_PARAMETER = "/payment-migration/test/writer"


def rows(db, key: str) -> int:
    return db.scalar("SELECT count(*) FROM payments WHERE idempotency_key = %s", (key,))


def test_a_write_retried_with_its_key_after_the_switch_is_stored_exactly_once(pair, aws, monkeypatch):
    ssm = boto3.client("ssm")
    create_writer_parameter(ssm, WRITER_PARAMETER)
    for name, value in api_environment(pair, WRITER_PARAMETER, boto3.client("secretsmanager")).items():
        monkeypatch.setenv(name, value)
    api = PaymentApi()
    controller = pair.controller(ssm=ssm, writer_parameter=WRITER_PARAMETER)
    customer = add_customer(pair.onprem)
    try:
        status, _, created = api.create(customer, "order-1")
        assert status == 201, created
        pair.wait_until(lambda: rows(pair.aws, "order-1"), "order-1 to reach aws")

        steps.preflight(controller, "onprem", "aws")
        steps.fence(controller, "onprem", "aws")
        status, headers, refused = api.create(customer, "order-2")
        assert (status, refused["error"]) == (503, "writer_fenced"), refused
        assert int(headers["retry-after"]) > 0
        assert rows(pair.onprem, "order-2") == 0, "a write during the fence landed on the old writer"

        steps.wait_replication(controller, "onprem", "aws")
        steps.advance_sequences(controller, "onprem", "aws")
        steps.switch_replication(controller, "onprem", "aws")
        steps.open_writer(controller, "onprem", "aws")
        steps.set_writer(controller, "onprem", "aws", "test")

        # the client never saw order-1's answer and retries it; order-2 is retried after its 503
        status, headers, replayed = api.create(customer, "order-1")
        if status == 503:  # the API's cached writer was still on-prem: the refusal made it look again
            status, headers, replayed = api.create(customer, "order-1")
        assert (status, headers.get("idempotent-replayed")) == (200, "true"), replayed
        assert replayed["payment_id"] == created["payment_id"]
        status, _, stored = api.create(customer, "order-2")
        assert status == 201, stored
        assert (rows(pair.aws, "order-1"), rows(pair.aws, "order-2")) == (1, 1)
        pair.wait_until(lambda: rows(pair.onprem, "order-2") == 1, "order-2 to replicate back to onprem")
        assert rows(pair.onprem, "order-1") == 1
    finally:
        api.reset()
