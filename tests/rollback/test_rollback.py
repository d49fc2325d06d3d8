"""The rollback handler end to end, against moto in server mode over HTTP, with the writer on-prem
(before the data cutover: the rollback is DNS only). Outcomes are checked in Route 53, the writer
parameter and the topic's subscriber queue themselves, not only in the handler's answer. The
writer-is-AWS path is in test_writer_rollback.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from payment_rollback.errors import RollbackIncompleteError
from tests.rollback.world import (
    AWS_ADDRESSES,
    AWS_SET_IDENTIFIER,
    ONPREM_SET_IDENTIFIER,
    RECORD_NAME,
    TTL,
    World,
)

ROLLED_BACK = {ONPREM_SET_IDENTIFIER: 100, AWS_SET_IDENTIFIER: 0}
BEFORE = {ONPREM_SET_IDENTIFIER: 90, AWS_SET_IDENTIFIER: 10}


def emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed."""
    documents = []
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def without_weight(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "Weight"}


def test_rolls_back_both_members_in_one_change_and_leaves_the_onprem_writer_alone(
    world, invoke, route53_change_calls, start_execution_calls, capsys
):
    members_before = world.members()
    writer_before = world.writer()

    answer = invoke({"reason": "payment errors after phase 2"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["errors"] == []
    assert answer["reason"] == "payment errors after phase 2"
    assert answer["weights_before"] == {"onprem": 90, "aws": 10}
    assert answer["weights_after"] == {"onprem": 100, "aws": 0}
    assert world.weights() == ROLLED_BACK, "Route 53 does not show the rollback weights"

    assert len(route53_change_calls) == 1, "the shift must be one ChangeBatch"
    changes = route53_change_calls[0]["ChangeBatch"]["Changes"]
    assert [(c["Action"], c["ResourceRecordSet"]["SetIdentifier"]) for c in changes] == [
        ("UPSERT", ONPREM_SET_IDENTIFIER),
        ("UPSERT", AWS_SET_IDENTIFIER),
    ]
    members_after = world.members()
    for identifier in (ONPREM_SET_IDENTIFIER, AWS_SET_IDENTIFIER):
        assert without_weight(members_after[identifier]) == without_weight(
            members_before[identifier]
        ), f"{identifier}: target, TTL or alias settings changed"
    assert "AliasTarget" in members_after[AWS_SET_IDENTIFIER]
    assert all("HealthCheckId" not in member for member in members_after.values())

    assert answer["change_id"]
    change = world.route53.get_change(Id=answer["change_id"])["ChangeInfo"]
    assert change["Id"].endswith(answer["change_id"])

    # Before the data cutover the rollback is DNS only: no writer rollback, no replication change.
    assert answer["writer_before"] == answer["writer_after"] == writer_before
    assert answer["writer_rollback"] is None
    assert start_execution_calls == []
    assert world.writer() == writer_before
    assert any("the rollback is DNS only and forward replication keeps running" in action
               for action in answer["actions"]), answer["actions"]
    assert "replication" not in answer

    notifications = world.notifications()
    assert len(notifications) == 1
    assert notifications[0]["Subject"] == f"Payment rollback ROLLED_BACK: {RECORD_NAME}"
    published = json.loads(notifications[0]["Message"])
    assert published["status"] == "ROLLED_BACK"
    assert published["reason"] == "payment errors after phase 2"
    assert published["weights_after"] == {"onprem": 100, "aws": 0}
    assert published["trigger"] == "direct"

    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PaymentMigration"
    assert document["service"] == "rollback"
    assert document["Status"] == "ROLLED_BACK"
    assert document["RollbackInvocations"] == [1.0]
    assert document["TrafficShifted"] == [1.0]


def test_second_invoke_changes_nothing(world, invoke, route53_change_calls):
    first = invoke({"reason": "first"})
    assert first["status"] == "ROLLED_BACK", first
    members_after_first = world.members()
    world.notifications()

    second = invoke({"reason": "second"})

    assert second["status"] == "ALREADY_ROLLED_BACK", second
    assert second["errors"] == []
    assert second["change_id"] is None
    assert second["weights_before"] == second["weights_after"] == {"onprem": 100, "aws": 0}
    assert len(route53_change_calls) == 1, "the second invoke submitted a Route 53 change"
    assert world.members() == members_after_first
    assert second["writer_before"] == second["writer_after"] == first["writer_after"]
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "ALREADY_ROLLED_BACK"


def test_missing_topic_is_partial_with_traffic_shifted(world, invoke, monkeypatch, capsys):
    missing_topic = world.topic_arn + "-deleted"
    monkeypatch.setenv("SNS_TOPIC_ARN", missing_topic)

    answer = invoke({"reason": "alarm storm"})

    assert answer["status"] == "PARTIAL", answer
    assert world.weights() == ROLLED_BACK, "traffic must stay shifted when notifying fails"
    assert answer["weights_after"] == {"onprem": 100, "aws": 0}
    assert answer["change_id"]
    assert len(answer["errors"]) == 1
    assert answer["errors"][0].startswith(f"SNS: could not notify {missing_topic}")
    assert "NotFound" in answer["errors"][0]
    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["Status"] == "PARTIAL"
    assert document["TrafficShifted"] == [1.0]


@pytest.mark.parametrize(
    ("breakage", "expected_error"),
    [
        ("aws member deleted", f"no member with set identifier '{AWS_SET_IDENTIFIER}'"),
        ("wrong set identifier", "no member with set identifier 'onprem-typo'"),
        ("wrong record name", "(found: no record at all)"),
        ("wrong hosted zone", "NoSuchHostedZone"),
    ],
)
def test_record_set_missing_fails_and_leaves_the_writer_alone(
    world, invoke, monkeypatch, route53_change_calls, breakage, expected_error
):
    if breakage == "aws member deleted":
        world.delete_member(AWS_SET_IDENTIFIER)
    elif breakage == "wrong set identifier":
        monkeypatch.setenv("ONPREM_SET_IDENTIFIER", "onprem-typo")
    elif breakage == "wrong record name":
        monkeypatch.setenv("RECORD_NAME", "checkout." + RECORD_NAME)
    else:
        monkeypatch.setenv("HOSTED_ZONE_ID", "Z0000000000000000000")
    weights_before = world.weights()

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "FAILED", answer
    assert len(answer["errors"]) == 1
    assert answer["errors"][0].startswith("Route 53: ")
    assert expected_error in answer["errors"][0]
    assert answer["change_id"] is None
    assert route53_change_calls == []
    assert world.weights() == weights_before
    assert answer["writer_before"] is None, "the writer is not even read when traffic stays"
    assert answer["writer_rollback"] is None
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "FAILED"


def test_record_set_that_is_not_weighted_fails(world, invoke, monkeypatch, route53_change_calls):
    failover_name = "failover." + RECORD_NAME
    world.route53.change_resource_record_sets(
        HostedZoneId=world.zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": failover_name,
                        "Type": "A",
                        "SetIdentifier": identifier,
                        "Failover": role,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": address}],
                    },
                }
                for identifier, role, address in (
                    (ONPREM_SET_IDENTIFIER, "PRIMARY", "192.0.2.10"),
                    (AWS_SET_IDENTIFIER, "SECONDARY", "198.51.100.20"),
                )
            ]
        },
    )
    monkeypatch.setenv("RECORD_NAME", failover_name)

    answer = invoke({})

    assert answer["status"] == "FAILED", answer
    assert f"member '{ONPREM_SET_IDENTIFIER}' of {failover_name} A" in answer["errors"][0]
    assert "not a weighted record" in answer["errors"][0]
    assert route53_change_calls == []


