"""Typed events and settings of the controller's traffic steps (payment_rollback.traffic).

Events (from the controller's state machines or an operator):
  {"action": "set_weights", "aws_weight": 0..100 | "phase": <phase>, "reason": str}
  {"action": "check_alarms"}
  {"action": "replication_alarms", "running": "forward" | "fallback"}
  {"action": "status"}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from payment_common.errors import ConfigurationError
from payment_rollback.environment import name_list, required
from payment_rollback.errors import InvalidEventError
from payment_rollback.models import json_type

# The cutover phases and the AWS share of traffic each gives. Mirrors lib/config.py's PHASE_WEIGHTS
# (this zip cannot import the project); a test holds the two equal.
PHASE_WEIGHTS = {"legacy-sync": 0, "canary": 10, "split": 50, "aws-primary": 100}
DIRECTIONS = ("forward", "fallback")
MAX_REASON_LENGTH = 1000


@dataclass(frozen=True)
class SetWeights:
    aws_weight: int
    phase: str | None
    reason: str


@dataclass(frozen=True)
class CheckAlarms:
    pass


@dataclass(frozen=True)
class ReplicationAlarms:
    running: str


@dataclass(frozen=True)
class Status:
    pass


TrafficRequest = SetWeights | CheckAlarms | ReplicationAlarms | Status

# For each action, the keys its event may carry besides "action".
ACTION_KEYS: dict[str, tuple[str, ...]] = {
    "set_weights": ("aws_weight", "phase", "reason"),
    "check_alarms": (),
    "replication_alarms": ("running",),
    "status": (),
}


def parse_traffic_event(event: object) -> TrafficRequest:
    """Raises InvalidEventError naming the key that is wrong."""
    if not isinstance(event, dict):
        raise InvalidEventError(
            f"event must be a JSON object with key 'action' ({_one_of(ACTION_KEYS)}), "
            f"got {json_type(event)}"
        )
    if "action" not in event:
        raise InvalidEventError(f"event key 'action' is missing; it must be {_one_of(ACTION_KEYS)}")
    action = event["action"]
    if not isinstance(action, str) or action not in ACTION_KEYS:
        raise InvalidEventError(
            f"event key 'action' must be {_one_of(ACTION_KEYS)}, got {_shown(action)}"
        )
    allowed = ACTION_KEYS[action]
    unknown = sorted(str(key) for key in event if key != "action" and key not in allowed)
    if unknown:
        raise InvalidEventError(
            f"unknown key(s) in {action} event: {', '.join(unknown)}; "
            + (f"allowed keys are action, {', '.join(allowed)}" if allowed else "it takes only 'action'")
        )
    if action == "set_weights":
        return _set_weights(event)
    if action == "replication_alarms":
        running = event.get("running")
        if running not in DIRECTIONS:
            raise InvalidEventError(
                f"event key 'running' must be {_one_of(DIRECTIONS)} (the replication direction "
                f"that runs now), got {_shown(running)}"
            )
        return ReplicationAlarms(running=running)
    return CheckAlarms() if action == "check_alarms" else Status()


def _set_weights(event: dict) -> SetWeights:
    has_weight, has_phase = "aws_weight" in event, "phase" in event
    if has_weight == has_phase:
        raise InvalidEventError(
            "set_weights needs exactly one of event keys 'aws_weight' (0-100) and 'phase' "
            f"({_one_of(PHASE_WEIGHTS)}), got {'both' if has_weight else 'neither'}"
        )
    phase = None
    if has_weight:
        weight = event["aws_weight"]
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise InvalidEventError(
                f"event key 'aws_weight' must be an integer from 0 to 100, got {_shown(weight)}"
            )
    else:
        phase = event["phase"]
        if not isinstance(phase, str) or phase not in PHASE_WEIGHTS:
            raise InvalidEventError(
                f"event key 'phase' must be {_one_of(PHASE_WEIGHTS)}, got {_shown(phase)}"
            )
        weight = PHASE_WEIGHTS[phase]
    reason = event.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidEventError(
            "event key 'reason' must be a non-empty string (it becomes the Route 53 change "
            f"comment), got {_shown(reason)}"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidEventError(
            f"event key 'reason' is {len(reason)} characters long; at most {MAX_REASON_LENGTH}"
        )
    return SetWeights(aws_weight=weight, phase=phase, reason=reason.strip())


@dataclass(frozen=True)
class AlarmSettings:
    """ROLLBACK_ALARM_NAMES (the function's region), HEALTH_ALARM_NAMES (HEALTH_ALARM_REGION)."""

    rollback_alarm_names: tuple[str, ...]
    health_alarm_names: tuple[str, ...]
    health_alarm_region: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> AlarmSettings:
        region = required(environ, ["HEALTH_ALARM_REGION"])["HEALTH_ALARM_REGION"]
        settings = cls(
            rollback_alarm_names=name_list(environ, "ROLLBACK_ALARM_NAMES"),
            health_alarm_names=name_list(environ, "HEALTH_ALARM_NAMES"),
            health_alarm_region=region,
        )
        _disjoint("ROLLBACK_ALARM_NAMES", settings.rollback_alarm_names,
                  "HEALTH_ALARM_NAMES", settings.health_alarm_names)
        return settings


@dataclass(frozen=True)
class ReplicationAlarmSettings:
    """FORWARD_ALARM_NAMES and FALLBACK_ALARM_NAMES, in the function's region."""

    forward_alarm_names: tuple[str, ...]
    fallback_alarm_names: tuple[str, ...]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ReplicationAlarmSettings:
        settings = cls(
            forward_alarm_names=name_list(environ, "FORWARD_ALARM_NAMES"),
            fallback_alarm_names=name_list(environ, "FALLBACK_ALARM_NAMES"),
        )
        _disjoint("FORWARD_ALARM_NAMES", settings.forward_alarm_names,
                  "FALLBACK_ALARM_NAMES", settings.fallback_alarm_names)
        return settings

    def names(self, direction: str) -> tuple[str, ...]:
        return self.forward_alarm_names if direction == "forward" else self.fallback_alarm_names


def writer_parameter(environ: Mapping[str, str]) -> str:
    return required(environ, ["WRITER_PARAMETER"])["WRITER_PARAMETER"]


def _disjoint(first: str, first_names: tuple[str, ...], second: str, second_names: tuple[str, ...]) -> None:
    shared = [name for name in first_names if name in second_names]
    if shared:
        raise ConfigurationError(
            f"{first} and {second} both name {', '.join(shared)}: each alarm belongs to one list"
        )


def _one_of(values) -> str:
    return "one of " + ", ".join(values)


def _shown(value: object) -> str:
    return f"{json_type(value)} {json.dumps(value, default=str)[:50]}"
