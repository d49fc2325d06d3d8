"""The rollback after the data cutover (writer aws): DNS first, then the fenced writer rollback as an
execution of the rollback state machine, run by moto's own Step Functions engine. The stand-in
machines do what the real one's outcome is — switch the writer parameter back (through moto's
aws-sdk:ssm integration), fail, time out, or take longer than the function waits."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from payment_rollback.errors import RollbackIncompleteError
from tests.rollback.world import (
    ROLLBACK_MACHINE_ARN,
    fail_with,
    switch_writer_to_onprem,
)

pytestmark = pytest.mark.usefixtures("executing_state_machines")

EPOCH = 4
EXECUTION_ARN = (
    ROLLBACK_MACHINE_ARN.replace(":stateMachine:", ":execution:") + f":rollback-epoch-{EPOCH}"
)
ROLLED_BACK = {"onprem": 100, "aws": 0}


@pytest.fixture
def after_cutover(world, monkeypatch):
    """The world after the data cutover: AWS is the writer (epoch 4) and takes all traffic."""
    world.set_weights(onprem=0, aws=100)
    world.set_writer("aws", EPOCH)
    monkeypatch.setenv("WRITER_ROLLBACK_WAIT_SECONDS", "10")
    return world


def alarm_event(alarm_name: str) -> dict[str, Any]:
    message = {"AlarmName": alarm_name, "NewStateValue": "ALARM", "OldStateValue": "OK"}
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message)}}]}


def test_writer_rollback_is_started_once_and_waited_for(
    after_cutover, invoke, start_execution_calls, route53_change_calls
):
    world = after_cutover
    world.create_rollback_machine(switch_writer_to_onprem(EPOCH))

    answer = invoke({"reason": "ledger mismatch after cutover"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["errors"] == []
    assert world.weights() == {"onprem": 100, "aws": 0}
    assert len(route53_change_calls) == 1
    assert answer["writer_before"]["writer"] == "aws"
    assert answer["writer_before"]["epoch"] == EPOCH
    assert answer["writer_after"]["writer"] == "onprem"
    assert answer["writer_after"]["epoch"] == EPOCH + 1
    assert world.writer()["writer"] == "onprem"
    assert answer["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": "SUCCEEDED"}

    assert [call["name"] for call in start_execution_calls] == [f"rollback-epoch-{EPOCH}"]
    (execution,) = world.executions()
    assert execution["executionArn"] == EXECUTION_ARN
    assert world.execution_input(EXECUTION_ARN) == {
        "reason": "ledger mismatch after cutover",
        "trigger": "direct",
    }
    (notification,) = world.notifications()
    published = json.loads(notification["Message"])
    assert published["status"] == "ROLLED_BACK"
    assert published["writer_rollback"]["status"] == "SUCCEEDED"
    assert published["writer_after"]["writer"] == "onprem"

    second = invoke({"reason": "ledger mismatch after cutover"})

    assert second["status"] == "ALREADY_ROLLED_BACK", second
    assert second["writer_before"]["writer"] == "onprem"
    assert second["writer_rollback"] is None
    assert len(start_execution_calls) == 1, "the second invoke started another writer rollback"
    assert len(world.executions()) == 1


def test_dns_first_even_when_the_writer_rollback_fails(after_cutover, invoke):
    world = after_cutover
    world.create_rollback_machine(
        fail_with("FenceTimeout", "payment_app sessions still open on Aurora after 30 s")
    )

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert world.weights() == ROLLED_BACK, "traffic moves before the writer rollback runs"
    assert answer["weights_after"] == ROLLED_BACK
    assert answer["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": "FAILED"}
    assert answer["errors"] == [
        "writer rollback FAILED: FenceTimeout: payment_app sessions still open on Aurora after "
        f"30 s ({EXECUTION_ARN}); the writer is still aws"
    ]
    assert answer["writer_after"]["writer"] == "aws"


def test_sns_triggered_failed_writer_rollback_raises_after_notifying(
    after_cutover, invoke, start_execution_calls
):
    world = after_cutover
    world.create_rollback_machine(fail_with("FenceTimeout", "sessions still open"))

    with pytest.raises(RollbackIncompleteError) as raised:
        invoke(alarm_event("payments-cutover-unhealthy-test"))

    assert str(raised.value).startswith(
        "rollback PARTIAL: writer rollback FAILED: FenceTimeout: sessions still open"
    )
    assert str(raised.value).endswith("weights {'onprem': 100, 'aws': 0}, writer aws")
    (notification,) = world.notifications()
    published = json.loads(notification["Message"])
    assert (published["status"], published["trigger"]) == ("PARTIAL", "alarm")
    assert world.execution_input(EXECUTION_ARN) == {
        "reason": "payments-cutover-unhealthy-test",
        "trigger": "alarm",
    }

    # Lambda's retry of the same event finds the same, failed execution: it never starts another
    # fenced rollback for this epoch, and fails again, on to the dead-letter queue.
    with pytest.raises(RollbackIncompleteError, match="writer rollback FAILED"):
        invoke(alarm_event("payments-cutover-unhealthy-test"))
    assert len(start_execution_calls) == 1
    assert len(world.executions()) == 1


def test_direct_invoke_after_a_failed_writer_rollback_reports_it_and_starts_none(
    after_cutover, invoke, start_execution_calls
):
    world = after_cutover
    world.create_rollback_machine(fail_with("FenceTimeout", "sessions still open"))
    first = invoke({"reason": "first"})
    assert first["status"] == "PARTIAL", first

    again = invoke({"reason": "second, other input"})

    assert again["status"] == "PARTIAL", again
    assert again["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": "FAILED"}
    assert any("exists already (FAILED" in action for action in again["actions"]), again
    assert len(start_execution_calls) == 1
    assert len(world.executions()) == 1


def test_timed_out_writer_rollback_is_partial(after_cutover, invoke):
    world = after_cutover
    world.create_rollback_machine(
        {"TimeoutSeconds": 1, **switch_writer_to_onprem(EPOCH, wait_seconds=5)}
    )

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert answer["writer_rollback"]["status"] == "TIMED_OUT"
    assert answer["errors"][0].startswith("writer rollback TIMED_OUT: ")
    assert world.writer()["writer"] == "aws"


def test_still_running_at_the_bound_is_partial_and_the_next_invoke_joins_it(
    after_cutover, invoke, monkeypatch, start_execution_calls
):
    world = after_cutover
    world.create_rollback_machine(switch_writer_to_onprem(EPOCH, wait_seconds=3))
    monkeypatch.setenv("WRITER_ROLLBACK_WAIT_SECONDS", "0.5")

    first = invoke({"reason": "drill"})

    assert first["status"] == "PARTIAL", first
    assert first["errors"] == [f"writer rollback still running: {EXECUTION_ARN}"]
    assert first["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": "RUNNING"}
    assert first["writer_after"]["writer"] == "aws"
    assert world.weights() == ROLLED_BACK

    monkeypatch.setenv("WRITER_ROLLBACK_WAIT_SECONDS", "10")
    second = invoke({"reason": "drill"})

    assert second["status"] == "ROLLED_BACK", second
    assert second["weights_before"] == ROLLED_BACK, "DNS was already rolled back"
    assert second["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": "SUCCEEDED"}
    assert second["writer_after"]["writer"] == "onprem"
    assert any("exists already (RUNNING" in action for action in second["actions"]), second
    assert len(start_execution_calls) == 1, "the second invoke started a second execution"
    assert len(world.executions()) == 1


def test_concurrent_invocations_share_one_execution(after_cutover, invoke):
    """Another invocation starts the execution (with another reason) between this one's look and
    its start: StartExecution says ExecutionAlreadyExists and this one waits for that one."""
    world = after_cutover
    world.create_rollback_machine(switch_writer_to_onprem(EPOCH, wait_seconds=1))
    from payment_rollback import handler

    other = boto3.client("stepfunctions")

    def the_other_invocation_starts_first(**_: Any) -> None:
        other.start_execution(
            stateMachineArn=ROLLBACK_MACHINE_ARN,
            name=f"rollback-epoch-{EPOCH}",
            input=json.dumps({"reason": "the other invocation", "trigger": "alarm"}),
        )

    handler.aws_clients().stepfunctions.meta.events.register_first(
        "before-call.sfn.StartExecution", the_other_invocation_starts_first
    )

    answer = invoke({"reason": "this invocation"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": "SUCCEEDED"}
    (execution,) = world.executions()
    assert world.execution_input(execution["executionArn"])["reason"] == "the other invocation"


def test_machine_that_succeeds_without_switching_the_writer_is_partial(after_cutover, invoke):
    world = after_cutover
    world.create_rollback_machine({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert answer["errors"] == [
        f"writer: rollback {EXECUTION_ARN} SUCCEEDED but /payment-migration/test/writer still "
        f"names aws (epoch {EPOCH}): check the state machine"
    ]


def test_missing_state_machine_is_partial_with_traffic_shifted(after_cutover, invoke):
    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert after_cutover.weights() == ROLLED_BACK
    (error,) = answer["errors"]
    assert error.startswith("writer: Step Functions: StartExecution StateMachineDoesNotExist"), error
    assert answer["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": None}
    assert answer["writer_after"]["writer"] == "aws", "read again at the end, whatever happened"


def test_wait_is_shortened_to_fit_the_function_timeout(after_cutover, invoke):
    world = after_cutover
    world.create_rollback_machine(switch_writer_to_onprem(EPOCH, wait_seconds=3))

    # 72 s of the remaining 72.5 s are kept for the calls after the wait.
    answer = invoke({"reason": "drill"}, remaining_millis=72_500)

    assert answer["status"] == "PARTIAL", answer
    assert answer["errors"] == [f"writer rollback still running: {EXECUTION_ARN}"]
    assert (
        "writer: waiting 0 s instead of WRITER_ROLLBACK_WAIT_SECONDS=10, to keep 72 s of the "
        "function's timeout for reporting" in answer["actions"]
    )


def test_dry_run_with_aws_writer_starts_nothing(
    after_cutover, invoke, route53_change_calls, start_execution_calls
):
    world = after_cutover
    world.create_rollback_machine(switch_writer_to_onprem(EPOCH))

    answer = invoke({"reason": "rehearsal", "dry_run": True})

    assert answer["status"] == "DRY_RUN", answer
    assert answer["writer_rollback"] == {"execution_arn": EXECUTION_ARN, "status": None}
    assert (
        f"writer: aws (epoch {EPOCH}); would start the fenced writer rollback {EXECUTION_ARN}"
        in answer["actions"]
    )
    assert route53_change_calls == start_execution_calls == []
    assert world.executions() == []
    assert world.writer()["writer"] == "aws"
    assert world.notifications() == []
