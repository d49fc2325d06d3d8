"""Fixtures for the rollback and traffic handlers: one world per module on the moto server, put back
as it was built before each test, the functions' environment, invoke helpers, moto's state-machine
execution switched on where a test needs it, and Powertools / client state reset between tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from moto.core.config import default_user_config

from payment_rollback import handler, traffic
from tests.rollback.world import FakeLambdaContext, World, build_world
from tests.support.moto_server import MotoServer


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


@pytest.fixture(scope="module")
def world_options() -> dict[str, Any]:
    """How build_world makes this module's world; a module overrides it for another world."""
    return {}


@pytest.fixture(scope="module")
def module_world(moto_server: MotoServer, world_options: dict[str, Any]) -> Iterator[World]:
    """This module's world, built once on the server reset for it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in moto_server.environment.items():
            patch.setenv(name, value)
        moto_server.reset()
        yield build_world(**world_options)


@pytest.fixture
def aws(module_world: World, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The moto server with this module's world on it as it was built, and this process's boto3
    pointed at it. It stands in for tests/conftest.py's `aws`, which resets the whole server:
    building the world again for each test costs more than undoing what the last one changed."""
    for name, value in moto_server.environment.items():
        monkeypatch.setenv(name, value)
    module_world.restore()
    with state_machine_execution():
        module_world.delete_state_machines()  # those the last test had moto execute
    return moto_server


@pytest.fixture
def world(aws: MotoServer, module_world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    use_world(module_world, monkeypatch)
    return module_world


def use_world(built: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in built.environment().items():
        monkeypatch.setenv(name, value)


@contextmanager
def state_machine_execution() -> Iterator[None]:
    """moto's switch for executing state machines, on until the block ends, then put back as it was.
    While it is on, the server answers every Step Functions call from a backend of its own."""
    previous = dict(default_user_config.get("stepfunctions", {}))
    default_user_config["stepfunctions"] = {**previous, "execute_state_machine": True}
    try:
        yield
    finally:
        default_user_config["stepfunctions"] = previous


@pytest.fixture
def executing_state_machines(aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto executes the state machines created while this fixture is active (in the server's
    threads, in this process). Its aws-sdk:* tasks call the server on localhost:$MOTO_PORT.
    On the way out, executions still running are stopped (so a late step cannot write into the
    next test's world) and the switch is put back as it was."""
    monkeypatch.setenv("MOTO_PORT", str(urlsplit(aws.endpoint_url).port))
    with state_machine_execution():
        try:
            yield
        finally:
            _stop_running_executions()


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
