"""Typed inputs and outputs of the rollback: what the caller asked for, what the stack configured,
and what happened."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from payment_rollback.errors import ConfigurationError, IgnoredEvent, InvalidEventError

DEFAULT_REASON = "no reason given"
MAX_REASON_LENGTH = 1000

# Keys a direct invocation may carry, with the JSON type each must have.
EVENT_KEYS: dict[str, type] = {"reason": str, "dry_run": bool, "stop_replication": bool}

_JSON_TYPE_NAMES = {
    bool: "boolean",
    str: "string",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}


class Status(StrEnum):
    ROLLED_BACK = "ROLLED_BACK"
    ALREADY_ROLLED_BACK = "ALREADY_ROLLED_BACK"
    PARTIAL = "PARTIAL"  # traffic is on-prem, but a follow-up (DMS, notification) failed
    FAILED = "FAILED"  # traffic was not shifted
    DRY_RUN = "DRY_RUN"
    IGNORED = "IGNORED"  # an SNS message that is not an alarm going into ALARM


@dataclass(frozen=True)
class RollbackRequest:
    reason: str = DEFAULT_REASON
    dry_run: bool = False
    stop_replication: bool = True
    trigger: str = "direct"  # "direct" or "alarm"


@dataclass(frozen=True)
class Settings:
    """What the stack tells the function through its environment."""

    hosted_zone_id: str
    record_name: str
    record_type: str
    onprem_set_identifier: str
    aws_set_identifier: str
    dms_task_arn: str
    sns_topic_arn: str
    fallback_task_arn: str | None = None

    REQUIRED = (
        "HOSTED_ZONE_ID",
        "RECORD_NAME",
        "RECORD_TYPE",
        "ONPREM_SET_IDENTIFIER",
        "AWS_SET_IDENTIFIER",
        "DMS_TASK_ARN",
        "SNS_TOPIC_ARN",
    )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        values = {name: environ.get(name, "").strip() for name in cls.REQUIRED}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigurationError(
                f"missing environment variable(s) {', '.join(missing)}: the validation stack sets "
                "them on the function; check its configuration"
            )
        if values["ONPREM_SET_IDENTIFIER"] == values["AWS_SET_IDENTIFIER"]:
            raise ConfigurationError(
                "ONPREM_SET_IDENTIFIER and AWS_SET_IDENTIFIER are both "
                f"{values['ONPREM_SET_IDENTIFIER']!r}: they must name the two different members "
                "of the weighted record set"
            )
        return cls(
            # Route 53 hands out zone ids both bare and as "/hostedzone/<id>"; the API takes both,
            # but messages and comparisons read better with one form.
            hosted_zone_id=values["HOSTED_ZONE_ID"].removeprefix("/hostedzone/"),
            record_name=values["RECORD_NAME"],
            record_type=values["RECORD_TYPE"].upper(),
            onprem_set_identifier=values["ONPREM_SET_IDENTIFIER"],
            aws_set_identifier=values["AWS_SET_IDENTIFIER"],
            dms_task_arn=values["DMS_TASK_ARN"],
            sns_topic_arn=values["SNS_TOPIC_ARN"],
            fallback_task_arn=environ.get("FALLBACK_TASK_ARN", "").strip() or None,
        )


@dataclass
class RollbackResult:
    """The function's answer. `weights_*` are keyed by role ("onprem", "aws"); for DRY_RUN,
    `weights_after` holds the weights the rollback would set."""

    status: Status
    reason: str = DEFAULT_REASON
    dry_run: bool = False
    weights_before: dict[str, int] = field(default_factory=dict)
    weights_after: dict[str, int] = field(default_factory=dict)
    change_id: str | None = None
    planned_change: dict[str, Any] | None = None
    replication: dict[str, dict[str, str | None]] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def traffic_shifted(self) -> bool:
        """Whether this invocation moved traffic (ROLLED_BACK, or PARTIAL after a shift)."""
        return (
            self.status in (Status.ROLLED_BACK, Status.PARTIAL)
            and bool(self.weights_after)
            and self.weights_before != self.weights_after
        )

    def to_dict(self) -> dict[str, Any]:
        response: dict[str, Any] = {
            "status": self.status.value,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "weights_before": dict(self.weights_before),
            "weights_after": dict(self.weights_after),
            "change_id": self.change_id,
            "replication": {role: dict(task) for role, task in self.replication.items()},
            "actions": list(self.actions),
            "errors": list(self.errors),
        }
        if self.planned_change is not None:
            response["planned_change"] = self.planned_change
        return response


def parse_event(event: object) -> RollbackRequest:
    """A direct invocation payload, or an SNS delivery of a CloudWatch alarm notification.

    Raises InvalidEventError for anything else, and IgnoredEvent for SNS messages that must not
    roll back (alarm state OK / INSUFFICIENT_DATA, or any non-alarm message such as this
    function's own notification when it publishes to the topic it is subscribed to).
    """
    if not isinstance(event, dict):
        raise InvalidEventError(
            f"event must be a JSON object with optional keys {_allowed_keys()}, "
            f"got {_json_type(event)}"
        )
    if "Records" in event:
        return _parse_sns_event(event)

    unknown = sorted(str(key) for key in event if key not in EVENT_KEYS)
    if unknown:
        raise InvalidEventError(
            f"unknown key(s) in event: {', '.join(unknown)}; allowed keys are {_allowed_keys()}"
        )
    for key, expected in EVENT_KEYS.items():
        if key in event and not isinstance(event[key], expected):
            raise InvalidEventError(
                f"event key {key!r} must be a {_JSON_TYPE_NAMES[expected]}, "
                f"got {_json_type(event[key])} {json.dumps(event[key])[:50]}"
            )
    reason = event.get("reason", "").strip() or DEFAULT_REASON
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidEventError(
            f"event key 'reason' is {len(reason)} characters long; at most {MAX_REASON_LENGTH}"
        )
    return RollbackRequest(
        reason=reason,
        dry_run=event.get("dry_run", False),
        stop_replication=event.get("stop_replication", True),
    )


def _parse_sns_event(event: dict[str, Any]) -> RollbackRequest:
    extra = sorted(str(key) for key in event if key != "Records")
    if extra:
        raise InvalidEventError(
            f"unknown key(s) next to 'Records' in SNS event: {', '.join(extra)}"
        )
    records = event["Records"]
    if not isinstance(records, list) or not records:
        raise InvalidEventError(
            f"event key 'Records' must be a non-empty array of SNS records, "
            f"got {_json_type(records)}"
        )
    alarm_names: list[str] = []
    skipped: list[str] = []
    for index, record in enumerate(records):
        sns = record.get("Sns") if isinstance(record, dict) else None
        message = sns.get("Message") if isinstance(sns, dict) else None
        if not isinstance(message, str):
            raise InvalidEventError(
                f"Records[{index}].Sns.Message must be a string (the SNS message body)"
            )
        try:
            alarm = json.loads(message)
        except ValueError:
            alarm = None
        if not isinstance(alarm, dict) or not isinstance(alarm.get("AlarmName"), str):
            skipped.append(f"Records[{index}] is not a CloudWatch alarm notification")
        elif alarm.get("NewStateValue") != "ALARM":
            skipped.append(
                f"alarm {alarm['AlarmName']!r} changed to {alarm.get('NewStateValue')}, not ALARM"
            )
        else:
            alarm_names.append(alarm["AlarmName"])
    if not alarm_names:
        raise IgnoredEvent("; ".join(skipped))
    return RollbackRequest(reason=", ".join(alarm_names)[:MAX_REASON_LENGTH], trigger="alarm")


def _allowed_keys() -> str:
    return ", ".join(EVENT_KEYS)


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
