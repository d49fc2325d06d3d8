"""Whether the writer accepts writes, seen from outside the VPC: the rollback cannot reach the
databases, so it reads what the cutover controller measures there and what DMS says.

- The fence of each side: the controller's `publish_metrics` step (payment_cutover.monitoring, every
  minute) puts `Fenced` (1 fenced, 0 open or partly open) with the dimension `Side`. The newest
  one-minute value of the last MEASUREMENT_WINDOW_SECONDS counts; none in that window is "cannot
  tell" (the monitoring stack's fence-unseen alarm fires on the same silence), and so is a minute
  holding both 0 and 1 (the fence moved while it was measured).
- The replication direction: the DMS tasks' statuses. Forward runs if either forward task (the
  full-load-and-cdc one, or the cdc-only one used after a writer rollback) runs; fallback is the
  Aurora → on-prem task.

The core signal is the writer's own fence: the writer parameter names a side that is fenced, so every
application that follows it has its writes refused — no writer, whatever the other side is. The
direction says how far the cutover that fenced it got, and catches a measurement older than the
switch: on-prem measured open while the replication already runs Aurora → on-prem (the switch keeps
on-prem fenced) is "cannot tell", never "open".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable
from payment_common.sides import AWS, ONPREM, SIDES
from payment_rollback.errors import describe_error

FENCED_METRIC = "Fenced"
SIDE_DIMENSION = "Side"
PERIOD_SECONDS = 60  # publish_metrics runs every minute; CloudWatch keeps standard-resolution minutes
MEASUREMENT_WINDOW_SECONDS = 300  # the monitoring stack's NO_WRITER_MINUTES: older is not "now"
# DMS task statuses in which the task replicates (or is about to): its direction runs.
RUNNING_TASK_STATUSES = frozenset({"running", "starting", "resuming"})
FORWARD_TASKS = ("forward", "forward-cdc")
FALLBACK_TASK = "fallback"

OPEN, FENCED, UNKNOWN = "open", "fenced", "unknown"


@dataclass(frozen=True)
class FenceReading:
    side: str
    state: str  # OPEN, FENCED or UNKNOWN
    measured_at: datetime | None  # the start of the minute the value is from
    detail: str  # how it was read, for the answer

    def describe(self) -> str:
        if self.measured_at is None:
            return f"{self.side} {self.state} ({self.detail})"
        return f"{self.side} {self.state} ({self.detail}, minute of {self.measured_at:%H:%M} UTC)"


@dataclass(frozen=True)
class Replication:
    """Each task's status by role (None: DMS does not know the ARN); `error` when DMS could not be
    read at all."""

    statuses: Mapping[str, str | None]
    identifiers: Mapping[str, str]
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.error is None

    @property
    def forward_running(self) -> bool:
        return any(self.statuses.get(role) in RUNNING_TASK_STATUSES for role in FORWARD_TASKS)

    @property
    def fallback_running(self) -> bool:
        return self.statuses.get(FALLBACK_TASK) in RUNNING_TASK_STATUSES

    @property
    def switched_to_fallback(self) -> bool:
        """Aurora → on-prem runs and on-prem → Aurora does not: a cutover's direction switch."""
        return self.known and self.fallback_running and not self.forward_running

    def describe(self) -> str:
        if self.error is not None:
            return f"replication unknown ({self.error})"
        tasks = ", ".join(
            f"{role} {self.identifiers.get(role, '?')} {status or 'not found'}" for role, status in self.statuses.items()
        )
        return f"replication: {tasks}"


@dataclass(frozen=True)
class WriteCheck:
    """The verdict on the writer side: OPEN (it accepts writes), FENCED (no writer) or UNKNOWN."""

    writer: str
    verdict: str
    fences: Mapping[str, FenceReading]
    replication: Replication
    why: str  # for UNKNOWN: what is missing or contradicts

    def seen(self) -> str:
        return "; ".join([*(reading.describe() for reading in self.fences.values()), self.replication.describe()])

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "fences": {side: {"state": reading.state,
                              "measured_at": reading.measured_at.isoformat() if reading.measured_at else None}
                       for side, reading in self.fences.items()},
            "replication": dict(self.replication.statuses) if self.replication.known else None,
        }


