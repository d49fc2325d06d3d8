"""The controller's traffic steps: plain Python that takes its AWS clients as arguments.

Every step is idempotent and safe to retry: set_weights changes nothing when the weights are
already there; replication_alarms leaves the alarms as asked whatever they were; the others only
read. Errors raise (see payment_rollback.errors for the names Step Functions sees)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payment_common.writer import read_writer
from payment_rollback.alarms import ALARM, AlarmGroup, describe_alarms, reset_to_ok, set_alarm_actions
from payment_rollback.clients import AwsClients
from payment_rollback.routing import WeightedRecord, read_weighted_pair, set_weights, split_weights
from payment_rollback.traffic_models import (
    PHASE_WEIGHTS,
    AlarmSettings,
    CheckAlarms,
    ReplicationAlarms,
    ReplicationAlarmSettings,
    SetWeights,
    Status,
    TrafficRequest,
    writer_parameter,
)


# The StateReason of an alarm that replication_alarms puts back to OK.
ACTIONS_ENABLED_REASON = "actions enabled by the cutover controller; re-evaluated from now"


def run(request: TrafficRequest, environ: Mapping[str, str], clients: AwsClients) -> dict[str, Any]:
    """Read the settings the action needs (and only those) and run it."""
    if isinstance(request, SetWeights):
        return apply_weights(request, WeightedRecord.from_environment(environ), clients.route53)
    if isinstance(request, CheckAlarms):
        return {"action": "check_alarms", **check_alarms(AlarmSettings.from_environment(environ), clients)}
    if isinstance(request, ReplicationAlarms):
        return switch_replication_alarms(
            request, ReplicationAlarmSettings.from_environment(environ), clients.cloudwatch
        )
    if isinstance(request, Status):
        return status(
            WeightedRecord.from_environment(environ),
            AlarmSettings.from_environment(environ),
            writer_parameter(environ),
            clients,
        )
    raise TypeError(f"no traffic step for {request!r}")


def apply_weights(request: SetWeights, record: WeightedRecord, route53: Any) -> dict[str, Any]:
    """AWS gets `aws_weight`, on-prem the rest, in one change batch."""
    label = f"phase {request.phase}" if request.phase else f"AWS weight {request.aws_weight}"
    change = set_weights(
        route53, record, split_weights(request.aws_weight), f"{label}: {request.reason}"
    )
    return {
        "action": "set_weights",
        "phase": request.phase,
        "reason": request.reason,
        "weights_before": change.weights_before,
        "weights_after": change.weights_after,
        "changed": change.changed,
        "change_id": change.change_id,
        "actions": change.actions,
    }


def check_alarms(settings: AlarmSettings, clients: AwsClients) -> dict[str, Any]:
    """`alarm` is true when any named alarm is in ALARM. INSUFFICIENT_DATA is reported in `states`
    but does not count: the alarms that must fire on missing data say so themselves
    (TreatMissingData=breaching)."""
    alarms = describe_alarms(
        [
            AlarmGroup(clients.cloudwatch, settings.rollback_alarm_names, "ROLLBACK_ALARM_NAMES"),
            AlarmGroup(
                clients.cloudwatch_in(settings.health_alarm_region),
                settings.health_alarm_names,
                "HEALTH_ALARM_NAMES",
            ),
        ]
    )
    names = (*settings.rollback_alarm_names, *settings.health_alarm_names)
    in_alarm = [name for name in names if alarms[name].state == ALARM]
    return {
        "alarm": bool(in_alarm),
        "in_alarm": in_alarm,
        "states": {name: alarms[name].state for name in names},
    }


def switch_replication_alarms(
    request: ReplicationAlarms, settings: ReplicationAlarmSettings, cloudwatch: Any
) -> dict[str, Any]:
    """Actions on for the alarms of the running direction, off for the other's: a stopped
    direction's task-state and lag alarms would otherwise page (or roll back) for nothing.

    Actions run on a state transition only. An alarm of the running direction that is in ALARM
    already (the latency alarms treat missing data as breaching, so they sit in ALARM while their
    task does not run) would never notify: once its actions are on, it is set to OK, and the next
    evaluation takes it back to ALARM — with its actions — if the condition still holds. A retry
    does the same again (one more OK → ALARM round, never a lost one)."""
    stopped = "fallback" if request.running == "forward" else "forward"
    enable, disable = settings.names(request.running), settings.names(stopped)
    groups = {
        "forward": AlarmGroup(cloudwatch, settings.forward_alarm_names, "FORWARD_ALARM_NAMES"),
        "fallback": AlarmGroup(cloudwatch, settings.fallback_alarm_names, "FALLBACK_ALARM_NAMES"),
    }
    before = describe_alarms(list(groups.values()))
    set_alarm_actions(cloudwatch, enable=enable, disable=disable)
    # Read after enabling: an alarm that went into ALARM in between is reset too.
    enabled_now = describe_alarms([groups[request.running]])
    reset = [name for name in enable if enabled_now[name].state == ALARM]
    reset_to_ok(cloudwatch, reset, ACTIONS_ENABLED_REASON)
    wanted = {**{name: True for name in enable}, **{name: False for name in disable}}
    return {
        "action": "replication_alarms",
        "running": request.running,
        "enabled": list(enable),
        "disabled": list(disable),
        "actions_enabled_before": {name: before[name].actions_enabled for name in wanted},
        "reset_to_ok": reset,
        "changed": any(before[name].actions_enabled != on for name, on in wanted.items()),
    }


def status(
    record: WeightedRecord, alarm_settings: AlarmSettings, parameter: str, clients: AwsClients
) -> dict[str, Any]:
    weights = read_weighted_pair(clients.route53, record).weights
    return {
        "action": "status",
        "weights": weights,
        "phase": _phase_of(weights),
        "alarms": check_alarms(alarm_settings, clients),
        "writer": read_writer(clients.ssm, parameter).to_dict(),
    }


def _phase_of(weights: Mapping[str, int]) -> str | None:
    """The phase whose weights these are, or None (an explicit weight, or a pair that does not
    add up to 100)."""
    for phase, aws_weight in PHASE_WEIGHTS.items():
        if dict(weights) == split_weights(aws_weight):
            return phase
    return None

