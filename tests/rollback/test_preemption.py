"""The rollback wins over the controller's executions in flight (payment_rollback.preemption): it
stops every running `advance` before anything else, except the one waiting on it; it waits for a
running `cutover` — never stops it — and rolls back from the writer that cutover leaves.

Real (tiny) advance and cutover state machines run on moto's Step Functions engine; the one that
calls the rollback reaches the real handler through moto's Lambda (InProcessLambdas)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from payment_rollback import handler
from payment_rollback.preemption import function_name_of
from tests.rollback.functions import in_process_functions
from tests.rollback.world import (
    ADVANCE_MACHINE_NAME,
    AWS_SET_IDENTIFIER,
    CUTOVER_MACHINE_NAME,
    ONPREM_SET_IDENTIFIER,
    ROLLBACK_MACHINE_ARN,
    WRITER_PARAMETER,
    World,
    switch_writer_to_onprem,
    writer_document,
)

pytestmark = pytest.mark.usefixtures("executing_state_machines")

ROLLED_BACK = {"onprem": 100, "aws": 0}
MARKER_PARAMETER = "/payment-migration/test/advance-went-on"
BAKE_SECONDS = 3  # the advance's bake, in the test that stops it before its next step
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


@pytest.fixture(scope="module")
def world_options() -> dict[str, Any]:
    """Plain A records on both sides, so that a state machine can write the whole pair itself."""
    return {"aws_member": "records"}


@pytest.fixture
def world(world, monkeypatch) -> World:
    monkeypatch.setenv("WRITER_ROLLBACK_WAIT_SECONDS", "20")
    return world


@pytest.fixture
def functions(world, monkeypatch):
    with in_process_functions(monkeypatch) as created:
        yield created


def put_parameter(name: str, value: str, next_state: str | None = None) -> dict[str, Any]:
    state = {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:ssm:putParameter",
             "Parameters": {"Name": name, "Type": "String", "Overwrite": True, "Value": value},
             "ResultPath": None}
    return {**state, "Next": next_state} if next_state else {**state, "End": True}


def all_traffic_to_aws(world: World) -> dict[str, Any]:
    """What the cutover's last step does: AWS 100 / on-prem 0, one batch (moto's aws-sdk:route53)."""
    members = world.members()
    return {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:route53:changeResourceRecordSets",
            "Parameters": {"HostedZoneId": world.zone_id, "ChangeBatch": {"Changes": [
                {"Action": "UPSERT", "ResourceRecordSet": {**members[identifier], "Weight": weight}}
                for identifier, weight in ((ONPREM_SET_IDENTIFIER, 0), (AWS_SET_IDENTIFIER, 100))]}},
            "ResultPath": None, "End": True}


def advance_that_shifts_later(seconds: int) -> dict[str, Any]:
    """A bake that ends in a step leaving a mark: any mark means the advance went on."""
    return {"StartAt": "Bake", "States": {
        "Bake": {"Type": "Wait", "Seconds": seconds, "Next": "ShiftWeights"},
        "ShiftWeights": put_parameter(MARKER_PARAMETER, "the advance moved weights after the rollback")}}


def cutover_to_aws(world: World, seconds: float, epoch: int = 0) -> dict[str, Any]:
    """The data cutover's outcome after `seconds`: writer aws (next epoch), all traffic to AWS."""
    return {"StartAt": "FenceAndSwitch", "States": {
        "FenceAndSwitch": {"Type": "Wait", "Seconds": seconds, "Next": "SetWriter"},
        "SetWriter": put_parameter(WRITER_PARAMETER, writer_document("aws", epoch + 1, "data cutover"),
                                   next_state="MoveTraffic"),
        "MoveTraffic": all_traffic_to_aws(world)}}


def start(world: World, machine_arn: str, name: str = "running") -> str:
    return world.stepfunctions.start_execution(stateMachineArn=machine_arn, name=name)["executionArn"]


def status_of(world: World, arn: str) -> str:
    return world.stepfunctions.describe_execution(executionArn=arn)["status"]


