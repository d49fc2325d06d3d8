"""Bad events and incomplete environments: FAILED, with a message naming the problem, and nothing
changed in Route 53, DMS or SNS."""

from __future__ import annotations

import pytest

from tests.rollback.world import AWS_SET_IDENTIFIER, ONPREM_SET_IDENTIFIER

REQUIRED_ENVIRONMENT = (
    "HOSTED_ZONE_ID",
    "RECORD_NAME",
    "RECORD_TYPE",
    "ONPREM_SET_IDENTIFIER",
    "AWS_SET_IDENTIFIER",
    "DMS_TASK_ARN",
    "SNS_TOPIC_ARN",
)


def assert_nothing_changed(world, route53_change_calls):
    assert route53_change_calls == []
    assert world.weights() == {ONPREM_SET_IDENTIFIER: 90, AWS_SET_IDENTIFIER: 10}
    assert world.task_status(world.forward_task_arn) == "running"
    assert world.notifications() == []


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"reason": "x", "force": True}, "unknown key(s) in event: force"),
        ({"Reason": "x"}, "unknown key(s) in event: Reason"),
        ({"dry_run": "false"}, "event key 'dry_run' must be a boolean, got string"),
        ({"dry_run": 0}, "event key 'dry_run' must be a boolean, got number"),
        ({"stop_replication": None}, "event key 'stop_replication' must be a boolean, got null"),
        ({"reason": 42}, "event key 'reason' must be a string, got number"),
        ({"reason": ["a"]}, "event key 'reason' must be a string, got array"),
        ({"reason": "x" * 1001}, "event key 'reason' is 1001 characters long"),
        ([], "event must be a JSON object"),
        ("roll back", "event must be a JSON object"),
        (None, "event must be a JSON object with optional keys reason, dry_run, stop_replication"),
        ({"Records": "not a list"}, "'Records' must be a non-empty array"),
        ({"Records": []}, "'Records' must be a non-empty array"),
        ({"Records": [{"Sns": {}}]}, "Records[0].Sns.Message must be a string"),
        ({"Records": [{"Sns": {"Message": "{}"}}], "dry_run": True}, "next to 'Records'"),
    ],
    ids=[
        "unknown-key",
        "wrong-case-key",
        "dry-run-string",
        "dry-run-number",
        "stop-replication-null",
        "reason-number",
        "reason-array",
        "reason-too-long",
        "list",
        "string",
        "null",
        "records-not-list",
        "records-empty",
        "sns-without-message",
        "sns-with-extra-key",
    ],
)
def test_bad_event_fails_naming_the_problem_and_changes_nothing(
    world, invoke, route53_change_calls, capsys, event, named
):
    answer = invoke(event)

    assert answer["status"] == "FAILED", answer
    assert len(answer["errors"]) == 1
    assert answer["errors"][0].startswith("invalid event: ")
    assert named in answer["errors"][0]
    assert answer["weights_before"] == answer["weights_after"] == {}
    assert_nothing_changed(world, route53_change_calls)


@pytest.mark.parametrize("variable", REQUIRED_ENVIRONMENT)
def test_missing_environment_variable_fails_naming_it(
    world, invoke, route53_change_calls, monkeypatch, variable
):
    monkeypatch.delenv(variable)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "FAILED", answer
    assert answer["errors"] == [
        f"invalid configuration: missing environment variable(s) {variable}: the validation "
        "stack sets them on the function; check its configuration"
    ]
    assert_nothing_changed(world, route53_change_calls)


def test_blank_environment_variable_counts_as_missing(world, invoke, monkeypatch):
    monkeypatch.setenv("HOSTED_ZONE_ID", "  ")
    monkeypatch.delenv("SNS_TOPIC_ARN")

    answer = invoke({})

    assert answer["status"] == "FAILED"
    assert "missing environment variable(s) HOSTED_ZONE_ID, SNS_TOPIC_ARN" in answer["errors"][0]


def test_same_set_identifier_for_both_sides_fails(world, invoke, monkeypatch, route53_change_calls):
    monkeypatch.setenv("AWS_SET_IDENTIFIER", ONPREM_SET_IDENTIFIER)

    answer = invoke({})

    assert answer["status"] == "FAILED"
    assert "ONPREM_SET_IDENTIFIER and AWS_SET_IDENTIFIER are both 'onprem'" in answer["errors"][0]
    assert_nothing_changed(world, route53_change_calls)


def test_bad_event_and_missing_environment_are_both_reported(world, invoke, monkeypatch):
    monkeypatch.delenv("DMS_TASK_ARN")

    answer = invoke({"dryrun": True})

    assert answer["status"] == "FAILED"
    assert [error.split(":")[0] for error in answer["errors"]] == [
        "invalid event",
        "invalid configuration",
    ]
    assert "dryrun" in answer["errors"][0]
    assert "DMS_TASK_ARN" in answer["errors"][1]
