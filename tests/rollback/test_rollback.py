"""The rollback handler end to end, against moto in server mode over HTTP. Outcomes are checked in
Route 53, DMS and the topic's subscriber queue themselves, not only in the handler's answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.rollback.world import (
    AWS_SET_IDENTIFIER,
    ONPREM_SET_IDENTIFIER,
    RECORD_NAME,
    build_world,
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


def test_rolls_back_both_members_in_one_change_and_stops_forward_replication(
    world, invoke, route53_change_calls, capsys
):
    members_before = world.members()

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
        ), f"{identifier}: target, TTL or health check changed"
    assert "AliasTarget" in members_after[AWS_SET_IDENTIFIER]
    assert members_after[ONPREM_SET_IDENTIFIER]["HealthCheckId"] == world.onprem_health_check_id
    assert members_after[AWS_SET_IDENTIFIER]["HealthCheckId"] == world.aws_health_check_id

    assert answer["change_id"]
    change = world.route53.get_change(Id=answer["change_id"])["ChangeInfo"]
    assert change["Id"].endswith(answer["change_id"])

    assert world.task_status(world.forward_task_arn) == "stopped"
    assert answer["replication"]["forward_task"] == {
        "arn": world.forward_task_arn,
        "status_before": "running",
        "status_after": "stopped",
    }
    assert answer["replication"]["fallback_task"] == {
        "arn": world.fallback_task_arn,
        "status": world.task_status(world.fallback_task_arn),
    }
    assert world.task_status(world.fallback_task_arn) != "running", "fallback must not be started"

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
    assert world.task_status(world.forward_task_arn) == "stopped"
    assert second["replication"]["forward_task"]["status_before"] == "stopped"
    assert second["replication"]["forward_task"]["status_after"] == "stopped"
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "ALREADY_ROLLED_BACK"


def test_already_rolled_back_still_stops_a_running_forward_task(
    world, invoke, route53_change_calls
):
    # A PARTIAL rollback left replication running: re-invoking finishes the job.
    world.set_weights(onprem=100, aws=0)

    answer = invoke({})

    assert answer["status"] == "ALREADY_ROLLED_BACK", answer
    assert route53_change_calls == []
    assert world.task_status(world.forward_task_arn) == "stopped"
    assert answer["replication"]["forward_task"]["status_before"] == "running"


@pytest.mark.parametrize("task_state", ["stopped", "never started"])
def test_forward_task_not_running_is_still_rolled_back(aws, monkeypatch, invoke, task_state):
    world = build_world(start_forward_task=False)
    for name, value in world.environment().items():
        monkeypatch.setenv(name, value)
    if task_state == "stopped":
        world.start_forward_task()
        world.dms.stop_replication_task(ReplicationTaskArn=world.forward_task_arn)
    status_before = world.task_status(world.forward_task_arn)

    answer = invoke({"reason": "drill"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["errors"] == []
    assert world.weights() == ROLLED_BACK
    assert world.task_status(world.forward_task_arn) == status_before
    assert answer["replication"]["forward_task"]["status_before"] == status_before
    assert f"DMS: forward task is {status_before}; nothing to stop" in answer["actions"]


def test_stop_replication_false_leaves_forward_task_running(world, invoke):
    answer = invoke({"reason": "traffic only", "stop_replication": False})

    assert answer["status"] == "ROLLED_BACK", answer
    assert world.weights() == ROLLED_BACK
    assert world.task_status(world.forward_task_arn) == "running"
    assert "DMS: forward task left running (stop_replication is false)" in answer["actions"]


def test_missing_topic_is_partial_with_traffic_shifted(world, invoke, monkeypatch, capsys):
    missing_topic = world.topic_arn + "-deleted"
    monkeypatch.setenv("SNS_TOPIC_ARN", missing_topic)

    answer = invoke({"reason": "alarm storm"})

    assert answer["status"] == "PARTIAL", answer
    assert world.weights() == ROLLED_BACK, "traffic must stay shifted when notifying fails"
    assert answer["weights_after"] == {"onprem": 100, "aws": 0}
    assert answer["change_id"]
    assert world.task_status(world.forward_task_arn) == "stopped"
    assert len(answer["errors"]) == 1
    assert answer["errors"][0].startswith(f"SNS: could not notify {missing_topic}")
    assert "NotFound" in answer["errors"][0]
    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["Status"] == "PARTIAL"
    assert document["TrafficShifted"] == [1.0]


def test_missing_forward_task_is_partial_with_traffic_shifted(world, invoke, monkeypatch):
    missing_task = world.forward_task_arn + "-gone"
    monkeypatch.setenv("DMS_TASK_ARN", missing_task)

    answer = invoke({})

    assert answer["status"] == "PARTIAL", answer
    assert world.weights() == ROLLED_BACK
    assert answer["errors"] == [f"DMS: forward task {missing_task} not found; check DMS_TASK_ARN"]
    (notification,) = world.notifications()
    assert json.loads(notification["Message"])["status"] == "PARTIAL"


@pytest.mark.parametrize(
    ("breakage", "expected_error"),
    [
        ("aws member deleted", f"no member with set identifier '{AWS_SET_IDENTIFIER}'"),
        ("wrong set identifier", "no member with set identifier 'onprem-typo'"),
        ("wrong record name", "(found: no record at all)"),
        ("wrong hosted zone", "NoSuchHostedZone"),
    ],
)
def test_record_set_missing_fails_and_leaves_replication_alone(
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
    assert world.task_status(world.forward_task_arn) == "running", "DMS task must be untouched"
    assert answer["replication"] == {}
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
    assert world.task_status(world.forward_task_arn) == "running"


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
    assert world.task_status(world.forward_task_arn) == "stopped"
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
    assert world.task_status(world.forward_task_arn) == "running"
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
    assert "DMS: would stop forward task (running)" in answer["actions"]

    assert route53_change_calls == []
    assert world.members() == members_before
    assert world.task_status(world.forward_task_arn) == "running"
    assert world.notifications() == []
    (document,) = emitted_metrics(capsys.readouterr().out)
    assert document["Status"] == "DRY_RUN"
    assert document["TrafficShifted"] == [0.0]


def test_dry_run_when_already_rolled_back(world, invoke):
    world.set_weights(onprem=100, aws=0)

    answer = invoke({"dry_run": True})

    assert answer["status"] == "DRY_RUN", answer
    assert "planned_change" not in answer
    assert world.task_status(world.forward_task_arn) == "running"


def test_plain_a_record_aws_member_keeps_its_records_and_ttl(aws, monkeypatch, invoke):
    world = build_world(aws_member="records", onprem_weight=0, aws_weight=100)
    for name, value in world.environment().items():
        monkeypatch.setenv(name, value)
    members_before = world.members()

    answer = invoke({"reason": "full cutover went wrong"})

    assert answer["status"] == "ROLLED_BACK", answer
    assert answer["weights_before"] == {"onprem": 0, "aws": 100}
    assert world.weights() == ROLLED_BACK
    aws_member = world.members()[AWS_SET_IDENTIFIER]
    assert without_weight(aws_member) == without_weight(members_before[AWS_SET_IDENTIFIER])
    assert aws_member["TTL"] == 60
    assert aws_member["ResourceRecords"] == [{"Value": "198.51.100.20"}]


def test_without_fallback_task_reports_no_fallback(world, invoke, monkeypatch):
    monkeypatch.delenv("FALLBACK_TASK_ARN")

    answer = invoke({})

    assert answer["status"] == "ROLLED_BACK", answer
    assert set(answer["replication"]) == {"forward_task"}
