"""The controller's traffic steps (payment_rollback.traffic.lambda_handler) against moto in server
mode: weights in Route 53, alarms in CloudWatch in two regions, the writer parameter. Errors raise
classes whose names Step Functions matches, so the tests check the class name too."""

from __future__ import annotations

import pytest

from payment_common.errors import ConfigurationError
from payment_rollback import traffic
from payment_rollback.errors import AlarmNotFoundError, InvalidEventError, RecordSetNotFoundError
from payment_rollback.traffic_models import PHASE_WEIGHTS
from tests.rollback.conftest import record_calls
from tests.rollback.world import (
    AWS_SET_IDENTIFIER,
    FALLBACK_ALARM_NAMES,
    FORWARD_ALARM_NAMES,
    HEALTH_ALARM_NAMES,
    ONPREM_SET_IDENTIFIER,
    ROLLBACK_ALARM_NAMES,
)

ALL_CHECKED = (*ROLLBACK_ALARM_NAMES, *HEALTH_ALARM_NAMES)


@pytest.fixture
def change_calls(world):
    return record_calls(traffic.aws_clients().route53, "ChangeResourceRecordSets")


def without_weight(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "Weight"}


def alarm_actions(world) -> dict[str, bool]:
    return {name: world.alarm(name)["ActionsEnabled"]
            for name in (*FORWARD_ALARM_NAMES, *FALLBACK_ALARM_NAMES)}


def test_phase_weights_are_the_configs():
    from lib.config import PHASE_WEIGHTS as CONFIG_PHASE_WEIGHTS

    assert PHASE_WEIGHTS == CONFIG_PHASE_WEIGHTS


def test_set_weights_moves_both_members_in_one_batch(world, invoke_traffic, change_calls):
    members_before = world.members()

    answer = invoke_traffic({"action": "set_weights", "aws_weight": 25, "reason": "operator test"})

    assert answer["weights_before"] == {"onprem": 90, "aws": 10}
    assert answer["weights_after"] == {"onprem": 75, "aws": 25}
    assert answer["changed"] is True
    assert answer["change_id"]
    assert answer["phase"] is None
    assert world.weights() == {ONPREM_SET_IDENTIFIER: 75, AWS_SET_IDENTIFIER: 25}
    (call,) = change_calls
    assert call["ChangeBatch"]["Comment"] == "AWS weight 25: operator test"
    assert [c["ResourceRecordSet"]["Weight"] for c in call["ChangeBatch"]["Changes"]] == [75, 25]
    members_after = world.members()
    for identifier in members_before:
        assert without_weight(members_after[identifier]) == without_weight(members_before[identifier])


def test_set_weights_by_phase_is_idempotent(world, invoke_traffic, change_calls):
    same = invoke_traffic({"action": "set_weights", "phase": "canary", "reason": "advance"})

    assert same["changed"] is False, "the world starts in canary (on-prem 90 / AWS 10)"
    assert same["change_id"] is None
    assert same["weights_before"] == same["weights_after"] == {"onprem": 90, "aws": 10}
    assert change_calls == []

    split = invoke_traffic({"action": "set_weights", "phase": "split", "reason": "advance to split"})
    again = invoke_traffic({"action": "set_weights", "phase": "split", "reason": "retried"})

    assert split["weights_after"] == {"onprem": 50, "aws": 50}
    assert (split["changed"], again["changed"]) == (True, False)
    assert len(change_calls) == 1
    assert change_calls[0]["ChangeBatch"]["Comment"] == "phase split: advance to split"
    assert world.weights() == {ONPREM_SET_IDENTIFIER: 50, AWS_SET_IDENTIFIER: 50}


