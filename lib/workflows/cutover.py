"""The cutover controller's state machines (Amazon States Language, as plain dicts).

Two controls, kept apart: the WRITER (which database accepts writes; the SSM writer parameter)
and the WEIGHTS (where clients go; the weighted record pair). Traffic moves in phases with
`advance`; the writer changes only in the fenced `cutover` and, after it, in the fenced `rollback`.

    advance   status → the phase must fit the writer (follows-writer: aws-primary after the data
              cutover; legacy: aws-primary before it, nothing else after it) → validation PASSED (live, with
              settle-and-recheck) → no alarm active → weights of the next phase → bake: every
              interval, the alarms; an alarm → the rollback Lambda (the one emergency path: DNS, and a
              fenced writer rollback when AWS is the writer) → fail; the whole bake quiet → done.
    cutover   legacy gate (a legacy on-prem application: all traffic on AWS and its role idle for
              the TTL + margin, read at run time) → preflight → checkpoint (a logical slot on each side) → validation PASSED on the
              live replica (every row, settle-and-recheck) → catch up (what was written meanwhile,
              compared; the checkpoint moved past it) → fence the old writer → replication
              caught up (marker measured on the target) → the rows changed since the checkpoint
              compared by key, plus row counts and sequences (the step function; every row when the
              change set is too large) → sequences advanced on the new writer → the sequences
              checked (O(sequences)) → replication direction switched → the fence proven (the old
              writer's witness slot saw nothing but markers since the fence) → open the new writer →
              writer parameter → alarms of the running direction → weights: all to the new writer.
              The fenced window (Fence to Open) holds no full comparison: it is O(changes).
    rollback  weights all to on-prem first (clients follow within the TTL), then the cutover
              sequence from AWS back to on-prem.

Every step is a Lambda invocation of an idempotent step that detects work already done, so a
failed execution can be started again and finishes what is left. A failure before the replication
direction switched reopens the old writer (`abort`); from the switch on, `abort` changes nothing
and the execution fails with both sides fenced: the operator runs it again (README).

The builders take the function ARNs (tokens are fine: they are only placed, never taken apart).
"""

from __future__ import annotations

from typing import Any

from lib.names import SIDES
from lib.workflows.validation import LAMBDA_INVOKE, TRANSIENT_LAMBDA_ERRORS
from lib.names import SIDES

DIRECTION = {("onprem", "aws"): "forward", ("aws", "onprem"): "fallback"}
# The validation Lambda's `direction`: forward compares Aurora (target) with on-prem (source).
VALIDATION_DIRECTION = {("onprem", "aws"): "forward", ("aws", "onprem"): "reverse"}
PHASES = ("legacy-sync", "canary", "split", "aws-primary")

# Step errors a retry can cure (payment_cutover.errors): the marker is still on its way, a task or
# worker has not reached its state yet, a database answered with a transient error.
# The step function's retryable errors (payment_common.errors, payment_cutover.errors).
UNAVAILABLE_ERRORS = ["DatabaseUnavailable", "AwsUnavailable"]
RETRYABLE_STEP_ERRORS = ["ReplicationBehind", "SwitchPending", *UNAVAILABLE_ERRORS]
STEP_RETRY_INTERVAL_SECONDS = 2
STEP_RETRY_ATTEMPTS = 15  # with each invocation waiting up to step_wait_seconds itself


def _invoke(function_arn: str, payload: dict[str, Any], *, result: str | None, retry_errors: list[str] = (),
            next_state: str | None = None, catch: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
        "ResultSelector": {"result.$": "$.Payload"},
        "ResultPath": result,
        "Retry": [{"ErrorEquals": TRANSIENT_LAMBDA_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3,
                   "BackoffRate": 2.0}],
    }
    if retry_errors:
        state["Retry"].append({"ErrorEquals": list(retry_errors), "IntervalSeconds": STEP_RETRY_INTERVAL_SECONDS,
                               "MaxAttempts": STEP_RETRY_ATTEMPTS, "BackoffRate": 1.0})
    if catch:
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catch}]
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state


def _step(step_arn: str, step: str, source: str, target: str, *, next_state: str, catch: str | None = "Abort",
          retry: bool = False, **options: Any) -> dict[str, Any]:
    payload = {"step": step, "from": source, "to": target, "execution.$": "$$.Execution.Id", **options}
    return _invoke(step_arn, payload, result=f"$.steps.{step}", next_state=next_state, catch=catch,
                   retry_errors=RETRYABLE_STEP_ERRORS if retry else UNAVAILABLE_ERRORS)


