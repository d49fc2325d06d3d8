"""How the rollback wins over the controller's executions in flight.

- advance (ADVANCE_STATE_MACHINE_ARN) only moves weights and bakes: every RUNNING execution is
  stopped before anything else, so that none shifts weights after the rollback. One exception: an
  execution that is waiting on this very function (the advance's RollBack state invokes the
  rollback when an alarm fires while it bakes) moves no weight from there, and stopping it would
  only turn its report (RolledBack / RollbackIncomplete) into ABORTED.
- cutover (CUTOVER_STATE_MACHINE_ARN) is never stopped: stopped between its steps it could leave
  both sides fenced (or the writer switched with traffic and replication half moved), which only a
  human can then sort out. It takes well under a minute: the rollback waits for it to end, then
  works on the writer it left.

Stopping an execution does not stop a Lambda step it has in flight (Step Functions only stops
waiting for it): a weight change already sent by an advance step may still land after the
rollback's. The rollback checks the weights again before it reports (payment_rollback.core).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from payment_common import stepfunctions as sfn

# StopExecution's error name, which the stopped execution's history shows.
STOPPED_ERROR = "RollbackInProgress"
# The newest events of an execution that tell whether a task of it is in flight, and which.
_HISTORY_EVENTS = 20
_TASK_OUTCOMES = frozenset({"TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskSubmitFailed",
                            "TaskStartFailed", "LambdaFunctionSucceeded", "LambdaFunctionFailed",
                            "LambdaFunctionTimedOut", "LambdaFunctionStartFailed"})


@dataclass
class Preemption:
    """What the rollback did to the controller's executions (the answer's `controller`)."""

    advance_stopped: list[str] = field(default_factory=list)
    advance_left_running: list[str] = field(default_factory=list)  # waiting on this rollback
    cutover: dict[str, Any] | None = None  # {"execution_arn", "status", "waited_seconds"}

    def to_dict(self) -> dict[str, Any]:
        return {"advance_stopped": list(self.advance_stopped),
                "advance_left_running": list(self.advance_left_running),
                "cutover": dict(self.cutover) if self.cutover else None}


def running_executions(stepfunctions: Any, state_machine_arn: str) -> list[dict[str, Any]] | None:
    """The RUNNING executions of the state machine, newest first; None when the state machine does
    not exist (the cutover stack, downstream of this function's, is not deployed yet)."""
    try:
        return sfn.list_executions(stepfunctions, state_machine_arn, running_only=True)
    except sfn.StateMachineNotFound:
        return None


def task_in_flight(stepfunctions: Any, execution_arn: str) -> dict[str, Any] | None:
    """The Task state the execution is waiting on — {"state", "function_name", "payload"} — or None
    when it is between tasks (a Wait, a Choice) or its newest task has an outcome."""
    events = sfn.history(stepfunctions, execution_arn, newest=_HISTORY_EVENTS)
    state = scheduled = None
    for event in reversed(events):  # newest first
        if scheduled is None:
            if event["type"] in _TASK_OUTCOMES or "stateExitedEventDetails" in event:
                return None
            if event["type"] in ("TaskScheduled", "LambdaFunctionScheduled"):
                # A retry's schedule is newer than the failure before it: that attempt is in flight.
                scheduled = (event.get("taskScheduledEventDetails")
                             or event.get("lambdaFunctionScheduledEventDetails") or {})
        if "stateEnteredEventDetails" in event:
            state = event["stateEnteredEventDetails"]["name"]
            break
    if scheduled is None:
        return None
    parameters = sfn.parse_json(scheduled.get("parameters")) or {}
    function = parameters.get("FunctionName") or scheduled.get("resource") or ""
    return {"state": state, "function_name": function_name_of(str(function)),
            "payload": parameters.get("Payload")}


def function_name_of(name_or_arn: str) -> str:
    """payment-rollback-dev, from the name, its ARN or a qualified ARN (…:function:<name>:<alias>)."""
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn.split(":", 1)[0]


def stop(stepfunctions: Any, execution_arn: str, reason: str) -> None:
    """Stop the execution; one that ended on its own between the listing and now needs nothing."""
    sfn.stop(stepfunctions, execution_arn, error=STOPPED_ERROR, cause=f"stopped by the rollback: {reason}")
