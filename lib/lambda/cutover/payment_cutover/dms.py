"""DMS replication tasks as the two directions: forward (on-prem → Aurora) and fallback (Aurora →
on-prem, cdc). Each task's source endpoint names its direction's slot (SlotName), which the
controller creates with SQL just before starting the task, so the task replicates from that position
(CdcStartPosition) and nothing before it.

How a task is started follows the StartReplicationTask API reference
(https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html,
StartReplicationTaskType):

- "start-replication is the only valid action that can be used for the first time a task with the
  migration type of full-load, full-load-and-cdc or cdc is run";
- "For a full-load-and-cdc task, DMS migrates table data, and then applies data changes that occur
  on the source. To load all the tables again, and start capturing source changes, use
  reload-target. Otherwise use resume-processing, to replicate the changes from the last stop
  position";
- "For a cdc only task, to start from a specific position, you must use start-replication and also
  specify the start position".

So a cdc task always gets start-replication with CdcStartPosition = the new slot's LSN. The forward
full-load-and-cdc task is started by the controller only for its first run (start-replication: the
full load, then changes from its slot). Once it has run, neither documented way fits a start from a
new slot — resume-processing continues from the task's last stop position (changes the slot made
after the writer rollback does not have), reload-target loads every table again over the payments
the AWS side took — so the forward direction is then the forward-cdc task: a cdc task with the
forward task's endpoints (and so its slot), started like the fallback task.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, ConfigurationError
from payment_common.sides import Direction
from payment_cutover.errors import ReplicationNotRunning, SwitchPending
from payment_cutover.replication import RUNNING, STARTING, STOPPED, STOPPING, UNAVAILABLE, DirectionState

POLL_SECONDS = 2.0
CONNECTION_TEST_SECONDS = 120.0  # DMS tests an endpoint's connection from the replication instance
FORWARD_CDC = "forward-cdc"  # the task_arns key of the forward direction's CDC-only task
START_REFERENCE = "https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html"

# Every status the DescribeReplicationTasks reference (ReplicationTask.Status) lists, as a state of
# the direction. A status not listed here is an error naming it, never passed on as a state.
STATUSES = {
    "running": RUNNING,
    "starting": STARTING,
    # Not in the reference's list; DMS tasks have been seen in it on their way back to running.
    "resuming": STARTING,
    "stopping": STOPPING,
    "ready": STOPPED,  # created (or modified) and not running: startable
    "stopped": STOPPED,
    "failed": STOPPED,  # stopped by an error (StopReason, LastFailureMessage): startable again
    "creating": UNAVAILABLE,
    "modifying": UNAVAILABLE,  # ModifyReplicationTask (only on a stopped task)
    "moving": UNAVAILABLE,  # MoveReplicationTask to another replication instance
    "testing": UNAVAILABLE,  # a premigration assessment run
    "deleting": UNAVAILABLE,
    "failed-move": UNAVAILABLE,
}
# Unavailable statuses that end by themselves: a start waits (within its bound) for them to pass.
PASSING = frozenset({"creating", "modifying", "moving", "testing"})
# Unavailable statuses that need an operator: a start refuses, saying what to do.
REFUSED = {
    "deleting": "the task is being deleted: point the DMS task ARN at a task that exists (the migration stack "
                "creates it)",
    "failed-move": "its move to another replication instance failed: move it again or back (MoveReplicationTask) "
                   "and let it reach stopped",
}
ACTIVE = (RUNNING, STARTING, STOPPING)  # the task holds (or is about to hold, or release) its slot


def _state(task: dict) -> str:
    status = task["Status"]
    if status not in STATUSES:
        raise ReplicationNotRunning(
            f"DMS task {task['ReplicationTaskIdentifier']} has status {status!r}, which this controller does not "
            f"know (DescribeReplicationTasks documents {', '.join(sorted(STATUSES))}): look at the task in the DMS "
            "console and bring it to stopped or running by hand")
    return STATUSES[status]


def _has_run(task: dict) -> bool:
    """Whether the task was ever started: one that never ran has no start date and a status of before
    a first start (ready, or being created, modified, assessed)."""
    return (task["Status"] in ("running", "starting", "resuming", "stopping", "stopped", "failed")
            or bool(_started_at(task)))


def _started_at(task: dict) -> float:
    stats = task.get("ReplicationTaskStats") or {}
    started = stats.get("StartDate") or stats.get("FreshStartDate") or task.get("ReplicationTaskStartDate")
    return started.timestamp() if isinstance(started, datetime) else float(started or 0)


class DmsReplication:
    plugin = "test_decoding"  # the DMS source endpoints' PluginName
    apply_role = "dms_target"  # the target endpoints' user: SETs session_replication_role (migration stack)

    def __init__(self, dms: Any, *, task_arns: Mapping[str, str], slot_names: Mapping[str, str],
                 poll_seconds: float = POLL_SECONDS) -> None:
        """`task_arns`: forward, fallback and forward-cdc (without it, the forward direction cannot be
        started again once its full load ran, and a start says so)."""
        self.dms = dms
        self.task_arns = task_arns
        self.slot_names = slot_names
        self.poll_seconds = poll_seconds

    def slot_name(self, direction: Direction) -> str:
        return self.slot_names[direction.name]

    def state(self, direction: Direction) -> DirectionState:
        tasks = self._tasks(direction)
        name, task = self._current(tasks)
        detail = self._detail(task)
        others = [self._detail(other) for other_name, other in tasks.items()
                  if other_name != name and _state(other) in ACTIVE]
        if others:
            detail += f"; also {'; '.join(others)}"
        return DirectionState(direction, _state(task), detail)

    def stop(self, direction: Direction, *, timeout_seconds: float) -> str:
        tasks = self._tasks(direction)
        before = "; ".join(f"{task['ReplicationTaskIdentifier']} {task['Status']}" for task in tasks.values())
        if not any(_state(task) in ACTIVE for task in tasks.values()):
            return f"{direction}: no DMS task running ({before})"
        for name, task in tasks.items():
            if _state(task) in (RUNNING, STARTING):
                self._call("StopReplicationTask", self.dms.stop_replication_task,
                           ReplicationTaskArn=self.task_arns[name])
        self._wait(direction, lambda: not any(_state(task) in ACTIVE for task in self._tasks(direction).values()),
                   "stopped", timeout_seconds)
        return f"{direction}: DMS task stopped (was {before})"

    def start(self, direction: Direction, *, start_lsn: str, timeout_seconds: float) -> str:
        deadline = time.monotonic() + timeout_seconds
        tasks = self._tasks(direction)
        if not any(_state(task) in (RUNNING, STARTING) for task in tasks.values()):
            name, params = self._start_request(direction, tasks, start_lsn)
            # A task still stopping, or being created, modified, moved or assessed, cannot start yet.
            while (task := self._task(name, direction))["Status"] == "stopping" or task["Status"] in PASSING:
                if time.monotonic() >= deadline:
                    raise SwitchPending(f"{direction}: DMS task {task['ReplicationTaskIdentifier']} is "
                                        f"{task['Status']}, not startable after {timeout_seconds:g} s; the step "
                                        "can be retried")
                time.sleep(self.poll_seconds)
            self._call("StartReplicationTask", self.dms.start_replication_task, **params)
        self._wait(direction, lambda: self.state(direction).running, "running",
                   max(deadline - time.monotonic(), 0.0))
        name, task = self._current(self._tasks(direction))
        return (f"{direction}: DMS task {task['ReplicationTaskIdentifier']} ({task['MigrationType']}) running from "
                f"slot {self.slot_name(direction)} at {start_lsn}")

    def check_can_start(self, direction: Direction, *, timeout_seconds: float = CONNECTION_TEST_SECONDS) -> list[str]:
        """The task that `start` would start is known to DMS and startable, and the replication instance
        reaches both its endpoints (TestConnection, then DescribeConnections until each test ends)."""
        try:
            tasks = self._tasks(direction)
            name, _ = self._start_request(direction, tasks, start_lsn="0/0")
        except (AwsUnavailable, ConfigurationError, ReplicationNotRunning) as error:
            return [str(error)]
        task = tasks[name]
        problems = []
        instance = task["ReplicationInstanceArn"]
        endpoints = {"source": task["SourceEndpointArn"], "target": task["TargetEndpointArn"]}
        started = {}
        for role, endpoint in endpoints.items():
            try:
                self.dms.test_connection(ReplicationInstanceArn=instance, EndpointArn=endpoint)
                started[role] = endpoint
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "InvalidResourceStateFault":
                    started[role] = endpoint  # a test of this endpoint already runs: wait for its result
                else:
                    problems.append(f"{direction}: DMS could not test the {role} endpoint {endpoint}: "
                                    f"{_describe(error)}")
            except BotoCoreError as error:
                problems.append(f"{direction}: DMS could not test the {role} endpoint {endpoint}: {error}")
        deadline = time.monotonic() + timeout_seconds
        while started:
            for role, endpoint in list(started.items()):
                connection = self._connection(instance, endpoint)
                status = (connection or {}).get("Status", "absent")
                if status == "successful":
                    del started[role]
                elif status != "testing":
                    reason = (connection or {}).get("LastFailureMessage") or "no failure message"
                    problems.append(f"{direction}: the {role} endpoint {endpoint} failed its connection test from "
                                    f"replication instance {instance} ({status}): {reason}")
                    del started[role]
            if not started:
                break
            if time.monotonic() >= deadline:
                problems += [f"{direction}: the {role} endpoint {endpoint}'s connection test had not ended after "
                             f"{timeout_seconds:g} s" for role, endpoint in started.items()]
                break
            time.sleep(self.poll_seconds)
        return problems

    def _start_request(self, direction: Direction, tasks: dict[str, dict], start_lsn: str) -> tuple[str, dict]:
        """Which task starts the direction from its slot, and the StartReplicationTask request that
        does it per the reference (module docstring)."""
        if direction.name == "forward" and _has_run(tasks["forward"]):
            if FORWARD_CDC not in tasks:
                raise ConfigurationError(
                    f"{direction}: the forward full-load-and-cdc task already ran, and DMS documents no way to start "
                    f"it again from a new slot (StartReplicationTask, {START_REFERENCE}: resume-processing replicates "
                    "from the last stop position, reload-target loads every table again): set "
                    "DMS_FORWARD_CDC_TASK_ARN to the forward-cdc task the migration stack creates")
            name = FORWARD_CDC
        else:
            name = direction.name
        task = tasks[name]
        if task["Status"] in REFUSED:
            raise ReplicationNotRunning(f"{direction}: DMS task {task['ReplicationTaskIdentifier']} cannot start: "
                                        f"{REFUSED[task['Status']]}")
        params = {"ReplicationTaskArn": self.task_arns[name], "StartReplicationTaskType": "start-replication"}
        if task["MigrationType"] == "cdc":
            params["CdcStartPosition"] = start_lsn
        elif task["MigrationType"] != "full-load-and-cdc" or _has_run(task):
            raise ConfigurationError(f"DMS task {task['ReplicationTaskIdentifier']} is a {task['MigrationType']} task "
                                     f"that {'ran before' if _has_run(task) else 'never ran'}: {direction} is started "
                                     "from a slot only by a cdc task, or by a full-load-and-cdc task's first run")
        return name, params

    def _tasks(self, direction: Direction) -> dict[str, dict]:
        names = [direction.name] + ([FORWARD_CDC] if direction.name == "forward" and FORWARD_CDC in self.task_arns
                                    else [])
        return {name: self._task(name, direction) for name in names}

    @staticmethod
    def _current(tasks: dict[str, dict]) -> tuple[str, dict]:
        """The task that stands for the direction: an active one, else the one that ran last."""
        rank = {RUNNING: 0, STARTING: 1, STOPPING: 2, UNAVAILABLE: 3, STOPPED: 4}
        return min(tasks.items(), key=lambda item: (rank[_state(item[1])], -_started_at(item[1])))

    @staticmethod
    def _detail(task: dict) -> str:
        detail = f"DMS task {task['ReplicationTaskIdentifier']} ({task.get('MigrationType')}) is {task['Status']}"
        if task.get("StopReason"):
            detail += f" ({task['StopReason']})"
        if task.get("LastFailureMessage"):
            detail += f"; last failure: {task['LastFailureMessage']}"
        return detail

    def _wait(self, direction: Direction, reached, wanted: str, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not reached():
            if time.monotonic() >= deadline:
                raise SwitchPending(f"{direction}: {self.state(direction).detail}, not {wanted} after "
                                    f"{timeout_seconds:g} s; the step can be retried")
            time.sleep(self.poll_seconds)

    def _task(self, name: str, direction: Direction) -> dict:
        arn = self.task_arns[name]
        try:
            # With the settings: WithoutSettings is documented to leave out "information about settings",
            # and MigrationType decides how the task is started.
            response = self.dms.describe_replication_tasks(
                Filters=[{"Name": "replication-task-arn", "Values": [arn]}])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundFault":
                response = {"ReplicationTasks": []}
            else:
                raise AwsUnavailable(f"DMS DescribeReplicationTasks failed: {_describe(error)}") from error
        except BotoCoreError as error:
            raise AwsUnavailable(f"DMS DescribeReplicationTasks failed: {error}") from error
        tasks = response["ReplicationTasks"]
        variable = f"DMS_{name.upper().replace('-', '_')}_TASK_ARN"
        if not tasks:
            raise ConfigurationError(f"no DMS task {arn} for {direction}: check {variable}")
        if not tasks[0].get("MigrationType"):
            raise ConfigurationError(f"DMS did not answer the MigrationType of task {arn} ({variable})")
        return tasks[0]

    def _connection(self, instance: str, endpoint: str) -> dict | None:
        try:
            response = self.dms.describe_connections(Filters=[{"Name": "endpoint-arn", "Values": [endpoint]}])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundFault":
                return None
            raise AwsUnavailable(f"DMS DescribeConnections failed: {_describe(error)}") from error
        except BotoCoreError as error:
            raise AwsUnavailable(f"DMS DescribeConnections failed: {error}") from error
        return next((connection for connection in response.get("Connections", [])
                     if connection.get("ReplicationInstanceArn") == instance), None)

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