def alarm_event(message: dict | str) -> dict:
    body = message if isinstance(message, str) else json.dumps(message)
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:eu-west-1:123456789012:alarms:1",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms",
                    "Subject": "ALARM: payments-alb-5xx",
                    "Message": body,
                    "Timestamp": "2026-01-01T03:00:00.000Z",
                },
            }
        ]
    }


def cloudwatch_alarm(name: str, state: str) -> dict:
    return {
        "AlarmName": name,
        "AlarmDescription": "ALB 5xx above threshold",
        "AWSAccountId": "123456789012",
        "NewStateValue": state,
        "NewStateReason": "Threshold Crossed: 1 datapoint [12.0] was greater than 5.0",
        "StateChangeTime": "2026-01-01T03:00:00.000+0000",
        "Region": "EU (Ireland)",
        "OldStateValue": "OK",
        "Trigger": {"MetricName": "HTTPCode_Target_5XX_Count", "Namespace": "AWS/ApplicationELB"},
    }


def test_sns_alarm_notification_rolls_back_with_alarm_name_as_reason(world, invoke):
    answer = invoke(alarm_event(cloudwatch_alarm("payments-alb-5xx-dev", "ALARM")))

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["reason"] == "payments-alb-5xx-dev"
    assert world.weights() == ROLLED_BACK
    (notification,) = world.notifications()
    published = json.loads(notification["Message"])
    assert published["reason"] == "payments-alb-5xx-dev"
    assert published["trigger"] == "alarm"