def wait_until_closed(world: World, arn: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (description := world.stepfunctions.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running after {timeout} s"
        time.sleep(0.1)
    return description


def until(condition: Callable[[], bool], failure: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def seen_before(deadline: float, condition: Callable[[], bool]) -> bool:
    """Whether `condition` holds at some point before `deadline` (time.monotonic()): for what must
    not happen, watched for as long as it could."""
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def marker_exists(world: World) -> bool:
    return bool(world.ssm.get_parameters(Names=[MARKER_PARAMETER])["Parameters"])


# -- advance ---------------------------------------------------------------------------------------


def test_a_running_advance_is_stopped_before_the_weights_move(world, invoke):
    machine = world.create_controller_machine(ADVANCE_MACHINE_NAME, advance_that_shifts_later(BAKE_SECONDS))
    started = time.monotonic()
    execution = start(world, machine)

    answer = invoke({"reason": "alarm during canary"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["controller"] == {"advance_stopped": [execution], "advance_left_running": [], "cutover": None}
    assert f"advance: stopped {execution}" in answer["actions"]
    assert answer["actions"].index(f"advance: stopped {execution}") < next(
        index for index, action in enumerate(answer["actions"]) if action.startswith("Route 53: changed"))
    assert wait_until_closed(world, execution)["status"] == "ABORTED"
    # Watched until a step after the bake would have run, and a little longer.
    assert not seen_before(started + BAKE_SECONDS + 1, lambda: marker_exists(world)), \
        "the stopped advance went on to its next step"
    assert world.weights() == ROLLED_BACK


def test_an_advance_waiting_on_this_rollback_is_left_to_report(world, functions):
    """The advance's RollBack state invokes the rollback, which must not stop its own caller."""
    rollback_arn = functions.create("payment-rollback-test", handler.lambda_handler, world.environment())
    machine = world.create_controller_machine(ADVANCE_MACHINE_NAME, {"StartAt": "RollBack", "States": {
        "RollBack": {"Type": "Task", "Resource": LAMBDA_INVOKE,
                     "Parameters": {"FunctionName": rollback_arn, "Payload": {"reason": "alarm while baking"}},
                     "ResultSelector": {"result.$": "$.Payload"}, "ResultPath": "$.rollback", "Next": "RolledBack?"},
        "RolledBack?": {"Type": "Choice", "Choices": [
            {"Variable": "$.rollback.result.status", "StringEquals": "ROLLED_BACK", "Next": "RolledBack"}],
            "Default": "RollbackIncomplete"},
        "RolledBack": {"Type": "Fail", "Error": "RolledBack", "Cause": "an alarm fired while the phase baked"},
        "RollbackIncomplete": {"Type": "Fail", "Error": "RollbackIncomplete", "Cause": "finish it by hand"}}})
    other = world.create_controller_machine(f"{ADVANCE_MACHINE_NAME}-other", advance_that_shifts_later(30))
    del other  # another machine's executions are not the rollback's business

    execution = wait_until_closed(world, start(world, machine, "baking"))

    assert (execution["status"], execution.get("error")) == ("FAILED", "RolledBack"), execution
    (invocation,) = functions.lambdas.invocations
    answer = invocation.result
    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["controller"]["advance_stopped"] == []
    assert answer["controller"]["advance_left_running"] == [execution["executionArn"]]
    assert (f"advance: {execution['executionArn']} is waiting on this rollback (its RollBack state): left to "
            "finish and report") in answer["actions"]
    assert world.weights() == ROLLED_BACK


def test_an_advance_with_another_step_in_flight_is_stopped_and_the_weights_checked_again(world, functions, invoke):
    """Stopping an execution does not stop the Lambda step it has in flight: a weight change that
    lands after the rollback's own shift is undone before the rollback reports."""
    shifted = []

    def slow_traffic_step(event, context):
        until(lambda: world.weights() == ROLLED_BACK, "the rollback never shifted the weights")
        world.set_weights(onprem=50, aws=50)  # lands after the rollback's shift
        shifted.append(event)
        return {"action": "set_weights"}

    traffic_arn = functions.create("payment-traffic-test", slow_traffic_step, {})
    machine = world.create_controller_machine(ADVANCE_MACHINE_NAME, {"StartAt": "ShiftWeights", "States": {
        "ShiftWeights": {"Type": "Task", "Resource": LAMBDA_INVOKE, "End": True,
                         "Parameters": {"FunctionName": traffic_arn, "Payload": {"action": "set_weights"}}}}})
    execution = start(world, machine)
    deadline = time.monotonic() + 10
    while not any(event["type"] == "TaskStarted" for event in world.stepfunctions.get_execution_history(
            executionArn=execution)["events"]):
        assert time.monotonic() < deadline, "the advance never started its step"
        time.sleep(0.05)
    def until_the_step_landed(**_: Any) -> None:
        deadline = time.monotonic() + 10
        while not shifted and time.monotonic() < deadline:
            time.sleep(0.05)

    # The step lands while the rollback reads the writer, after its shift.
    handler.aws_clients().ssm.meta.events.register("before-call.ssm.GetParameter", until_the_step_landed)

    answer = invoke({"reason": "alarm during split"})

    stopped = (f"advance: stopped {execution}; its ShiftWeights step (payment-traffic-test) was in flight and may "
               "still complete: the weights are checked again at the end")
    assert stopped in answer["actions"], answer["actions"]
    assert shifted, "the step in flight never completed"
    assert any(action.startswith("traffic: the weights had moved to {'onprem': 50, 'aws': 50} during the rollback")
               for action in answer["actions"]), answer["actions"]
    assert (answer["status"], answer["weights_after"], answer["errors"]) == ("ROLLED_BACK", ROLLED_BACK, [])
    assert world.weights() == ROLLED_BACK


# -- cutover ---------------------------------------------------------------------------------------


def test_a_rollback_during_a_cutover_waits_and_rolls_back_the_writer_it_left(world, invoke):
    """Without the wait: DNS only (the writer is still on-prem), then the cutover completes, sets
    writer aws and sends all traffic to AWS — the rollback undone."""
    cutover = start(world, world.create_controller_machine(CUTOVER_MACHINE_NAME, cutover_to_aws(world, 2)))
    world.create_rollback_machine(switch_writer_to_onprem(1))

    answer = invoke({"reason": "alarm during the cutover"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert status_of(world, cutover) == "SUCCEEDED"
    controller = answer["controller"]
    assert (controller["cutover"]["execution_arn"], controller["cutover"]["status"]) == (cutover, "SUCCEEDED")
    assert 0 < controller["cutover"]["waited_seconds"] < 20
    assert any(action.startswith(f"cutover: {cutover} is running: waiting up to ") for action in answer["actions"])
    assert (answer["writer_before"]["writer"], answer["writer_before"]["epoch"]) == ("aws", 1)
    assert answer["weights_before"] == {"onprem": 0, "aws": 100}, "shifted after the cutover moved traffic"
    assert answer["writer_rollback"] == {
        "execution_arn": ROLLBACK_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":rollback-epoch-1",
        "status": "SUCCEEDED"}
    assert (world.writer()["writer"], world.writer()["epoch"]) == ("onprem", 2)
    assert world.weights() == ROLLED_BACK


def test_a_cutover_that_fails_leaves_on_prem_the_writer_and_the_rollback_dns_only(
    world, invoke, start_execution_calls
):
    cutover = start(world, world.create_controller_machine(CUTOVER_MACHINE_NAME, {
        "StartAt": "Fence", "States": {
            "Fence": {"Type": "Wait", "Seconds": 1, "Next": "Aborted"},
            "Aborted": {"Type": "Fail", "Error": "CutoverFailed", "Cause": "validation did not pass"}}}))

    answer = invoke({"reason": "alarm during the cutover"})

    assert (answer["status"], answer["errors"]) == ("ROLLED_BACK", []), answer
    assert answer["controller"]["cutover"]["status"] == "FAILED"
    assert f"cutover: {cutover} ended FAILED after" in " ".join(answer["actions"])
    assert answer["writer_after"]["writer"] == "onprem" and answer["writer_rollback"] is None
    assert start_execution_calls == [], "no writer rollback before the data cutover"
    assert world.weights() == ROLLED_BACK


def test_a_cutover_still_running_at_the_bound_is_never_stopped_and_the_answer_is_partial(
    world, invoke, monkeypatch, start_execution_calls
):
    monkeypatch.setenv("WRITER_ROLLBACK_WAIT_SECONDS", "0.5")
    cutover = start(world, world.create_controller_machine(CUTOVER_MACHINE_NAME, cutover_to_aws(world, 30)))

    answer = invoke({"reason": "alarm during the cutover"})

    assert answer["status"] == "PARTIAL", answer
    (error,) = answer["errors"]
    assert error.startswith(f"cutover {cutover} still running after 1 s of waiting: the writer (onprem, "
                            "epoch 0) was left alone, since a cutover is never stopped mid-way; when it completes it "
                            "moves all traffic to AWS: invoke the rollback again once it has ended"), error
    assert answer["controller"]["cutover"]["status"] == "RUNNING"
    assert status_of(world, cutover) == "RUNNING", "the cutover was stopped"
    assert world.weights() == ROLLED_BACK, "traffic moves all the same"
    assert start_execution_calls == []


def test_one_wait_budget_for_the_cutover_and_the_writer_rollback(world, invoke, monkeypatch):
    monkeypatch.setenv("WRITER_ROLLBACK_WAIT_SECONDS", "6")
    cutover = start(world, world.create_controller_machine(CUTOVER_MACHINE_NAME, cutover_to_aws(world, 2)))
    world.create_rollback_machine(switch_writer_to_onprem(1, wait_seconds=10))

    answer = invoke({"reason": "alarm during the cutover"})

    assert answer["status"] == "PARTIAL", answer
    assert status_of(world, cutover) == "SUCCEEDED"
    assert answer["controller"]["cutover"]["waited_seconds"] >= 1.5
    (budget,) = [re.fullmatch(r"writer: waiting at most (\d+) s: (\d+) s of WRITER_ROLLBACK_WAIT_SECONDS=6 went to "
                              r"the cutover", action) for action in answer["actions"] if "went to the cutover" in action]
    assert budget, answer["actions"]
    assert 5 <= int(budget.group(1)) + int(budget.group(2)) <= 7, "what is left of the one budget"
    assert answer["errors"][0].startswith("writer rollback still running: ")


def test_dry_run_stops_nothing_and_waits_for_nothing(world, invoke, start_execution_calls):
    advance = start(world, world.create_controller_machine(ADVANCE_MACHINE_NAME, advance_that_shifts_later(30)))
    cutover = start(world, world.create_controller_machine(CUTOVER_MACHINE_NAME, cutover_to_aws(world, 30)))

    started = time.monotonic()
    answer = invoke({"reason": "rehearsal", "dry_run": True})

    assert time.monotonic() - started < 10
    assert answer["status"] == "DRY_RUN", answer
    assert f"advance: would stop {advance}" in answer["actions"]
    assert (f"cutover: {cutover} is running: would wait for it to end (never stopped mid-way), then roll back "
            "from the writer it leaves") in answer["actions"]
    assert answer["controller"]["advance_stopped"] == [advance]
    assert status_of(world, advance) == status_of(world, cutover) == "RUNNING"
    assert world.weights() == {"onprem": 90, "aws": 10}
    assert start_execution_calls == []


def test_no_controller_state_machine_yet_is_not_an_error(world, invoke):
    """The controller's state machines are absent (an emulator world without them, or removed)."""
    answer = invoke({"reason": "drill"})

    assert (answer["status"], answer["errors"]) == ("ROLLED_BACK", [])
    assert answer["controller"] == {"advance_stopped": [], "advance_left_running": [], "cutover": None}
    assert any(action.startswith("advance: state machine ") and action.endswith("does not exist: no execution "
                                                                                 "to stop")
               for action in answer["actions"])


def test_a_failing_listing_never_keeps_traffic_from_moving(world, invoke):
    handler.aws_clients().stepfunctions.meta.events.register(
        "before-call.sfn.ListExecutions", lambda **_: (_ for _ in ()).throw(RuntimeError("listing broke")))

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert answer["errors"] == ["advance: unexpected RuntimeError: listing broke",
                                "cutover: unexpected RuntimeError: listing broke"]
    assert world.weights() == ROLLED_BACK


@pytest.mark.parametrize(("given", "name"), [
    ("payment-rollback-dev", "payment-rollback-dev"),
    ("arn:aws:lambda:eu-west-1:123456789012:function:payment-rollback-dev", "payment-rollback-dev"),
    ("arn:aws:lambda:eu-west-1:123456789012:function:payment-rollback-dev:live", "payment-rollback-dev"),
    ("payment-rollback-dev:live", "payment-rollback-dev"),
])
def test_function_names_from_a_task_parameter(given, name):
    assert function_name_of(given) == name
