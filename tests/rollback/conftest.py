"""Fixtures for the rollback and traffic handlers: a built world on the moto server, the functions'
environment, invoke helpers, moto's state-machine execution switched on where a test needs it, and
Powertools / client state reset between tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from moto.core.config import default_user_config

from payment_rollback import handler, traffic
from tests.rollback.world import FakeLambdaContext, World, build_world


@pytest.fixture(autouse=True)
def fresh_handler_state() -> Iterator[None]:
    """Each test gets clients built against its own environment and empty Powertools buffers."""
    handler.aws_clients.cache_clear()
    traffic.aws_clients.cache_clear()
    handler.metrics.clear_metrics()
    yield
    handler.aws_clients.cache_clear()
    traffic.aws_clients.cache_clear()
    handler.metrics.clear_metrics()


@pytest.fixture
def world(aws, monkeypatch: pytest.MonkeyPatch) -> World:
    built = build_world()
    use_world(built, monkeypatch)
    return built


def use_world(built: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in built.environment().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def executing_state_machines(aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto executes the state machines created while this fixture is active (in the server's
    threads, in this process). Its aws-sdk:* tasks call the server on localhost:$MOTO_PORT.
    On the way out, executions still running are stopped (so a late step cannot write into the
    next test's world) and the switch is put back as it was."""
    previous = dict(default_user_config.get("stepfunctions", {}))
    default_user_config["stepfunctions"] = {**previous, "execute_state_machine": True}
    monkeypatch.setenv("MOTO_PORT", str(urlsplit(aws.endpoint_url).port))
    try:
        yield
    finally:
        try:
            _stop_running_executions()
        finally:
            default_user_config["stepfunctions"] = previous


def _stop_running_executions() -> None:
    import boto3

    stepfunctions = boto3.client("stepfunctions")
    for machine in stepfunctions.list_state_machines()["stateMachines"]:
        running = stepfunctions.list_executions(
            stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
        )["executions"]
        for execution in running:
            stepfunctions.stop_execution(executionArn=execution["executionArn"])


@pytest.fixture
def invoke() -> Callable[..., dict[str, Any]]:
    """The rollback handler, with the remaining time of a fresh invocation."""

    def invoke_handler(event: Any, *, remaining_millis: int = 180_000) -> dict[str, Any]:
        return handler.lambda_handler(event, FakeLambdaContext(remaining_millis=remaining_millis))

    return invoke_handler


@pytest.fixture
def invoke_traffic() -> Callable[[Any], dict[str, Any]]:
    def invoke_handler(event: Any) -> dict[str, Any]:
        return traffic.lambda_handler(
            event, FakeLambdaContext(function_name="payment-traffic-test")
        )

    return invoke_handler


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Every request for `operation` the given (real) client sends, as its parameters."""
    calls: list[dict[str, Any]] = []
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(
        f"provide-client-params.{service}.{operation}",
        lambda params, **_: calls.append(params),
    )
    return calls


@pytest.fixture
def route53_change_calls(world: World) -> list[dict[str, Any]]:
    """Every ChangeResourceRecordSets request the rollback handler's own Route 53 client sends."""
    return record_calls(handler.aws_clients().route53, "ChangeResourceRecordSets")


@pytest.fixture
def start_execution_calls(world: World) -> list[dict[str, Any]]:
    """Every StartExecution request the rollback handler's own Step Functions client sends."""
    return record_calls(handler.aws_clients().stepfunctions, "StartExecution")
