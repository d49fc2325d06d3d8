"""The writer parameter names on-prem, but does on-prem accept writes? The rollback reads each side's
`Fenced` measurement (put into moto's CloudWatch as the controller's publish_metrics step puts it)
and the DMS tasks' statuses (moto's DMS), and never answers ROLLED_BACK while nothing accepts
writes."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from payment_rollback.errors import RollbackIncompleteError
from tests.rollback.test_rollback import emitted_metrics
from tests.rollback.world import CUTOVER_MACHINE_NAME, RECORD_NAME, World

ROLLED_BACK = {"onprem": 100, "aws": 0}


def alarm_event(alarm_name: str) -> dict:
    message = {"AlarmName": alarm_name, "NewStateValue": "ALARM", "OldStateValue": "OK"}
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message)}}]}


@pytest.fixture
def past_the_switch(world: World, monkeypatch) -> World:
    """A cutover that failed after its direction switch: the writer parameter still onprem, both
    sides fenced, the forward tasks stopped, the fallback running."""
    world.publish_fence(onprem=1, aws=1)
    world.run_tasks("fallback")
    return world


def test_onprem_fenced_is_no_writer_with_the_error_metric_and_notification(
    past_the_switch, invoke, capsys, executing_state_machines
):
    world = past_the_switch
    cutover = world.create_controller_machine(CUTOVER_MACHINE_NAME, {
        "StartAt": "Fail", "States": {"Fail": {"Type": "Fail", "Error": "SwitchPending", "Cause": "open aws"}}})
    execution = world.stepfunctions.start_execution(stateMachineArn=cutover, name="cutover-1")["executionArn"]
    deadline = time.monotonic() + 10
    while world.stepfunctions.describe_execution(executionArn=execution)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the stand-in cutover did not fail"
        time.sleep(0.05)

    answer = invoke({"reason": "payments refused after a failed cutover"})

    assert answer["status"] == "NO_WRITER", answer
    assert world.weights() == ROLLED_BACK, "traffic moves all the same"
    (error,) = answer["errors"]
    assert error.startswith("no writer: traffic is on-prem, but the writer parameter names onprem (epoch 0) and "
                            "on-prem is fenced, so every payment write is refused; the replication already runs "
                            "Aurora → on-prem: a cutover stopped after its direction switch"), error
    assert "onprem fenced (Fenced=1" in error and "aws fenced (Fenced=1" in error, error
    assert "fallback payments-test-fallback running" in error and "forward payments-test-forward stopped" in error
    assert "python -m lib.cutover status" in error and "python -m lib.cutover cutover" in error
    assert f"the cutover execution {execution} (" in error, "the execution to run again is named"
    assert answer["writes"]["verdict"] == "fenced"
    assert answer["writes"]["replication"]["fallback"] == "running"
    assert not any("DNS only" in action for action in answer["actions"]), answer["actions"]

    (notification,) = world.notifications()
    assert notification["Subject"] == f"Payment rollback NO_WRITER: {RECORD_NAME}"
    published = json.loads(notification["Message"])
    assert (published["status"], published["errors"]) == ("NO_WRITER", [error])

    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["Status"] == "NO_WRITER"
    assert document["RollbackInvocations"] == [1.0]
    assert document["TrafficShifted"] == [1.0]

    # A second invoke changes no weight, and still does not call it rolled back.
    again = invoke({"reason": "again"})
    assert (again["status"], again["weights_before"]) == ("NO_WRITER", ROLLED_BACK), again


def test_onprem_fenced_with_forward_running_names_a_cutover_stopped_before_the_switch(world, invoke):
    world.publish_fence(onprem=1, aws=1)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "NO_WRITER", answer
    assert ("forward replication still runs: a cutover stopped after its fence and before the switch"
            in answer["errors"][0]), answer["errors"]


def test_aurora_open_but_not_named_by_the_writer_is_still_no_writer(world, invoke):
    world.publish_fence(onprem=1, aws=0)
    world.run_tasks("fallback")

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "NO_WRITER", answer
    assert "aws is open, but the writer parameter still names onprem, so the applications write there" in (
        answer["errors"][0])


def test_sns_triggered_no_writer_raises_so_that_lambda_retries_it(past_the_switch, invoke):
    with pytest.raises(RollbackIncompleteError, match=r"^rollback NO_WRITER: no writer: "):
        invoke(alarm_event("payments-cutover-unhealthy-test"))
    (notification,) = past_the_switch.notifications()
    assert json.loads(notification["Message"])["status"] == "NO_WRITER"


def test_onprem_open_is_rolled_back_dns_only_as_before(world, invoke):
    world.publish_fence(onprem=0, aws=1)

    answer = invoke({"reason": "drill"})

    assert (answer["status"], answer["errors"]) == ("ROLLED_BACK", []), answer
    (action,) = [action for action in answer["actions"] if action.startswith("writer:")]
    assert action.startswith("writer: onprem (epoch 0), Aurora is not the writer and accepts writes; the rollback "
                             "is DNS only and forward replication keeps running"), action
    assert "forward payments-test-forward running" in action
    assert answer["writes"]["verdict"] == "open"


def test_onprem_open_with_no_direction_running_says_so(world, invoke):
    world.publish_fence(onprem=0, aws=1)
    world.run_tasks()

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert any("forward replication is NOT running, so Aurora is not kept current" in action
               for action in answer["actions"]), answer["actions"]


def test_the_newest_minute_counts(world, invoke):
    """Fenced a few minutes ago, open now (an abort reopened on-prem): the writer accepts writes."""
    world.publish_fence(onprem=1, aws=1, seconds_ago=200)
    world.publish_fence(onprem=0, aws=1)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "ROLLED_BACK", answer


def test_no_fence_measurement_is_partial_naming_what_is_missing(world, invoke, monkeypatch):
    # Measured in another namespace only: nothing in the one the rollback reads.
    monkeypatch.setenv("FENCE_METRICS_NAMESPACE", "PaymentMigrationElsewhere")

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert world.weights() == ROLLED_BACK
    (error,) = answer["errors"]
    assert error.startswith("writer: onprem (epoch 0), Aurora is not the writer, but whether on-prem accepts writes "
                            "cannot be told: no Fenced measurement with Side=onprem in PaymentMigrationElsewhere in "
                            "the last 5 minutes"), error
    assert answer["writes"]["verdict"] == "unknown"


def test_a_measurement_older_than_the_window_does_not_count(world, invoke, monkeypatch):
    monkeypatch.setenv("FENCE_METRICS_NAMESPACE", "PaymentMigrationStale")
    world.cloudwatch.put_metric_data(Namespace="PaymentMigrationStale", MetricData=[
        {"MetricName": "Fenced", "Dimensions": [{"Name": "Side", "Value": "onprem"}], "Value": 0.0,
         "Timestamp": datetime.now(timezone.utc) - timedelta(seconds=400)}])

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert "no Fenced measurement with Side=onprem" in answer["errors"][0]


def test_open_measured_while_the_direction_is_already_switched_cannot_be_told(world, invoke):
    world.publish_fence(onprem=0, aws=1)
    world.run_tasks("fallback")

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert "the measurement may predate the switch" in answer["errors"][0], answer["errors"]


def test_dry_run_is_dry_run_and_says_what_it_would_answer(past_the_switch, invoke, route53_change_calls):
    answer = invoke({"reason": "rehearsal", "dry_run": True})

    assert (answer["status"], answer["errors"]) == ("DRY_RUN", []), answer
    assert any(action.startswith("would answer NO_WRITER: no writer: ") for action in answer["actions"]), (
        answer["actions"])
    assert route53_change_calls == []
    assert past_the_switch.notifications() == []

