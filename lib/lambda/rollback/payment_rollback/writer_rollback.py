"""Starting (or joining) the fenced writer rollback and waiting for it.

The fence, the direction switch and the writer switch run in the "rollback" Step Functions state
machine (its steps need the VPC; this function runs outside it on purpose). One execution per
writer epoch: the execution is named after the epoch the writer had when the rollback was asked
for, so every invocation that sees the same writer (a second invoke, an async retry) finds the same
execution instead of starting another. Step Functions keeps names of standard workflows unique,
so a closed execution is never started again under that name: a FAILED writer rollback for an epoch
is reported by every later invocation until someone acts on it (README, Rollback).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable
from payment_common.stepfunctions import find as find_execution
from payment_rollback.errors import describe_error

RUNNING_STATUSES = frozenset({"RUNNING", "PENDING_REDRIVE"})
FAILED_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
SUCCEEDED = "SUCCEEDED"

FIRST_POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 2.0


def execution_name(epoch: int) -> str:
    return f"rollback-epoch-{epoch}"


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:<partition>:states:<region>:<account>:stateMachine:<machine> names its executions
    arn:<partition>:states:<region>:<account>:execution:<machine>:<name>."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"




def start_or_join(
    stepfunctions: Any, state_machine_arn: str, name: str, execution_input: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The execution named `name`, started now if it does not exist yet. Returns its description
    and whether this call started it."""
    arn = execution_arn(state_machine_arn, name)
    existing = find_execution(stepfunctions, arn)
    if existing is not None:
        return existing, False
    try:
        stepfunctions.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
        )
    except ClientError as error:
        # Another invocation started it between our look and our start (with other input, or it
        # has closed already): that one is the execution for this epoch.
        if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise AwsUnavailable(f"Step Functions: {describe_error(error)}") from error
        joined = find_execution(stepfunctions, arn)
        if joined is None:
            raise AwsUnavailable(
                f"Step Functions: StartExecution said {name} exists, but {arn} cannot be "
                "described; check ROLLBACK_STATE_MACHINE_ARN"
            ) from error
        return joined, False
    except BotoCoreError as error:
        raise AwsUnavailable(f"Step Functions StartExecution: {describe_error(error)}") from error
    started = find_execution(stepfunctions, arn)
    if started is None:
        raise AwsUnavailable(f"Step Functions: execution {arn} started but cannot be described")
    return started, True


def wait_for(
    stepfunctions: Any,
    execution: dict[str, Any],
    wait_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the execution is no longer running or `wait_seconds` have passed; returns the
    last description. Polls soon at first (a short execution is seen quickly), then every 2 s."""
    deadline = clock() + wait_seconds
    interval = FIRST_POLL_SECONDS
    while execution["status"] in RUNNING_STATUSES:
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
        interval = min(interval * 2, MAX_POLL_SECONDS)
        found = find_execution(stepfunctions, execution["executionArn"])
        if found is None:
            raise AwsUnavailable(f"Step Functions: execution {execution['executionArn']} vanished")
        execution = found
    return execution
