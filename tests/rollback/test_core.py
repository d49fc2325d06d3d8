"""The core called directly, as the rehearsal and benchmarks would, with real boto3 clients against
the moto server. Faults moto cannot produce on its own (a lost response, throttling, a rejected
batch) are injected through botocore's own event hooks on those real clients."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from payment_common.aws import worst_case_call_seconds
from payment_rollback.clients import create_clients
from payment_rollback.core import roll_back
from payment_rollback.models import RollbackRequest, Settings, Status
from tests.rollback.world import AWS_SET_IDENTIFIER, ONPREM_SET_IDENTIFIER

ROLLED_BACK = {ONPREM_SET_IDENTIFIER: 100, AWS_SET_IDENTIFIER: 0}
BEFORE = {ONPREM_SET_IDENTIFIER: 90, AWS_SET_IDENTIFIER: 10}


@pytest.fixture
def clients(world):
    return create_clients()


def run(clients, **request: Any):
    return roll_back(RollbackRequest(**request), Settings.from_environment(os.environ), clients)


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any):
        yield self._content


def route53_error(status: int, code: str, message: str) -> AWSResponse:
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()
    return AWSResponse("https://route53.amazonaws.com", status, {}, _Body(body))


def test_core_rolls_back_without_lambda(clients, world):
    result = run(clients, reason="rehearsal")

    assert result.status is Status.ROLLED_BACK, result
    assert world.weights() == ROLLED_BACK
    assert result.writer_after["writer"] == "onprem"


def test_change_applied_but_response_lost_counts_as_rolled_back(clients, world):
    def lose_response(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://route53.amazonaws.com")

    clients.route53.meta.events.register(
        "after-call.route53.ChangeResourceRecordSets", lose_response
    )

    result = run(clients, reason="flaky network")

    assert result.status is Status.ROLLED_BACK, result
    assert result.errors == []
    assert result.change_id is None
    assert result.weights_after == {"onprem": 100, "aws": 0}
    assert any("the records now show onprem=100/aws=0: the change was applied" in action
               for action in result.actions), result.actions
    assert world.weights() == ROLLED_BACK
    assert result.writer_before is not None, "follow-ups must still run"
    assert len(world.notifications()) == 1


def test_rejected_change_fails_and_leaves_the_writer_alone(clients, world):
    clients.route53.meta.events.register(
        "before-send.route53.ChangeResourceRecordSets",
        lambda **_: route53_error(400, "InvalidChangeBatch", "Tried to create an alias ..."),
    )

    result = run(clients, reason="drill")

    assert result.status is Status.FAILED, result
    assert len(result.errors) == 1
    assert "ChangeResourceRecordSets InvalidChangeBatch" in result.errors[0]
    assert "the weights are still onprem=90/aws=10" in result.errors[0]
    assert world.weights() == BEFORE
    assert result.writer_before is None
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "FAILED"


def test_throttled_change_is_retried_by_botocore(clients, world):
    attempts: list[str] = []

    def throttle_first_attempt(**_: Any) -> AWSResponse | None:
        attempts.append("sent")
        if len(attempts) == 1:
            return route53_error(400, "Throttling", "Rate exceeded")
        return None  # let the request through to moto

    clients.route53.meta.events.register(
        "before-send.route53.ChangeResourceRecordSets", throttle_first_attempt
    )

    result = run(clients, reason="busy account")

    assert result.status is Status.ROLLED_BACK, result
    assert len(attempts) == 2
    assert world.weights() == ROLLED_BACK


def test_unexpected_error_after_the_shift_is_partial_not_a_crash(clients, world):
    def explode(**_: Any) -> None:
        raise RuntimeError("response shape changed")

    clients.ssm.meta.events.register("before-call.ssm.GetParameter", explode)

    result = run(clients, reason="drill")

    assert result.status is Status.PARTIAL, result
    assert result.errors == ["writer: unexpected RuntimeError: response shape changed"]
    assert world.weights() == ROLLED_BACK
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "PARTIAL"


def test_clients_have_bounded_standard_retries_and_timeouts(world):
    clients = create_clients()

    every_client = (
        (clients.route53, 4),
        (clients.sns, 3),
        (clients.ssm, 3),
        (clients.stepfunctions, 3),
        (clients.cloudwatch, 3),
        (clients.cloudwatch_in("us-east-1"), 3),
    )
    for client, attempts in every_client:
        config = client.meta.config
        assert config.retries == {"mode": "standard", "total_max_attempts": attempts}
        assert (config.connect_timeout, config.read_timeout) == (2, 5)
        assert client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    assert clients.cloudwatch_in("us-east-1").meta.region_name == "us-east-1"
    assert clients.cloudwatch_in("us-east-1") is clients.cloudwatch_in("us-east-1")
    assert (worst_case_call_seconds(4), worst_case_call_seconds(3)) == (35, 24)