@pytest.mark.parametrize(
    "message",
    [
        cloudwatch_alarm("payments-alb-5xx-dev", "OK"),
        cloudwatch_alarm("payments-alb-5xx-dev", "INSUFFICIENT_DATA"),
        "plain text someone published to the alarm topic",
    ],
    ids=["ok-transition", "insufficient-data", "not-an-alarm"],
)
def test_sns_message_that_is_not_an_alarm_firing_is_ignored(
    world, invoke, route53_change_calls, message
):
    answer = invoke(alarm_event(message))

    assert answer["status"] == "IGNORED", answer
    assert answer["errors"] == []
    assert route53_change_calls == []
    assert world.weights() == BEFORE
    assert world.notifications() == []


def test_own_notification_coming_back_through_the_topic_does_not_loop(
    world, invoke, route53_change_calls
):
    invoke({"reason": "first"})
    (notification,) = world.notifications()

    answer = invoke(alarm_event(notification["Message"]))

    assert answer["status"] == "IGNORED", answer
    assert len(route53_change_calls) == 1
    assert world.notifications() == [], "the function notified about its own notification"


def test_dry_run_reports_the_change_and_changes_nothing(
    world, invoke, route53_change_calls, capsys
):
    members_before = world.members()

    answer = invoke({"reason": "rehearsal", "dry_run": True})

    assert answer["status"] == "DRY_RUN", answer
    assert answer["dry_run"] is True
    assert answer["errors"] == []
    assert answer["weights_before"] == {"onprem": 90, "aws": 10}
    assert answer["weights_after"] == {"onprem": 100, "aws": 0}, "the weights it would set"
    assert answer["change_id"] is None
    planned = answer["planned_change"]["Changes"]
    assert [c["ResourceRecordSet"]["Weight"] for c in planned] == [100, 0]
    assert [without_weight(c["ResourceRecordSet"]) for c in planned] == [
        without_weight(members_before[ONPREM_SET_IDENTIFIER]),
        without_weight(members_before[AWS_SET_IDENTIFIER]),
    ]
    assert answer["writer_before"]["writer"] == "onprem"

    assert route53_change_calls == []
    assert world.members() == members_before
    assert world.notifications() == []
    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["Status"] == "DRY_RUN"
    assert document["TrafficShifted"] == [0.0]


def test_dry_run_when_already_rolled_back(world, invoke):
    world.set_weights(onprem=100, aws=0)

    answer = invoke({"dry_run": True})

    assert answer["status"] == "DRY_RUN", answer
    assert "planned_change" not in answer


