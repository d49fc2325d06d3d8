"""Fixtures for the rollback Lambda: a built world on the moto server, the function's environment,
an invoke helper, and Powertools / client state reset between tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from payment_rollback import handler
from tests.rollback.world import FakeLambdaContext, World, build_world


@pytest.fixture(autouse=True)
def fresh_handler_state() -> Iterator[None]:
    """Each test gets clients built against its own environment and empty Powertools buffers."""
    handler.aws_clients.cache_clear()
    handler.metrics.clear_metrics()
    yield
    handler.aws_clients.cache_clear()
    handler.metrics.clear_metrics()


@pytest.fixture
def world(aws, monkeypatch: pytest.MonkeyPatch) -> World:
    built = build_world()
    for name, value in built.environment().items():
        monkeypatch.setenv(name, value)
    return built


@pytest.fixture
def invoke() -> Callable[[Any], dict[str, Any]]:
    def invoke_handler(event: Any) -> dict[str, Any]:
        return handler.lambda_handler(event, FakeLambdaContext())

    return invoke_handler


@pytest.fixture
def route53_change_calls(world: World) -> list[dict[str, Any]]:
    """Every ChangeResourceRecordSets request the handler's own Route 53 client sends."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    handler.aws_clients().route53.meta.events.register(
        "provide-client-params.route53.ChangeResourceRecordSets", record
    )
    return calls