@pytest.mark.parametrize("phase", sorted(PHASE_WEIGHTS))
def test_each_phase_sets_its_weights(world, invoke_traffic, phase):
    answer = invoke_traffic({"action": "set_weights", "phase": phase, "reason": "phase test"})

    aws = PHASE_WEIGHTS[phase]
    assert answer["weights_after"] == {"onprem": 100 - aws, "aws": aws}
    assert world.weights() == {ONPREM_SET_IDENTIFIER: 100 - aws, AWS_SET_IDENTIFIER: aws}


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({}, "event key 'action' is missing"),
        ([], "event must be a JSON object with key 'action'"),
        ({"action": "rollback"}, "event key 'action' must be one of set_weights, check_alarms"),
        ({"action": ["status"]}, "event key 'action' must be one of"),
        ({"action": "set_weights", "reason": "x"}, "exactly one of event keys 'aws_weight'"),
        ({"action": "set_weights", "aws_weight": 10, "phase": "canary", "reason": "x"},
         "exactly one of event keys 'aws_weight' (0-100) and 'phase'"),
        ({"action": "set_weights", "aws_weight": 101, "reason": "x"},
         "'aws_weight' must be an integer from 0 to 100, got number 101"),
        ({"action": "set_weights", "aws_weight": -1, "reason": "x"}, "got number -1"),
        ({"action": "set_weights", "aws_weight": 12.5, "reason": "x"}, "got number 12.5"),
        ({"action": "set_weights", "aws_weight": True, "reason": "x"}, "got boolean true"),
        ({"action": "set_weights", "aws_weight": "10", "reason": "x"}, "got string \"10\""),
        ({"action": "set_weights", "phase": "half", "reason": "x"},
         "event key 'phase' must be one of legacy-sync, canary, split, aws-primary"),
        ({"action": "set_weights", "phase": ["canary"], "reason": "x"}, "event key 'phase'"),
        ({"action": "set_weights", "aws_weight": 10}, "event key 'reason' must be a non-empty"),
        ({"action": "set_weights", "aws_weight": 10, "reason": "  "}, "event key 'reason'"),
        ({"action": "set_weights", "aws_weight": 10, "reason": "x" * 1001}, "1001 characters"),
        ({"action": "set_weights", "aws_weight": 10, "reason": "x", "weight": 10},
         "unknown key(s) in set_weights event: weight"),
        ({"action": "check_alarms", "region": "us-east-1"},
         "unknown key(s) in check_alarms event: region; it takes only 'action'"),
        ({"action": "replication_alarms"}, "event key 'running' must be one of forward, fallback"),
        ({"action": "replication_alarms", "running": "both"}, "got string \"both\""),
        ({"action": "status", "verbose": True}, "unknown key(s) in status event: verbose"),
    ],
)
def test_bad_event_raises_naming_the_key_and_changes_nothing(
    world, invoke_traffic, change_calls, event, named
):
    actions_before = alarm_actions(world)

    with pytest.raises(InvalidEventError) as raised:
        invoke_traffic(event)

    assert named in str(raised.value)
    assert type(raised.value).__name__ == "InvalidEventError"
    assert change_calls == []
    assert world.weights() == {ONPREM_SET_IDENTIFIER: 90, AWS_SET_IDENTIFIER: 10}
    assert alarm_actions(world) == actions_before


def test_set_weights_on_a_missing_member_raises(world, invoke_traffic):
    world.delete_member(AWS_SET_IDENTIFIER)

    with pytest.raises(RecordSetNotFoundError, match="no member with set identifier 'aws'"):
        invoke_traffic({"action": "set_weights", "aws_weight": 0, "reason": "x"})


def test_check_alarms_all_ok(world, invoke_traffic):
    answer = invoke_traffic({"action": "check_alarms"})

    assert answer == {
        "action": "check_alarms",
        "alarm": False,
        "in_alarm": [],
        "states": {name: "OK" for name in ALL_CHECKED},
    }


def test_check_alarms_reads_health_alarms_in_their_region(world, invoke_traffic):
    world.set_alarm_state(ROLLBACK_ALARM_NAMES[1], "ALARM")
    world.set_alarm_state(HEALTH_ALARM_NAMES[1], "ALARM")
    world.set_alarm_state(HEALTH_ALARM_NAMES[0], "INSUFFICIENT_DATA")

    answer = invoke_traffic({"action": "check_alarms"})

    assert answer["alarm"] is True
    assert answer["in_alarm"] == [ROLLBACK_ALARM_NAMES[1], HEALTH_ALARM_NAMES[1]]
    assert answer["states"][HEALTH_ALARM_NAMES[0]] == "INSUFFICIENT_DATA"
    assert answer["states"][ROLLBACK_ALARM_NAMES[0]] == "OK"


