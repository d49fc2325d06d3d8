"""Reading and stopping executions of the controller's state machines: what the rollback needs to
win over an execution in flight, and what the operator's CLI (lib/cutover) follows and reports."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, ConfigurationError, describe_aws_error

RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
_CAUSE_LIMIT = 32768  # StopExecution's cause


class StateMachineNotFound(ConfigurationError):
    """The state machine does not exist (yet): its stack is not deployed in this environment."""



def list_executions(stepfunctions: Any, machine_arn: str, *, running_only: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]:
    """The executions, newest first (at most `limit`); StateMachineNotFound, AwsUnavailable."""
    params: dict[str, Any] = {"stateMachineArn": machine_arn}
    if running_only:
        params["statusFilter"] = RUNNING
    executions: list[dict[str, Any]] = []
    try:
        for page in stepfunctions.get_paginator("list_executions").paginate(**params):
            executions.extend(page["executions"])
            if limit is not None and len(executions) >= limit:
                break
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "StateMachineDoesNotExist":
            raise StateMachineNotFound(f"state machine {machine_arn} does not exist") from error
        raise AwsUnavailable(f"Step Functions: {describe_aws_error(error)}") from error
    except BotoCoreError as error:
        raise AwsUnavailable(f"Step Functions ListExecutions: {describe_aws_error(error)}") from error
    executions.sort(key=lambda execution: execution["startDate"], reverse=True)
    return executions[:limit] if limit is not None else executions


def history(stepfunctions: Any, execution_arn: str, *, newest: int | None = None) -> list[dict[str, Any]]:
    """The execution's events, oldest first: all of them, or only the `newest` few (one call)."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"executionArn": execution_arn, "maxResults": newest or 1000}
    if newest:
        params["reverseOrder"] = True
    try:
        while True:
            page = stepfunctions.get_execution_history(**params)
            events.extend(page["events"])
            if newest or not page.get("nextToken"):
                break
            params["nextToken"] = page["nextToken"]
    except (ClientError, BotoCoreError) as error:
        raise AwsUnavailable(f"Step Functions GetExecutionHistory: {describe_aws_error(error)}") from error
    # Event ids grow: sorted by them, whatever order the service answered in.
    return sorted(events, key=lambda event: event["id"])


def describe(stepfunctions: Any, execution_arn: str) -> dict[str, Any]:
    try:
        return stepfunctions.describe_execution(executionArn=execution_arn)
    except (ClientError, BotoCoreError) as error:
        raise AwsUnavailable(f"Step Functions DescribeExecution: {describe_aws_error(error)}") from error


def find(stepfunctions: Any, execution_arn: str) -> dict[str, Any] | None:
    """The execution, or None when there is none by that ARN (a name not started yet)."""
    try:
        return stepfunctions.describe_execution(executionArn=execution_arn)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return None
        raise AwsUnavailable(f"Step Functions DescribeExecution: {describe_aws_error(error)}") from error
    except BotoCoreError as error:
        raise AwsUnavailable(f"Step Functions DescribeExecution: {describe_aws_error(error)}") from error


def stop(stepfunctions: Any, execution_arn: str, *, error: str, cause: str) -> bool:
    """Stop the execution; False when it had ended on its own already (nothing left to stop)."""
    try:
        stepfunctions.stop_execution(executionArn=execution_arn, error=error, cause=cause[:_CAUSE_LIMIT])
    except ClientError as failure:
        if failure.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return False
        raise AwsUnavailable(f"Step Functions: {describe_aws_error(failure)}") from failure
    except BotoCoreError as failure:
        raise AwsUnavailable(f"Step Functions StopExecution: {describe_aws_error(failure)}") from failure
    return True


def parse_json(text: Any) -> Any:
    """A Step Functions document (input, output, parameters, cause) parsed, None when it is not JSON."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None
