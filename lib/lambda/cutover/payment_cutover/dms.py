"""DMS replication tasks as the two directions: forward (on-prem → Aurora, full-load-and-cdc) and
fallback (Aurora → on-prem, cdc). Each task's source endpoint names its direction's slot (SlotName),
which the controller creates with SQL just before starting the task, so the task replicates from
that position (CdcStartPosition) and nothing before it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_cutover.errors import ConfigurationError, DatabaseUnavailable, SwitchPending
from payment_cutover.replication import RUNNING, STARTING, STOPPED, STOPPING, DirectionState
from payment_cutover.sides import Direction

POLL_SECONDS = 2.0
# DMS task statuses, as this controller reads them.
_STATUS = {"running": RUNNING, "starting": STARTING, "resuming": STARTING, "stopping": STOPPING,
           "stopped": STOPPED, "ready": STOPPED, "failed": STOPPED}


class DmsReplication:
    plugin = "test_decoding"  # the DMS source endpoints' PluginName

    def __init__(self, dms: Any, *, task_arns: Mapping[str, str], slot_names: Mapping[str, str],
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.dms = dms
        self.task_arns = task_arns
        self.slot_names = slot_names
        self.poll_seconds = poll_seconds

    def slot_name(self, direction: Direction) -> str:
        return self.slot_names[direction.name]

    def state(self, direction: Direction) -> DirectionState:
        task = self._task(direction)
        status = task["Status"]
        detail = f"DMS task {task['ReplicationTaskIdentifier']} is {status}"
        if task.get("StopReason"):
            detail += f" ({task['StopReason']})"
        if task.get("LastFailureMessage"):
            detail += f"; last failure: {task['LastFailureMessage']}"
        return DirectionState(direction, _STATUS.get(status, status), detail)

    def stop(self, direction: Direction, *, timeout_seconds: float) -> str:
        task = self._task(direction)
        before = task["Status"]
        if before in ("running", "starting", "resuming"):
            self._call("StopReplicationTask", self.dms.stop_replication_task,
                       ReplicationTaskArn=self.task_arns[direction.name])
        elif before != "stopping":
            return f"{direction}: DMS task already {before}"
        self._wait(direction, lambda state: state.status == STOPPED, "stopped", timeout_seconds)
        return f"{direction}: DMS task stopped (was {before})"

    def start(self, direction: Direction, *, start_lsn: str, timeout_seconds: float) -> str:
        task = self._task(direction)
        before = task["Status"]
        if _STATUS.get(before) not in (RUNNING, STARTING):
            # A task that never ran starts; one that ran before resumes, at the new slot's position
            # either way: a resumed full-load-and-cdc task does not load the tables again.
            start_type = "start-replication" if before == "ready" else "resume-processing"
            self._call("StartReplicationTask", self.dms.start_replication_task,
                       ReplicationTaskArn=self.task_arns[direction.name], StartReplicationTaskType=start_type,
                       CdcStartPosition=start_lsn)
        self._wait(direction, lambda state: state.running, "running", timeout_seconds)
        return f"{direction}: DMS task running from slot {self.slot_name(direction)} at {start_lsn} (was {before})"

    def _wait(self, direction: Direction, reached, wanted: str, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not reached(state := self.state(direction)):
            if time.monotonic() >= deadline:
                raise SwitchPending(f"{direction}: {state.detail}, not {wanted} after {timeout_seconds:g} s; "
                                    "the step can be retried")
            time.sleep(self.poll_seconds)

    def _task(self, direction: Direction) -> dict:
        arn = self.task_arns[direction.name]
        try:
            response = self.dms.describe_replication_tasks(
                Filters=[{"Name": "replication-task-arn", "Values": [arn]}], WithoutSettings=True)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundFault":
                response = {"ReplicationTasks": []}
            else:
                raise DatabaseUnavailable(f"DMS DescribeReplicationTasks failed: {_describe(error)}") from error
        except BotoCoreError as error:
            raise DatabaseUnavailable(f"DMS DescribeReplicationTasks failed: {error}") from error
        tasks = response["ReplicationTasks"]
        if not tasks:
            raise ConfigurationError(f"no DMS task {arn} for {direction}: check DMS_{direction.name.upper()}_TASK_ARN")
        return tasks[0]

    def _call(self, operation: str, function, **params) -> dict:
        try:
            return function(**params)
        except (ClientError, BotoCoreError) as error:
            raise SwitchPending(f"DMS {operation} failed: {_describe(error)}; the step can be retried") from error


def _describe(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', error)}"
    return str(error)