@pytest.mark.parametrize(
    ("variable", "missing", "region"),
    [
        ("ROLLBACK_ALARM_NAMES", "payments-renamed-alarm", "eu-west-1"),
        # A health alarm name that exists only in the function's region is still missing.
        ("HEALTH_ALARM_NAMES", ROLLBACK_ALARM_NAMES[0] + "-health", "us-east-1"),
    ],
)
def test_check_alarms_with_a_missing_alarm_fails_safe(
    world, invoke_traffic, monkeypatch, variable, missing, region
):
    if variable == "HEALTH_ALARM_NAMES":
        world.cloudwatch.put_metric_alarm(
            AlarmName=missing, Namespace="PaymentMigration", MetricName="x", Statistic="Maximum",
            Period=60, EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
        )
    names = world.environment()[variable]
    monkeypatch.setenv(variable, f"{names},{missing}")

    with pytest.raises(AlarmNotFoundError) as raised:
        invoke_traffic({"action": "check_alarms"})

    assert f"alarm(s) not found: {missing} ({region}, from {variable})" in str(raised.value)


def test_replication_alarms_follow_the_running_direction(world, invoke_traffic):
    forward = invoke_traffic({"action": "replication_alarms", "running": "forward"})

    assert forward["enabled"] == list(FORWARD_ALARM_NAMES)
    assert forward["disabled"] == list(FALLBACK_ALARM_NAMES)
    assert forward["changed"] is True
    assert forward["reset_to_ok"] == [], "every alarm is OK"
    assert forward["actions_enabled_before"] == {
        name: True for name in (*FORWARD_ALARM_NAMES, *FALLBACK_ALARM_NAMES)
    }
    assert alarm_actions(world) == {
        **{name: True for name in FORWARD_ALARM_NAMES},
        **{name: False for name in FALLBACK_ALARM_NAMES},
    }
    assert invoke_traffic({"action": "replication_alarms", "running": "forward"})["changed"] is False

    fallback = invoke_traffic({"action": "replication_alarms", "running": "fallback"})

    assert fallback["changed"] is True
    assert alarm_actions(world) == {
        **{name: False for name in FORWARD_ALARM_NAMES},
        **{name: True for name in FALLBACK_ALARM_NAMES},
    }


def test_enabled_alarms_already_in_alarm_are_put_back_to_ok(world, invoke_traffic):
    """The fallback latency alarm sits in ALARM while its task does not run (missing data is
    breaching) with its actions off. Enabling its actions alone would never notify: actions run on
    transitions. Set to OK, it goes back to ALARM — and notifies — at the next evaluation."""
    world.cloudwatch.disable_alarm_actions(AlarmNames=list(FALLBACK_ALARM_NAMES))
    breaching, quiet = FALLBACK_ALARM_NAMES[1], FALLBACK_ALARM_NAMES[0]
    world.set_alarm_state(breaching, "ALARM")
    world.set_alarm_state(FORWARD_ALARM_NAMES[0], "ALARM")  # its actions go off: left as it is
    reason_of_quiet = world.alarm(quiet)["StateReason"]

    answer = invoke_traffic({"action": "replication_alarms", "running": "fallback"})

    assert answer["reset_to_ok"] == [breaching]
    assert answer["changed"] is True
    assert alarm_actions(world) == {
        **{name: False for name in FORWARD_ALARM_NAMES},
        **{name: True for name in FALLBACK_ALARM_NAMES},
    }
    reset = world.alarm(breaching)
    assert (reset["StateValue"], reset["StateReason"]) == (
        "OK", "actions enabled by the cutover controller; re-evaluated from now")
    assert world.alarm(quiet)["StateReason"] == reason_of_quiet, "an OK alarm is not touched"
    assert world.alarm(FORWARD_ALARM_NAMES[0])["StateValue"] == "ALARM", "a disabled alarm is not reset"

    world.set_alarm_state(breaching, "ALARM")  # the next evaluation: still breaching
    retried = invoke_traffic({"action": "replication_alarms", "running": "fallback"})

    assert retried["changed"] is False
    assert retried["reset_to_ok"] == [breaching], "a retry resets what is in ALARM again"


