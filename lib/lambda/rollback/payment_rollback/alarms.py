"""CloudWatch alarms the controller watches (rollback and health alarms) and the replication alarms
whose actions follow the running direction.

Fail safe: an alarm named in the environment that does not exist is an error, never a quiet "not
in alarm" — a renamed alarm would otherwise turn a bake into a bake that watches nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable
from payment_rollback.errors import AlarmNotFoundError, describe_error

ALARM = "ALARM"
# DescribeAlarms, EnableAlarmActions and DisableAlarmActions take at most 100 names per call.
_NAMES_PER_CALL = 100
# Without AlarmTypes, DescribeAlarms returns metric alarms only, and a composite alarm (such as
# "cutover unhealthy") would look missing.
_ALARM_TYPES = ["CompositeAlarm", "MetricAlarm"]


@dataclass(frozen=True)
class AlarmGroup:
    """Alarm names read from one environment variable, in the region of one CloudWatch client."""

    cloudwatch: Any
    names: tuple[str, ...]
    variable: str

    @property
    def region(self) -> str:
        return self.cloudwatch.meta.region_name


@dataclass(frozen=True)
class Alarm:
    name: str
    state: str
    actions_enabled: bool


def describe_alarms(groups: Sequence[AlarmGroup]) -> dict[str, Alarm]:
    """Every named alarm of every group, by name. Raises AlarmNotFoundError naming every missing
    alarm (with its region and variable) after looking in all groups."""
    found: dict[str, Alarm] = {}
    missing: list[str] = []
    for group in groups:
        alarms = _describe(group)
        found.update(alarms)
        missing.extend(
            f"{name} ({group.region}, from {group.variable})"
            for name in group.names
            if name not in alarms
        )
    if missing:
        raise AlarmNotFoundError(
            f"alarm(s) not found: {', '.join(missing)}; an alarm that cannot be read is not taken "
            "for OK: check the variable against the monitoring and routing stacks"
        )
    return found


def set_alarm_actions(cloudwatch: Any, *, enable: Iterable[str], disable: Iterable[str]) -> None:
    """Enable first, then disable: if the second call fails, both directions are watched rather
    than neither."""
    try:
        for names in _chunks(list(enable)):
            cloudwatch.enable_alarm_actions(AlarmNames=names)
        for names in _chunks(list(disable)):
            cloudwatch.disable_alarm_actions(AlarmNames=names)
    except (ClientError, BotoCoreError) as error:
        raise AwsUnavailable(f"CloudWatch: {describe_error(error)}") from error


def reset_to_ok(cloudwatch: Any, names: Iterable[str], reason: str) -> None:
    """Set each alarm's state to OK; the next evaluation puts a still-breaching alarm back into ALARM,
    and that transition runs its actions."""
    try:
        for name in names:
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason=reason)
    except (ClientError, BotoCoreError) as error:
        raise AwsUnavailable(f"CloudWatch: {describe_error(error)}") from error


def _describe(group: AlarmGroup) -> dict[str, Alarm]:
    alarms: dict[str, Alarm] = {}
    try:
        for names in _chunks(list(group.names)):
            pages = group.cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNames=names, AlarmTypes=_ALARM_TYPES
            )
            for page in pages:
                for alarm in (*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])):
                    alarms[alarm["AlarmName"]] = Alarm(
                        name=alarm["AlarmName"],
                        state=alarm["StateValue"],
                        actions_enabled=bool(alarm.get("ActionsEnabled", False)),
                    )
    except (ClientError, BotoCoreError) as error:
        raise AwsUnavailable(
            f"CloudWatch in {group.region}: {describe_error(error)} (alarms from {group.variable})"
        ) from error
    return alarms


def _chunks(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), _NAMES_PER_CALL):
        yield names[start : start + _NAMES_PER_CALL]
