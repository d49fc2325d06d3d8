"""Typed inputs and outputs of the rollback: what the caller asked for, what the stack configured,
and what happened."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from payment_common.errors import ConfigurationError
from payment_rollback.environment import required
from payment_rollback.errors import IgnoredEvent, InvalidEventError
from payment_rollback.routing import RECORD_ENVIRONMENT, WeightedRecord

DEFAULT_REASON = "no reason given"
MAX_REASON_LENGTH = 1000
DEFAULT_WRITER_ROLLBACK_WAIT_SECONDS = 120
# Lambda's own limit on a function's timeout: a wait beyond it can never be honoured.
MAX_WRITER_ROLLBACK_WAIT_SECONDS = 900

# Keys a direct invocation may carry, with the JSON type each must have.
EVENT_KEYS: dict[str, type] = {"reason": str, "dry_run": bool}

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
    PARTIAL = "PARTIAL"  # traffic is on-prem, but the writer rollback or the notification failed
    # Traffic was moved to on-prem, but no side accepts writes: the writer parameter names a side
    # that is fenced (a cutover that stopped past its fence). Never ROLLED_BACK.
    NO_WRITER = "NO_WRITER"
    FAILED = "FAILED"  # traffic was not shifted
    DRY_RUN = "DRY_RUN"
    IGNORED = "IGNORED"  # an SNS message that is not an alarm going into ALARM


@dataclass(frozen=True)
class RollbackRequest:
    reason: str = DEFAULT_REASON
    dry_run: bool = False
    trigger: str = "direct"  # "direct" or "alarm"


@dataclass(frozen=True)
class Settings:
    """What the stack tells the function through its environment."""

    record: WeightedRecord
    sns_topic_arn: str
    writer_parameter: str
    rollback_state_machine_arn: str
    # The controller's executions a rollback must win over (payment_rollback.preemption).
    advance_state_machine_arn: str
    cutover_state_machine_arn: str
    # The replication tasks whose statuses tell the direction (payment_rollback.writes), by role:
    # forward, forward-cdc (the forward direction after a writer rollback), fallback.
    task_arns: Mapping[str, str] = field(default_factory=dict)
    # Where the cutover controller's publish_metrics step puts each side's Fenced measurement.
    metrics_namespace: str = "PaymentMigration"
    # The bound of all the rollback's waiting: for a cutover in flight, then the writer rollback.
    writer_rollback_wait_seconds: float = DEFAULT_WRITER_ROLLBACK_WAIT_SECONDS

    STATE_MACHINES = ("ROLLBACK_STATE_MACHINE_ARN", "ADVANCE_STATE_MACHINE_ARN", "CUTOVER_STATE_MACHINE_ARN")
    TASKS = {"forward": "DMS_FORWARD_TASK_ARN", "forward-cdc": "DMS_FORWARD_CDC_TASK_ARN",
             "fallback": "DMS_FALLBACK_TASK_ARN"}
    REQUIRED = (*RECORD_ENVIRONMENT, "SNS_TOPIC_ARN", "WRITER_PARAMETER", *STATE_MACHINES, *TASKS.values(),
                "FENCE_METRICS_NAMESPACE")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        values = required(environ, cls.REQUIRED)
        for name in cls.STATE_MACHINES:
            arn = values[name]
            if ":states:" not in arn or ":stateMachine:" not in arn:
                raise ConfigurationError(
                    f"{name} {arn!r} is not a state machine ARN "
                    "(arn:<partition>:states:<region>:<account>:stateMachine:<name>)"
                )
        for name in cls.TASKS.values():
            arn = values[name]
            if ":dms:" not in arn or ":task:" not in arn:
                raise ConfigurationError(
                    f"{name} {arn!r} is not a DMS replication task ARN "
                    "(arn:<partition>:dms:<region>:<account>:task:<id>)"
                )
        return cls(
            record=WeightedRecord.from_environment(environ),
            sns_topic_arn=values["SNS_TOPIC_ARN"],
            writer_parameter=values["WRITER_PARAMETER"],
            rollback_state_machine_arn=values["ROLLBACK_STATE_MACHINE_ARN"],
            advance_state_machine_arn=values["ADVANCE_STATE_MACHINE_ARN"],
            cutover_state_machine_arn=values["CUTOVER_STATE_MACHINE_ARN"],
            task_arns={role: values[name] for role, name in cls.TASKS.items()},
            metrics_namespace=values["FENCE_METRICS_NAMESPACE"],
            writer_rollback_wait_seconds=_wait_seconds(environ),
        )


def _wait_seconds(environ: Mapping[str, str]) -> float:
    name = "WRITER_ROLLBACK_WAIT_SECONDS"
    text = environ.get(name, "").strip()
    if not text:
        return DEFAULT_WRITER_ROLLBACK_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WRITER_ROLLBACK_WAIT_SECONDS:
        raise ConfigurationError(
            f"{name} must be a number of seconds from 0 to {MAX_WRITER_ROLLBACK_WAIT_SECONDS}, "
            f"got {text!r}"
        )
    return seconds


@dataclass
class RollbackResult:
    """The function's answer. `weights_*` are keyed by role ("onprem", "aws"); for DRY_RUN,
    `weights_after` holds the weights the rollback would set. `writer_*` are writer documents
    ({"writer", "epoch", "changed_at", "reason"}) or None when unknown; `writer_rollback` is
    {"execution_arn", "status"} when the writer was aws (status None: no execution yet).
    `controller` says what became of the controller's executions in flight: {"advance_stopped",
    "advance_left_running": [ARN], "cutover": {"execution_arn", "status", "waited_seconds"} or
    None} (for a dry run: what would be stopped, the cutover as found). `writes` is what was seen of
    the on-prem writer when the writer parameter named it (payment_rollback.writes): {"verdict":
    "open"|"fenced"|"unknown", "fences": {side: {"state", "measured_at"}}, "replication": {task role:
    DMS status} or None}; None when not looked at."""

    status: Status
    reason: str = DEFAULT_REASON
    dry_run: bool = False
    weights_before: dict[str, int] = field(default_factory=dict)
    weights_after: dict[str, int] = field(default_factory=dict)
    change_id: str | None = None
    planned_change: dict[str, Any] | None = None
    writer_before: dict[str, Any] | None = None
    writer_after: dict[str, Any] | None = None
    writer_rollback: dict[str, str | None] | None = None
    controller: dict[str, Any] | None = None
    writes: dict[str, Any] | None = None
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def traffic_shifted(self) -> bool:
        """Whether this invocation moved traffic (ROLLED_BACK, or PARTIAL or NO_WRITER after a shift)."""
        return (
            self.status in (Status.ROLLED_BACK, Status.PARTIAL, Status.NO_WRITER)
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
            "writer_before": self.writer_before,
            "writer_after": self.writer_after,
            "writer_rollback": self.writer_rollback,
            "controller": self.controller,
            "writes": self.writes,
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
            f"got {json_type(event)}"
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
                f"got {json_type(event[key])} {json.dumps(event[key])[:50]}"
            )
    reason = event.get("reason", "").strip() or DEFAULT_REASON
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidEventError(
            f"event key 'reason' is {len(reason)} characters long; at most {MAX_REASON_LENGTH}"
        )
    return RollbackRequest(
        reason=reason,
        dry_run=event.get("dry_run", False),
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
            f"got {json_type(records)}"
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


def is_sns_delivery(event: object) -> bool:
    """Whether the event came (or claims to come) from SNS: such an invocation is asynchronous,
    and only an error makes Lambda retry it and finally send it to the dead-letter queue."""
    return isinstance(event, dict) and "Records" in event


def _allowed_keys() -> str:
    return ", ".join(EVENT_KEYS)


def json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