def test_replication_alarms_with_a_missing_alarm_change_nothing(world, invoke_traffic):
    world.cloudwatch.delete_alarms(AlarmNames=[FALLBACK_ALARM_NAMES[1]])
    world.cloudwatch.disable_alarm_actions(AlarmNames=list(FORWARD_ALARM_NAMES))

    with pytest.raises(AlarmNotFoundError, match=f"{FALLBACK_ALARM_NAMES[1]} \\(eu-west-1, from "
                                                 "FALLBACK_ALARM_NAMES\\)"):
        invoke_traffic({"action": "replication_alarms", "running": "forward"})

    assert all(not world.alarm(name)["ActionsEnabled"] for name in FORWARD_ALARM_NAMES), "enabled"
    assert world.alarm(FALLBACK_ALARM_NAMES[0])["ActionsEnabled"] is True


def test_status_shows_weights_phase_alarms_and_writer(world, invoke_traffic):
    world.set_alarm_state(HEALTH_ALARM_NAMES[0], "ALARM")
    world.set_writer("aws", 2)

    answer = invoke_traffic({"action": "status"})

    assert answer["action"] == "status"
    assert answer["weights"] == {"onprem": 90, "aws": 10}
    assert answer["phase"] == "canary"
    assert answer["alarms"]["alarm"] is True
    assert answer["alarms"]["in_alarm"] == [HEALTH_ALARM_NAMES[0]]
    assert set(answer["alarms"]["states"]) == set(ALL_CHECKED)
    assert answer["writer"]["writer"] == "aws"
    assert answer["writer"]["epoch"] == 2


def test_status_of_weights_that_match_no_phase(world, invoke_traffic):
    world.set_weights(onprem=70, aws=30)

    assert invoke_traffic({"action": "status"})["phase"] is None


@pytest.mark.parametrize(
    ("event", "variable"),
    [
        ({"action": "set_weights", "aws_weight": 0, "reason": "x"}, "HOSTED_ZONE_ID"),
        ({"action": "check_alarms"}, "HEALTH_ALARM_REGION"),
        ({"action": "status"}, "WRITER_PARAMETER"),
    ],
)
def test_missing_environment_raises_naming_the_variable(
    world, invoke_traffic, monkeypatch, event, variable
):
    monkeypatch.delenv(variable)

    with pytest.raises(ConfigurationError, match=f"missing environment variable\\(s\\) {variable}"):
        invoke_traffic(event)


def test_each_action_needs_only_its_own_environment(world, invoke_traffic, monkeypatch):
    for variable in ("ROLLBACK_ALARM_NAMES", "HEALTH_ALARM_NAMES", "HEALTH_ALARM_REGION",
                     "FORWARD_ALARM_NAMES", "FALLBACK_ALARM_NAMES", "WRITER_PARAMETER",
                     "SNS_TOPIC_ARN", "ROLLBACK_STATE_MACHINE_ARN"):
        monkeypatch.delenv(variable)

    answer = invoke_traffic({"action": "set_weights", "aws_weight": 0, "reason": "x"})

    assert answer["weights_after"] == {"onprem": 100, "aws": 0}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROLLBACK_ALARM_NAMES", " , ", "ROLLBACK_ALARM_NAMES names no alarm"),
        ("FORWARD_ALARM_NAMES", "", "FORWARD_ALARM_NAMES names no alarm"),
        ("HEALTH_ALARM_NAMES", ROLLBACK_ALARM_NAMES[0],
         f"ROLLBACK_ALARM_NAMES and HEALTH_ALARM_NAMES both name {ROLLBACK_ALARM_NAMES[0]}"),
        ("FALLBACK_ALARM_NAMES", FORWARD_ALARM_NAMES[0],
         f"FORWARD_ALARM_NAMES and FALLBACK_ALARM_NAMES both name {FORWARD_ALARM_NAMES[0]}"),
    ],
)
def test_bad_alarm_lists_raise(world, invoke_traffic, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    if variable in ("FORWARD_ALARM_NAMES", "FALLBACK_ALARM_NAMES"):
        event = {"action": "replication_alarms", "running": "forward"}
    else:
        event = {"action": "check_alarms"}

    with pytest.raises(ConfigurationError, match=message):
        invoke_traffic(event)
