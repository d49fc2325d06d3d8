"""Executions of the controller's state machines: start one (refusing while another runs), follow
it state by state from its history, and say how it ended and, on failure, which state failed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from lib.cutover.aws import CliError

# The Lambda functions' shared runtime is a package root of its own (lib/lambda/common), as each
# function's folder is: `lambda` is a keyword, so it is put on the path rather than imported through lib.
_SHARED_RUNTIME = Path(__file__).resolve().parents[1] / "lambda" / "common"
if str(_SHARED_RUNTIME) not in sys.path:
    sys.path.insert(0, str(_SHARED_RUNTIME))

from payment_common import stepfunctions as sfn  # noqa: E402
from payment_common.errors import MigrationError  # noqa: E402

RUNNING = sfn.RUNNING
SUCCEEDED = sfn.SUCCEEDED
parse_json = sfn.parse_json
POLL_SECONDS = 1.0
_FAILURE_EVENTS = frozenset({"TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed",
                             "LambdaFunctionFailed", "LambdaFunctionTimedOut", "LambdaFunctionStartFailed",
                             "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})


def execution_name(*parts: str, now: datetime | None = None) -> str:
    """`advance-canary-20261123T193000Z`: unique per second, readable, and valid (80 characters of
    letters, digits, - and _)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return "-".join([*parts, stamp])[:80]


def list_executions(stepfunctions: Any, machine_arn: str, *, running_only: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]:
    """Newest first. CliError when the state machine does not exist."""
    try:
        return sfn.list_executions(stepfunctions, machine_arn, running_only=running_only, limit=limit)
    except sfn.StateMachineNotFound as error:
        raise CliError(f"state machine {machine_arn} does not exist: is the cutover stack deployed in "
                       "this environment?") from error
    except MigrationError as error:
        raise CliError(f"cannot list the executions of {machine_arn}: {error}") from error


class Refused(CliError):
    """The command was not run: something else is in progress."""


def refuse_if_running(stepfunctions: Any, machines: dict[str, str]) -> None:
    """CliError naming every running execution of these machines (label → ARN). The controller
    does one thing at a time: two executions would move the same weights or fence the same side."""
    running = [f"{label} {execution['name']} (started {_clock(execution['startDate'])})"
               for label, arn in machines.items()
               for execution in list_executions(stepfunctions, arn, running_only=True)]
    if running:
        raise Refused(f"refused: {', '.join(running)} is still running; follow it with "
                      "`python -m lib.cutover status` and start again once it has ended")


def start(stepfunctions: Any, machine_arn: str, name: str, execution_input: dict[str, Any]) -> str:
    try:
        return stepfunctions.start_execution(stateMachineArn=machine_arn, name=name,
                                             input=json.dumps(execution_input))["executionArn"]
    except (ClientError, BotoCoreError) as error:
        raise CliError(f"cannot start {name} on {machine_arn}: {error}") from error


def history(stepfunctions: Any, execution_arn: str) -> list[dict[str, Any]]:
    try:
        return sfn.history(stepfunctions, execution_arn)
    except MigrationError as error:
        raise CliError(f"cannot read the history of {execution_arn}: {error}") from error


def describe(stepfunctions: Any, execution_arn: str) -> dict[str, Any]:
    try:
        return sfn.describe(stepfunctions, execution_arn)
    except MigrationError as error:
        raise CliError(f"cannot describe {execution_arn}: {error}") from error


def follow(stepfunctions: Any, execution_arn: str, out: TextIO, *, poll_seconds: float | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
           ) -> dict[str, Any]:
    """Print each state entered and exited (and each failed attempt) as the execution goes, with the
    time since it started; returns its final description."""
    seen = 0
    started_at: datetime | None = None
    entered: dict[str, datetime] = {}
    while True:
        description = describe(stepfunctions, execution_arn)
        started_at = started_at or description["startDate"]
        events = history(stepfunctions, execution_arn)
        for event in events[seen:]:
            line = progress_line(event, started_at, entered)
            if line:
                print(line, file=out, flush=True)
        seen = len(events)
        if description["status"] != RUNNING:
            return description
        sleep(POLL_SECONDS if poll_seconds is None else poll_seconds)


def progress_line(event: dict[str, Any], started_at: datetime, entered: dict[str, datetime]) -> str | None:
    at = f"{(event['timestamp'] - started_at).total_seconds():8.1f}s"
    if "stateEnteredEventDetails" in event:
        name = event["stateEnteredEventDetails"]["name"]
        entered[name] = event["timestamp"]
        return f"{at}  → {name}"
    if "stateExitedEventDetails" in event:
        name = event["stateExitedEventDetails"]["name"]
        took = ""
        if name in entered:
            took = f"  ({(event['timestamp'] - entered[name]).total_seconds():.1f} s)"
        return f"{at}  ← {name}{took}"
    if event["type"] in _FAILURE_EVENTS and not event["type"].startswith("Execution"):
        error, cause = _error_and_cause(event)
        return f"{at}    ✗ {error}: {cause}"
    return None


@dataclass(frozen=True)
class Failure:
    state: str | None
    error: str
    cause: str


def failure(events: Iterable[dict[str, Any]]) -> Failure | None:
    """The state that failed the execution, with its error and cause: the last failed task (a
    Catch sends the execution on to its abort path, so this is the one that started the failure),
    else the error a Choice/Pass put in the state input (a validation that did not pass), else the
    Fail state the execution ended in."""
    state = None
    last_task: Failure | None = None
    recorded: Failure | None = None
    ended: Failure | None = None
    previous = None
    for event in events:
        if "stateEnteredEventDetails" in event:
            previous, state = state, event["stateEnteredEventDetails"]["name"]
            error = (parse_json(event["stateEnteredEventDetails"].get("input")) or {})
            error = error.get("error") if isinstance(error, dict) else None
            if isinstance(error, dict) and "Error" in error and recorded is None:
                recorded = Failure(previous, str(error["Error"]), _message(error.get("Cause")))
        elif event["type"] in _FAILURE_EVENTS and not event["type"].startswith("Execution"):
            last_task = Failure(state, *_error_and_cause(event))
        elif event["type"] in ("TaskSucceeded", "LambdaFunctionSucceeded") and last_task and last_task.state == state:
            last_task = None  # a retry cured it
        elif event["type"] in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            error, cause = _error_and_cause(event)
            ended = Failure(state, error or event["type"], cause)
    return last_task or recorded or ended


def _error_and_cause(event: dict[str, Any]) -> tuple[str, str]:
    details = next((value for key, value in event.items() if key.endswith("EventDetails")), {}) or {}
    return str(details.get("error") or ""), _message(details.get("cause"))


def _message(cause: Any) -> str:
    """A Lambda error's cause is a JSON document: its errorMessage is what a human reads."""
    parsed = parse_json(cause)
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return "" if cause is None else str(cause)


def _clock(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
