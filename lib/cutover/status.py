"""`status`: one screen of where the migration stands, from what the controller's own parts report.

- the traffic function {"action": "status"}: weights and phase, the writer, the alarms it watches;
- the step function {"step": "status"}: the fence of both sides, each replication direction's
  state, the slots (it reads both databases from inside the VPC);
- CloudWatch: the slot lag and retained WAL of each side (published every minute by the step
  function), and the scheduled validation's ValidationFailed;
- Step Functions: the recent executions of advance, cutover and writer-rollback, the running one's
  current state, and the last validation an execution ran.

A part that cannot be read is reported as such (`errors`); the rest is still shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lib.names import SIDES
from lib.cutover.aws import Aws, CliError
from lib.cutover.executions import describe, history, list_executions, parse_json
from lib.names import MACHINES, SIDES, Names

RECENT_EXECUTIONS = 5
# Each side is the source of one direction, whose slot lives there.
DIRECTIONS = {"forward": ("onprem", "aws"), "fallback": ("aws", "onprem")}
SLOT_METRICS = ("ReplicationSlotLagBytes", "RetainedWalBytes")
SLOT_METRICS_WINDOW = timedelta(minutes=15)
VALIDATION_METRIC_WINDOW = timedelta(hours=24)


def gather(aws: Aws, names: Names, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    status: dict[str, Any] = {"environment": names.env_name, "region": aws.region,
                              "at": now.isoformat(timespec="seconds"), "errors": []}

    def part(key: str, read: Callable[[], Any]) -> Any:
        try:
            status[key] = read()
        except CliError as error:
            status[key] = None
            status["errors"].append(f"{key}: {error}")
        return status[key]

    traffic = part("traffic", lambda: aws.invoke(names.traffic, {"action": "status"}))
    databases = part("databases", lambda: aws.invoke(names.steps, {"step": "status"}))
    status["writer"] = (traffic or {}).get("writer") or (databases or {}).get("writer")
    part("slot_metrics", lambda: _slot_metrics(aws, names, now))
    executions = part("executions", lambda: _executions(aws, names))
    part("validation", lambda: _validation(aws, names, executions or {}, now))
    return status


def _executions(aws: Aws, names: Names) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for label in MACHINES:
        arn = aws.state_machine_arn(names.machines[label])
        found[label] = []
        for execution in list_executions(aws.stepfunctions, arn, limit=RECENT_EXECUTIONS):
            entry = {"name": execution["name"], "execution_arn": execution["executionArn"],
                     "status": execution["status"], "started": _iso(execution["startDate"]),
                     "stopped": _iso(execution.get("stopDate"))}
            if execution["status"] == "RUNNING":
                entry["current_state"] = _current_state(history(aws.stepfunctions, execution["executionArn"]))
            elif execution["status"] != "SUCCEEDED" and not found[label]:
                # The newest one failed: why, without opening the console.
                description = describe(aws.stepfunctions, execution["executionArn"])
                entry["error"], entry["cause"] = description.get("error"), description.get("cause")
            found[label].append(entry)
    return found


def _current_state(events: list[dict[str, Any]]) -> str | None:
    for event in reversed(events):
        if "stateEnteredEventDetails" in event:
            return event["stateEnteredEventDetails"]["name"]
    return None


def _validation(aws: Aws, names: Names, executions: dict[str, list[dict[str, Any]]],
                now: datetime) -> dict[str, Any] | None:
    """The newest validation an execution ran (its Validate* task's answer), else the scheduled
    validation's latest ValidationFailed."""
    recent = sorted((entry for entries in executions.values() for entry in entries),
                    key=lambda entry: entry["started"], reverse=True)[:RECENT_EXECUTIONS]
    for entry in recent:
        found = _validation_in(history(aws.stepfunctions, entry["execution_arn"]))
        if found:
            return {**found, "source": f"execution {entry['name']}"}
    return _validation_metric(aws, names, now)


def _validation_in(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    state, found = None, None
    for event in events:
        if "stateEnteredEventDetails" in event:
            state = event["stateEnteredEventDetails"]["name"]
        elif event["type"] in ("TaskSucceeded", "LambdaFunctionSucceeded") and state and state.startswith("Validate"):
            details = event.get("taskSucceededEventDetails") or event.get("lambdaFunctionSucceededEventDetails") or {}
            output = parse_json(details.get("output")) or {}
            answer = output.get("Payload", output) if isinstance(output, dict) else None
            if isinstance(answer, dict) and "status" in answer:
                found = {"status": answer["status"], "message": answer.get("message"), "state": state,
                         "at": _iso(event["timestamp"])}
    return found


def _validation_metric(aws: Aws, names: Names, now: datetime) -> dict[str, Any] | None:
    environment = aws.function_environment(names.validation)
    namespace, service = environment.get("POWERTOOLS_METRICS_NAMESPACE"), environment.get("POWERTOOLS_SERVICE_NAME")
    if not namespace or not service:
        return None
    values = _latest(aws, namespace, "ValidationFailed", [{"Name": "service", "Value": service}],
                     now - VALIDATION_METRIC_WINDOW, now, period=300)
    if values is None:
        return None
    value, timestamp = values
    return {"status": "PASSED" if value == 0 else "FAILED or ERROR", "message": None, "state": None,
            "at": _iso(timestamp), "source": f"scheduled validation ({namespace} ValidationFailed={value:g})"}


def _slot_metrics(aws: Aws, names: Names, now: datetime) -> dict[str, dict[str, Any]]:
    namespace = aws.function_environment(names.steps).get("POWERTOOLS_METRICS_NAMESPACE")
    if not namespace:
        raise CliError(f"{names.steps} has no POWERTOOLS_METRICS_NAMESPACE: where its metrics go is unknown")
    metrics: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        metrics[side] = {}
        for metric in SLOT_METRICS:
            latest = _latest(aws, namespace, metric, [{"Name": "Side", "Value": side}], now - SLOT_METRICS_WINDOW, now)
            metrics[side][metric] = None if latest is None else latest[0]
            if latest is not None:
                metrics[side]["at"] = _iso(latest[1])
    return metrics


def _latest(aws: Aws, namespace: str, metric: str, dimensions: list[dict[str, str]], start: datetime,
            end: datetime, period: int = 60) -> tuple[float, datetime] | None:
    try:
        response = aws.cloudwatch.get_metric_data(
            MetricDataQueries=[{"Id": "m", "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                "Period": period, "Stat": "Maximum"}}],
            StartTime=start, EndTime=end + timedelta(minutes=1), ScanBy="TimestampDescending")
    except (ClientError, BotoCoreError) as error:
        raise CliError(f"cannot read {namespace} {metric}: {error}") from error
    points = sorted(zip(response["MetricDataResults"][0]["Timestamps"], response["MetricDataResults"][0]["Values"]),
                    reverse=True)
    if not points:
        return None
    timestamp, value = points[0]
    return value, timestamp


# -- the screen ---------------------------------------------------------------------------------------

LABEL = 13


def render(status: dict[str, Any]) -> str:
    lines = [f"payment-migration {status['environment']} ({status['region']})   {_short(status['at'])}", ""]

    def row(label: str, *texts: str) -> None:
        for index, text in enumerate(texts or ("",)):
            lines.append(f"{(label if index == 0 else ''):<{LABEL}}{text}".rstrip())

    traffic = status.get("traffic") or {}
    if traffic:
        weights = traffic.get("weights", {})
        phase = traffic.get("phase") or "(weights match no phase)"
        row("Traffic", f"{phase:<14}on-prem {weights.get('onprem', '?')} / aws {weights.get('aws', '?')}")
    else:
        row("Traffic", "unknown (see errors)")
    writer = status.get("writer")
    if writer:
        row("Writer", f"{writer['writer']:<14}epoch {writer['epoch']}   changed {writer.get('changed_at') or '?'}",
            f"{'':<14}reason: {writer.get('reason') or '-'}")
    else:
        row("Writer", "unknown (see errors)")

    databases = status.get("databases") or {}
    if databases:
        row("Fence", *(f"{side:<14}{_fence(databases.get('fence', {}).get(side))}" for side in SIDES))
        metrics = status.get("slot_metrics") or {}
        replication_rows = []
        for direction, (source, target) in DIRECTIONS.items():
            state = (databases.get("replication") or {}).get(direction) or {}
            side_metrics = metrics.get(source) or {}
            replication_rows.append(
                f"{direction:<9}{source} → {target:<8}{state.get('status', '?'):<10}"
                f"slot lag {_bytes(side_metrics.get('ReplicationSlotLagBytes'))}, "
                f"WAL held {_bytes(side_metrics.get('RetainedWalBytes'))}")
            if state.get("detail"):
                replication_rows.append(f"{'':<9}{state['detail']}")
        row("Replication", *replication_rows)
        slots = databases.get("slots") or {}
        row("Slots", *(f"{side:<14}{_slot(slots.get(side))}" for side in SIDES))
    else:
        row("Databases", "unknown (see errors)")

    validation = status.get("validation")
    if validation:
        at = f"  at {_short(validation['at'])}" if validation.get("at") else ""
        row("Validation", f"{validation['status']:<14}{validation['source']}{at}",
            *([f"{'':<14}{validation['message']}"] if validation.get("message") else []))
    elif any(error.startswith(("validation:", "executions:")) for error in status["errors"]):
        # What could not be read may hold a validation: "none" would be a guess.
        row("Validation", "unknown (see errors)")
    else:
        row("Validation", "none found (no execution validated, no scheduled result in 24 h)")

    alarms = traffic.get("alarms") if traffic else None
    if alarms:
        states = alarms.get("states", {})
        summary = "ALARM: " + ", ".join(alarms["in_alarm"]) if alarms.get("in_alarm") else "none in ALARM"
        row("Alarms", summary, *(f"{state:<18}{name}" for name, state in states.items()))
    else:
        row("Alarms", "unknown (see errors)")

    lines.append("")
    executions = status.get("executions")
    if executions is not None:
        row("Executions")
        for label in MACHINES:
            entries = executions.get(label) or []
            if not entries:
                lines.append(f"  {label:<17}-")
            for index, entry in enumerate(entries[:3]):
                where = f"  in {entry['current_state']}" if entry.get("current_state") else ""
                ended = f" → {_short(entry['stopped'])}" if entry.get("stopped") else ""
                lines.append(f"  {label if index == 0 else '':<17}{entry['name']:<42}{entry['status']:<11}"
                             f"{_short(entry['started'])}{ended}{where}")
                if entry.get("error"):
                    lines.append(f"  {'':<17}{entry['error']}: {entry.get('cause') or ''}"[:200])
    if status["errors"]:
        lines.append("")
        row("Errors", *status["errors"])
    return "\n".join(lines) + "\n"


def _fence(state: Any) -> str:
    if not state:
        return "?"
    if isinstance(state, dict):
        return ", ".join(f"{value} ({role})" for role, value in state.items())
    return str(state)


def _slot(info: Any) -> str:
    if not info:
        return "-"
    active = "active" if info.get("active") else "inactive"
    return f"{info.get('slot_name')}  {active}  confirmed {info.get('confirmed_flush_lsn') or '?'}"


def _bytes(value: Any) -> str:
    if value is None:
        return "?"
    value = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value}"


def _short(iso: str | None) -> str:
    if not iso:
        return "?"
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value else None
