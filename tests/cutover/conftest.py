"""Fixtures for the cutover steps: two PostgreSQL servers (on-prem and AWS) joined by logical
replication, a replicated pair of databases (one per session, reset before each test to forward
running, both sides open, empty tables), and the writer parameter in moto's SSM."""

from __future__ import annotations

import json

import boto3
import pytest

from lib.local.postgres.replication import (
    ReplicatedPair,
    acquire_servers,
    add_customer,
    cutover_environment,
    release_servers,
    shared_pair,
)
from tests.support.handlers import LambdaContext, create_writer_parameter

WRITER_PARAMETER = "/payment-migration/test/writer"


@pytest.fixture(scope="session")
def servers():
    """The two servers, shared with tests/api (started once per process)."""
    yield acquire_servers()
    release_servers()


@pytest.fixture
def pair(servers) -> ReplicatedPair:
    replicated = shared_pair(servers)
    yield replicated
    replicated.close_connections()


@pytest.fixture
def customer(pair) -> str:
    """A customer on on-prem, replicated to AWS."""
    customer_id = add_customer(pair.onprem)
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM customers WHERE customer_id = %s", (customer_id,)),
                    "the customer to reach aws")
    return customer_id


@pytest.fixture
def ssm(aws):
    return boto3.client("ssm")


@pytest.fixture
def writer_parameter(ssm) -> str:
    return create_writer_parameter(ssm, WRITER_PARAMETER)


@pytest.fixture
def controller(pair, ssm, writer_parameter):
    return pair.controller(ssm=ssm, writer_parameter=writer_parameter)


@pytest.fixture
def handler():
    """The step Lambda's module, with no cached clients and no buffered metrics."""
    from payment_cutover import handler

    handler.metrics.clear_metrics()
    handler.aws_clients.cache_clear()
    yield handler
    handler.aws_clients.cache_clear()
    handler.metrics.clear_metrics()


@pytest.fixture
def step_env(pair, writer_parameter, monkeypatch) -> dict[str, str]:
    env = cutover_environment(pair, writer_parameter, boto3.client("secretsmanager"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def invoke(handler, **event):
    return json.loads(json.dumps(handler.lambda_handler(event, LambdaContext())))