def _validate(function_arn: str, payload: dict[str, Any], *, name: str, next_state: str,
              retry_errors: list[str] = ()) -> dict[str, dict[str, Any]]:
    """A validation task whose report lands in $.validation.<name>.result: PASSED goes on, anything
    else aborts."""
    return {
        name: _invoke(function_arn, payload, result=f"$.validation.{name}", next_state=f"{name}Passed?",
                      catch="Abort", retry_errors=retry_errors),
        f"{name}Passed?": {
            "Type": "Choice",
            "Choices": [{"Variable": f"$.validation.{name}.result.status", "StringEquals": "PASSED",
                         "Next": next_state}],
            "Default": f"{name}Refused",
        },
        f"{name}Refused": {
            "Type": "Pass",
            "Parameters": {"Error": "ValidationFailed",
                           "Cause.$": f"$.validation.{name}.result.message"},
            "ResultPath": "$.error",
            "Next": "Abort",
        },
    }


def _writer_switch(step_arn: str, validation_arn: str, traffic_arn: str, source: str, target: str, *,
                   start: str) -> dict[str, dict[str, Any]]:
    """The fenced sequence from `source` to `target`, ending in all weight on `target`."""
    new_direction = DIRECTION[(target, source)]
    direction = VALIDATION_DIRECTION[(source, target)]
    final_aws_weight = 100 if target == "aws" else 0
    return {
        start: _step(step_arn, "preflight", source, target, next_state="AlreadySwitched?", catch="Failed"),
        "AlreadySwitched?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.steps.preflight.result.already_done", "BooleanEquals": True,
                         "Next": "ReplicationAlarms"}],
            "Default": "Checkpoint",
        },
        "Checkpoint": _step(step_arn, "checkpoint", source, target, next_state="ValidateLive", retry=True),
        # Every row, before the fence, on the live replica: the recheck rounds of the validation
        # function's environment settle what is in flight.
        **_validate(validation_arn, {"direction": direction, "check_sequences": False},
                    name="ValidateLive", next_state="CatchUp"),
        # Still before the fence: what was written during that validation, compared and the
        # checkpoint moved past it, so the fenced comparison reads only the last seconds' writes.
        "CatchUp": _step(step_arn, "catch_up", source, target, next_state="Fence"),
        "Fence": _step(step_arn, "fence", source, target, next_state="WaitReplication", retry=True),
        "WaitReplication": _step(step_arn, "wait_replication", source, target, next_state="Validate", retry=True),
        # Inside the fence: only what changed since the checkpoint (the step function reads the slot).
        **_validate(step_arn, {"step": "validate_changes", "from": source, "to": target,
                               "execution.$": "$$.Execution.Id",
                               "live_validation.$": "$.validation.ValidateLive.result.status"},
                    name="Validate", next_state="AdvanceSequences", retry_errors=UNAVAILABLE_ERRORS),
        "AdvanceSequences": _step(step_arn, "advance_sequences", source, target, next_state="ValidateSequences"),
        **_validate(validation_arn, {"direction": direction, "sequences_only": True, "recheck_rounds": 0},
                    name="ValidateSequences", next_state="SwitchReplication"),
        "SwitchReplication": _step(step_arn, "switch_replication", source, target, next_state="ProveFence",
                                   retry=True),
        "ProveFence": _step(step_arn, "prove_fence", source, target, next_state="Open", retry=True),
        "Open": _step(step_arn, "open", source, target, next_state="SetWriter", retry=True),
        "SetWriter": _step(step_arn, "set_writer", source, target, next_state="ReplicationAlarms", retry=True),
        "ReplicationAlarms": _invoke(traffic_arn, {"action": "replication_alarms", "running": new_direction},
                                     result="$.traffic.replication_alarms", next_state="MoveTraffic",
                                     catch="Failed"),
        "MoveTraffic": _invoke(traffic_arn, {"action": "set_weights", "aws_weight": final_aws_weight,
                                             "reason.$": "States.Format('{} to {}', $$.StateMachine.Name, '"
                                             + target + "')"},
                               result="$.traffic.weights", next_state="Done", catch="Failed"),
        "Done": {"Type": "Succeed"},
        "Abort": _invoke(step_arn, {"step": "abort", "from": source, "to": target, "error.$": "$.error",
                                    "execution.$": "$$.Execution.Id"},
                         result="$.steps.abort", next_state="Failed", catch="Failed",
                         retry_errors=UNAVAILABLE_ERRORS),
        "Failed": {"Type": "Fail", "Error": "CutoverFailed",
                   "Cause": f"the switch of the writer from {source} to {target} did not complete: "
                            "see the execution's history and `python -m lib.cutover status`"},
    }