def read_fences(cloudwatch: Any, namespace: str, *, now: datetime | None = None) -> dict[str, FenceReading]:
    """Each side's newest Fenced minute within MEASUREMENT_WINDOW_SECONDS, in one GetMetricData call."""
    now = now or datetime.now(timezone.utc)
    # EndTime is exclusive: one period ahead, so that the minute under way (the newest measurement)
    # is in the answer.
    end = now + timedelta(seconds=PERIOD_SECONDS)
    queries = [
        {"Id": f"{side}_{stat.lower()}", "ReturnData": True,
         "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": FENCED_METRIC,
                                   "Dimensions": [{"Name": SIDE_DIMENSION, "Value": side}]},
                        "Period": PERIOD_SECONDS, "Stat": stat}}
        for side in SIDES for stat in ("Minimum", "Maximum")
    ]
    try:
        response = cloudwatch.get_metric_data(
            MetricDataQueries=queries, StartTime=now - timedelta(seconds=MEASUREMENT_WINDOW_SECONDS), EndTime=end,
            ScanBy="TimestampDescending")
    except (ClientError, BotoCoreError) as error:
        raise AwsUnavailable(f"CloudWatch GetMetricData ({namespace} {FENCED_METRIC}): {describe_error(error)}") from error
    series = {result["Id"]: _newest(result) for result in response.get("MetricDataResults", [])}
    window = f"{MEASUREMENT_WINDOW_SECONDS // 60} minutes"
    readings = {}
    for side in SIDES:
        low, high = series.get(f"{side}_minimum"), series.get(f"{side}_maximum")
        if low is None or high is None:
            readings[side] = FenceReading(side, UNKNOWN, None, f"no {FENCED_METRIC} measurement with "
                                          f"{SIDE_DIMENSION}={side} in {namespace} in the last {window}")
        elif low[1] != high[1]:
            readings[side] = FenceReading(side, UNKNOWN, high[0], f"{FENCED_METRIC} was both 0 and 1 in its newest minute")
        else:
            state = FENCED if high[1] >= 1 else OPEN
            readings[side] = FenceReading(side, state, high[0], f"{FENCED_METRIC}={high[1]:g}")
    return readings


def _newest(result: Mapping[str, Any]) -> tuple[datetime, float] | None:
    pairs = sorted(zip(result.get("Timestamps", []), result.get("Values", [])), reverse=True)
    return pairs[0] if pairs else None


def read_replication(dms: Any, task_arns: Mapping[str, str]) -> Replication:
    """The statuses of the named tasks in one DescribeReplicationTasks call. Never raises: a direction
    that cannot be read is reported as unknown (the fence is what decides)."""
    by_arn = {arn: role for role, arn in task_arns.items()}
    statuses: dict[str, str | None] = {role: None for role in task_arns}
    identifiers: dict[str, str] = {}
    try:
        response = dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": list(by_arn)}], WithoutSettings=True)
    except ClientError as error:
        # DMS answers ResourceNotFoundFault when no task matches the filter.
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundFault":
            return Replication(statuses, identifiers, error=f"DescribeReplicationTasks: {describe_error(error)}")
        response = {}
    except BotoCoreError as error:
        return Replication(statuses, identifiers, error=f"DescribeReplicationTasks: {describe_error(error)}")
    for task in response.get("ReplicationTasks", []):
        role = by_arn.get(task.get("ReplicationTaskArn"))
        if role is not None:
            statuses[role] = task.get("Status")
            identifiers[role] = task.get("ReplicationTaskIdentifier", "?")
    return Replication(statuses, identifiers)


def check_writer(writer: str, fences: Mapping[str, FenceReading], replication: Replication) -> WriteCheck:
    """Whether the side the writer parameter names accepts writes."""
    reading = fences[writer]
    if reading.state == FENCED:
        return WriteCheck(writer, FENCED, fences, replication, "")
    if reading.state == UNKNOWN:
        return WriteCheck(writer, UNKNOWN, fences, replication, reading.detail)
    if writer == ONPREM and replication.switched_to_fallback:
        return WriteCheck(writer, UNKNOWN, fences, replication,
                          "on-prem was measured open, but the replication runs Aurora → on-prem as it does after a "
                          "cutover's direction switch, which keeps on-prem fenced: the measurement may predate the "
                          "switch")
    return WriteCheck(writer, OPEN, fences, replication, "")


def how_far(check: WriteCheck) -> str:
    """What the direction says about the cutover that fenced the writer."""
    replication = check.replication
    if not replication.known:
        return "the replication direction could not be read"
    if replication.switched_to_fallback:
        text = "the replication already runs Aurora → on-prem: a cutover stopped after its direction switch"
    elif replication.forward_running:
        text = ("forward replication still runs: a cutover stopped after its fence and before the switch, and "
                "did not reopen on-prem")
    else:
        text = "neither direction runs"
    other = check.fences.get(AWS if check.writer == ONPREM else ONPREM)
    if other is not None and other.state == OPEN:
        text += (f"; {other.side} is open, but the writer parameter still names {check.writer}, so the "
                 "applications write there")
    return text
