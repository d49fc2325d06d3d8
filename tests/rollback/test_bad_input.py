"""Bad events and incomplete environments for the rollback: FAILED, with a message naming the
problem, and nothing changed in Route 53, the writer parameter or SNS. An SNS-shaped event raises
instead of answering, so Lambda retries it and finally dead-letters it."""

from __future__ import annotations

import pytest

from payment_rollback.errors import RollbackIncompleteError
from tests.rollback.world import (
    AWS_SET_IDENTIFIER,
    ONPREM_SET_IDENTIFIER,
    ROLLBACK_ENVIRONMENT,
)


def assert_nothing_changed(world, route53_change_calls):
    assert route53_change_calls == []
    assert world.weights() == {ONPREM_SET_IDENTIFIER: 90, AWS_SET_IDENTIFIER: 10}
    assert world.writer()["writer"] == "onprem"
    assert world.notifications() == []


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"reason": "x", "force": True}, "unknown key(s) in event: force"),
        ({"Reason": "x"}, "unknown key(s) in event: Reason"),
        ({"dry_run": "false"}, "event key 'dry_run' must be a boolean, got string"),
        ({"dry_run": 0}, "event key 'dry_run' must be a boolean, got number"),
        ({"dry_run": None}, "event key 'dry_run' must be a boolean, got null"),
        ({"reason": 42}, "event key 'reason' must be a string, got number"),
        ({"reason": ["a"]}, "event key 'reason' must be a string, got array"),
        ({"reason": "x" * 1001}, "event key 'reason' is 1001 characters long"),
        ([], "event must be a JSON object"),
        ("roll back", "event must be a JSON object"),
        (None, "event must be a JSON object with optional keys reason, dry_run"),
    ],
    ids=[
        "unknown-key",
        "wrong-case-key",
        "dry-run-string",
        "dry-run-number",
        "dry-run-null",
        "reason-number",
        "reason-array",
        "reason-too-long",
        "list",
        "string",
        "null",
    ],
)
def test_bad_event_fails_naming_the_problem_and_changes_nothing(
    world, invoke, route53_change_calls, event, named
):
    answer = invoke(event)

    assert answer["status"] == "FAILED", answer
    assert len(answer["errors"]) == 1
    assert answer["errors"][0].startswith("invalid event: ")
    assert named in answer["errors"][0]
    assert answer["weights_before"] == answer["weights_after"] == {}
    assert answer["writer_before"] is answer["writer_after"] is None
    assert_nothing_changed(world, route53_change_calls)


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"Records": "not a list"}, "'Records' must be a non-empty array"),
        ({"Records": []}, "'Records' must be a non-empty array"),
        ({"Records": [{"Sns": {}}]}, "Records[0].Sns.Message must be a string"),
        ({"Records": [{"Sns": {"Message": "{}"}}], "dry_run": True}, "next to 'Records'"),
    ],
    ids=["records-not-list", "records-empty", "sns-without-message", "sns-with-extra-key"],
)
def test_bad_sns_event_raises_so_that_it_reaches_the_dead_letter_queue(
    world, invoke, route53_change_calls, event, named
):
    with pytest.raises(RollbackIncompleteError, match="rollback FAILED: invalid event: ") as raised:
        invoke(event)

    assert named in str(raised.value)
    assert_nothing_changed(world, route53_change_calls)


@pytest.mark.parametrize("variable", ROLLBACK_ENVIRONMENT)
def test_missing_environment_variable_fails_naming_it(
    world, invoke, route53_change_calls, monkeypatch, variable
):
    monkeypatch.delenv(variable)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "FAILED", answer
    assert answer["errors"] == [
        f"invalid configuration: missing environment variable(s) {variable}: the stack that "
        "deploys this function sets them; check its configuration"
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


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("WRITER_ROLLBACK_WAIT_SECONDS", "two minutes", "WRITER_ROLLBACK_WAIT_SECONDS must be"),
        ("WRITER_ROLLBACK_WAIT_SECONDS", "-1", "from 0 to 900, got '-1'"),
        ("WRITER_ROLLBACK_WAIT_SECONDS", "901", "from 0 to 900, got '901'"),
        ("WRITER_ROLLBACK_WAIT_SECONDS", "nan", "got 'nan'"),
        ("ROLLBACK_STATE_MACHINE_ARN", "payment-rollback", "is not a state machine ARN"),
        (
            "ROLLBACK_STATE_MACHINE_ARN",
            "arn:aws:lambda:eu-west-1:123456789012:function:payment-rollback",
            "is not a state machine ARN",
        ),
        ("ADVANCE_STATE_MACHINE_ARN", "payment-advance-test", "ADVANCE_STATE_MACHINE_ARN 'payment-advance"),
        (
            "CUTOVER_STATE_MACHINE_ARN",
            "arn:aws:states:eu-west-1:123456789012:execution:payment-cutover-test:x",
            "CUTOVER_STATE_MACHINE_ARN 'arn:aws:states:eu-west-1:123456789012:execution:",
        ),
    ],
)
def test_bad_environment_value_fails_naming_it(
    world, invoke, monkeypatch, route53_change_calls, variable, value, named
):
    monkeypatch.setenv(variable, value)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "FAILED", answer
    assert answer["errors"][0].startswith("invalid configuration: ")
    assert named in answer["errors"][0]
    assert_nothing_changed(world, route53_change_calls)


def test_bad_event_and_missing_environment_are_both_reported(world, invoke, monkeypatch):
    monkeypatch.delenv("WRITER_PARAMETER")

    answer = invoke({"dryrun": True})

    assert answer["status"] == "FAILED"
    assert [error.split(":")[0] for error in answer["errors"]] == [
        "invalid event",
        "invalid configuration",
    ]
    assert "dryrun" in answer["errors"][0]
    assert "WRITER_PARAMETER" in answer["errors"][1]