def _legacy_gate(step_arn: str, traffic_arn: str, source: str, target: str, *, start: str,
                 next_state: str) -> dict[str, dict[str, Any]]:
    """Before anything changes: the step function's legacy_gate, fed the routing as the traffic
    function reads it now, until it answers settled (all traffic on `target`, and the on-prem
    application's role quiet, for the TTL plus a margin). An on-prem application that follows the
    writer (the step's ONPREM_APPLICATION) passes at the first check. One definition for both modes,
    so the machine is the same whatever the config says; the step reads the mode at run time."""
    return {
        start: {"Type": "Pass", "Result": {"result": {"since": ""}}, "ResultPath": "$.gate",
                "Next": "RoutingStatus"},
        "RoutingStatus": _invoke(traffic_arn, {"action": "status"}, result="$.routing", next_state="LegacyGate",
                                 catch="Failed"),
        "LegacyGate": _invoke(step_arn, {"step": "legacy_gate", "from": source, "to": target,
                                         "execution.$": "$$.Execution.Id", "weights.$": "$.routing.result.weights",
                                         "since.$": "$.gate.result.since"},
                              result="$.gate", next_state="LegacySettled?", catch="Failed",
                              retry_errors=["DatabaseUnavailable"]),
        "LegacySettled?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.gate.result.settled", "BooleanEquals": True, "Next": next_state}],
            "Default": "LegacyWait",
        },
        "LegacyWait": {"Type": "Wait", "SecondsPath": "$.gate.result.wait_seconds", "Next": "RoutingStatus"},
    }


def cutover_definition(*, step_arn: str, validation_arn: str, traffic_arn: str) -> dict[str, Any]:
    """The data cutover: on-prem → AWS, behind the legacy gate."""
    return {
        "Comment": "Data cutover: the writer moves from on-prem to Aurora behind a database fence",
        "StartAt": "OnpremApplication",
        "States": {
            **_legacy_gate(step_arn, traffic_arn, "onprem", "aws", start="OnpremApplication", next_state="Preflight"),
            **_writer_switch(step_arn, validation_arn, traffic_arn, "onprem", "aws", start="Preflight"),
        },
    }


def rollback_definition(*, step_arn: str, validation_arn: str, traffic_arn: str) -> dict[str, Any]:
    """The rollback after the data cutover: clients to on-prem first, then the writer, fenced."""
    states = {
        "TrafficToOnprem": _invoke(traffic_arn, {"action": "set_weights", "aws_weight": 0,
                                                 "reason.$": "States.Format('rollback: {}', $.reason)"},
                                   result="$.traffic.first_weights", next_state="Preflight", catch="Failed"),
        **_writer_switch(step_arn, validation_arn, traffic_arn, "aws", "onprem", start="Preflight"),
    }
    return {
        "Comment": "Rollback after the data cutover: traffic to on-prem, then the writer back behind a fence",
        "StartAt": "TrafficToOnprem",
        "States": states,
    }