@pytest.fixture
def world_with_plain_aws_records(world: World) -> World:
    """The AWS member as plain A records instead of the alias to the load balancer, all traffic on it."""
    world.route53.change_resource_record_sets(HostedZoneId=world.zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT",
        "ResourceRecordSet": {"Name": RECORD_NAME, "Type": "A", "SetIdentifier": AWS_SET_IDENTIFIER, "Weight": 100,
                              "TTL": TTL, "ResourceRecords": [{"Value": a} for a in AWS_ADDRESSES]}}]})
    world.set_weights(onprem=0, aws=100)
    return world


def test_plain_a_record_aws_member_keeps_its_records_and_ttl(world_with_plain_aws_records, invoke):
    world = world_with_plain_aws_records
    members_before = world.members()

    answer = invoke({"reason": "full cutover went wrong"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["weights_before"] == {"onprem": 0, "aws": 100}
    assert world.weights() == ROLLED_BACK
    aws_member = world.members()[AWS_SET_IDENTIFIER]
    assert without_weight(aws_member) == without_weight(members_before[AWS_SET_IDENTIFIER])
    assert aws_member["TTL"] == 60
    assert aws_member["ResourceRecords"] == [{"Value": "198.51.100.20"}]


@pytest.mark.parametrize(
    ("breakage", "expected_error"),
    [
        ("missing", "writer: writer parameter /payment-migration/test/writer does not exist: "
                    "check WRITER_PARAMETER"),
        ("not json", "is not JSON"),
        ("unknown writer", "key 'writer' must be one of onprem, aws, got 'both'"),
        ("bad epoch", "key 'epoch' must be a non-negative integer, got -1"),
    ],
)
def test_unreadable_writer_is_partial_with_traffic_shifted(
    world, invoke, start_execution_calls, breakage, expected_error
):
    parameter = world.environment()["WRITER_PARAMETER"]
    if breakage == "missing":
        world.ssm.delete_parameter(Name=parameter)
    else:
        value = {"not json": "aws", "unknown writer": '{"writer": "both", "epoch": 1}',
                 "bad epoch": '{"writer": "aws", "epoch": -1}'}[breakage]
        world.ssm.put_parameter(Name=parameter, Value=value, Type="String", Overwrite=True)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "PARTIAL", answer
    assert world.weights() == ROLLED_BACK, "traffic stays on-prem whatever the writer says"
    (error,) = answer["errors"]
    assert error.startswith("writer: ") and expected_error in error, error
    assert answer["writer_before"] is None
    assert start_execution_calls == [], "an unknown writer is never rolled back on a guess"
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "PARTIAL"


def test_sns_triggered_partial_raises_after_notifying(world, invoke, monkeypatch, capsys):
    world.ssm.delete_parameter(Name=world.environment()["WRITER_PARAMETER"])

    with pytest.raises(RollbackIncompleteError) as raised:
        invoke(alarm_event(cloudwatch_alarm("payments-alb-5xx-dev", "ALARM")))

    message = str(raised.value)
    assert message.startswith("rollback PARTIAL: writer: writer parameter")
    assert "weights {'onprem': 100, 'aws': 0}, writer unknown" in message
    assert world.weights() == ROLLED_BACK
    (notification,) = world.notifications()
    published = json.loads(notification["Message"])
    assert (published["status"], published["trigger"]) == ("PARTIAL", "alarm")
    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["Status"] == "PARTIAL", "metrics must be flushed although the handler raised"
    assert document["TrafficShifted"] == [1.0]


def test_sns_triggered_failed_raises_and_direct_failed_returns(world, invoke, monkeypatch):
    world.delete_member(AWS_SET_IDENTIFIER)

    direct = invoke({"reason": "drill"})
    assert direct["status"] == "FAILED", direct
    world.notifications()

    with pytest.raises(RollbackIncompleteError, match="rollback FAILED: Route 53: "):
        invoke(alarm_event(cloudwatch_alarm("payments-alb-5xx-dev", "ALARM")))
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "FAILED"