def advance_definition(*, traffic_arn: str, validation_arn: str, rollback_arn: str, bake_checks: int,
                       bake_interval_seconds: int = 60, onprem_application: str = "follows-writer") -> dict[str, Any]:
    """One phase forward. Input: {"phase": "canary"|"split"|"aws-primary"|"legacy-sync"}; optional
    "bake_checks" and "bake_interval_seconds" override the defaults given here: the bake lasts
    bake_checks × bake_interval_seconds, the alarms read once per interval.

    `onprem_application` "follows-writer": aws-primary needs Aurora as the writer (the data cutover
    happens at split). "legacy": the other way round — aws-primary comes before the data cutover
    (the AWS API writes to on-prem through the VPN meanwhile), and once Aurora is the writer no
    phase may send clients back to the on-prem application, which cannot write then (only the
    rollback does, and it moves the writer back)."""
    if onprem_application == "legacy":
        phase_check = {
            "Type": "Choice",
            "Choices": [{"And": [{"Not": {"Variable": "$.phase", "StringEquals": "aws-primary"}},
                                 {"Variable": "$.status.result.writer.writer", "StringEquals": "aws"}],
                         "Next": "OnpremApplicationFenced"}],
            "Default": "Validate",
        }
    else:
        phase_check = {
            "Type": "Choice",
            "Choices": [{"And": [{"Variable": "$.phase", "StringEquals": "aws-primary"},
                                 {"Variable": "$.status.result.writer.writer", "StringEquals": "onprem"}],
                         "Next": "CutoverFirst"}],
            "Default": "Validate",
        }
    return {
        "Comment": "Move traffic to a phase, then watch the alarms for the bake time; roll back on an alarm",
        "StartAt": "HasPhase?",
        "States": {
            # A Choice on a missing variable fails the execution (States.Runtime): test presence first.
            "HasPhase?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.phase", "IsPresent": False, "Next": "UnknownPhase"}],
                "Default": "KnownPhase?",
            },
            "KnownPhase?": {
                "Type": "Choice",
                "Choices": [{"Or": [{"Variable": "$.phase", "StringEquals": phase} for phase in PHASES],
                             "Next": "Defaults"}],
                "Default": "UnknownPhase",
            },
            "UnknownPhase": {"Type": "Fail", "Error": "UnknownPhase",
                             "Cause": f"the input needs \"phase\": one of {', '.join(PHASES)}"},
            # Optional input keys: the input merged over the defaults.
            "Defaults": {
                "Type": "Pass",
                "Parameters": {"bake_checks": bake_checks, "bake_interval_seconds": bake_interval_seconds},
                "ResultPath": "$.defaults",
                "Next": "Settings",
            },
            "Settings": {
                "Type": "Pass",
                "Parameters": {"merged.$": "States.JsonMerge($.defaults, $, false)"},
                "OutputPath": "$.merged",
                "Next": "Status",
            },
            "Status": _invoke(traffic_arn, {"action": "status"}, result="$.status",
                              next_state="PhaseFitsWriter?"),
            "PhaseFitsWriter?": phase_check,
            **({"OnpremApplicationFenced": {
                "Type": "Fail", "Error": "OnpremApplicationFenced",
                "Cause": "the on-prem application is legacy and Aurora is the writer: clients sent to on-prem would "
                         "fail; only the rollback (which moves the writer back) sends traffic there"}}
               if onprem_application == "legacy" else {
                "CutoverFirst": {"Type": "Fail", "Error": "CutoverFirst",
                                 "Cause": "all traffic to AWS needs Aurora as the writer: run the data cutover first"}}),
            "Validate": _invoke(validation_arn, {}, result="$.validation", next_state="ValidationPassed?"),
            "ValidationPassed?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.validation.result.status", "StringEquals": "PASSED",
                             "Next": "AlarmsQuiet"}],
                "Default": "ValidationFailed",
            },
            "ValidationFailed": {"Type": "Fail", "Error": "ValidationFailed",
                                 "Cause": "validation did not pass: the weights were not moved"},
            "AlarmsQuiet": _invoke(traffic_arn, {"action": "check_alarms"}, result="$.alarms_before",
                                   next_state="AlarmsQuiet?"),
            "AlarmsQuiet?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.alarms_before.result.alarm", "BooleanEquals": True,
                             "Next": "AlarmActive"}],
                "Default": "ShiftWeights",
            },
            "AlarmActive": {"Type": "Fail", "Error": "AlarmActive",
                            "Cause": "an alarm is in ALARM before the shift: the weights were not moved"},
            "ShiftWeights": _invoke(traffic_arn, {"action": "set_weights", "phase.$": "$.phase",
                                                  "reason.$": "States.Format('advance to {}', $.phase)"},
                                    result="$.weights", next_state="StartBake"),
            "StartBake": {
                "Type": "Pass",
                "Parameters": {"remaining.$": "$.bake_checks"},
                "ResultPath": "$.bake",
                "Next": "BakeWait",
            },
            "BakeWait": {"Type": "Wait", "SecondsPath": "$.bake_interval_seconds", "Next": "CheckAlarms"},
            "CheckAlarms": _invoke(traffic_arn, {"action": "check_alarms"}, result="$.alarms",
                                   next_state="Alarm?"),
            "Alarm?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.alarms.result.alarm", "BooleanEquals": True, "Next": "RollBack"}],
                "Default": "CountDown",
            },
            "CountDown": {
                "Type": "Pass",
                "Parameters": {"remaining.$": "States.MathAdd($.bake.remaining, -1)"},
                "ResultPath": "$.bake",
                "Next": "Baked?",
            },
            "Baked?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.bake.remaining", "NumericGreaterThan": 0, "Next": "BakeWait"}],
                "Default": "Done",
            },
            # The one emergency path: DNS to on-prem at once, and the fenced writer rollback when
            # Aurora is the writer.
            "RollBack": _invoke(rollback_arn, {"reason.$": "States.Format('alarm while baking {}: {}', $.phase, "
                                                           "States.JsonToString($.alarms.result.in_alarm))"},
                                result="$.rollback", next_state="RolledBack?"),
            "RolledBack?": {
                "Type": "Choice",
                "Choices": [{"Or": [{"Variable": "$.rollback.result.status", "StringEquals": status}
                                    for status in ("ROLLED_BACK", "ALREADY_ROLLED_BACK")],
                             "Next": "RolledBack"}],
                "Default": "RollbackIncomplete",
            },
            "RolledBack": {"Type": "Fail", "Error": "RolledBack",
                           "Cause": "an alarm fired while the phase baked: traffic and writer went back to "
                                    "on-prem (the rollback's answer is in the execution's history)"},
            "RollbackIncomplete": {"Type": "Fail", "Error": "RollbackIncomplete",
                                   "Cause": "an alarm fired while the phase baked and the rollback did not "
                                            "complete: finish it by hand (README, Rollback)"},
            "Done": {"Type": "Succeed"},
        },
    }
