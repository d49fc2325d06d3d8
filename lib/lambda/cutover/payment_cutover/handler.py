"""Lambda entry point of the cutover controller's steps (called by the Step Functions state machine).

Event: {"step": <name>, "from": "onprem"|"aws", "to": "aws"|"onprem", ...step options}; "status",
"fence_non_writer" and "publish_metrics" take no sides. Returns the step's JSON-able result with
"step", "from", "to".

`scheduled_validation` (on the validation schedule) compares the replica with the writer: every row at
most every FULL_EVERY_SECONDS, otherwise the rows changed since the last PASSED checkpoint
(payment_cutover.steps.scheduled_validation), and puts ValidationFailed (service validation) as the
validation Lambda does.

`publish_metrics` (every minute, from an EventBridge schedule) puts the slot lag, retained WAL and
fence state of each side to CloudWatch in POWERTOOLS_METRICS_NAMESPACE (payment_cutover.monitoring);
its role needs cloudwatch:PutMetricData, conditioned on cloudwatch:namespace.

A failure raises a payment_cutover.errors or payment_common.errors class: its name is the Step
Functions error name.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payment_common.aws import client_config
from payment_common.errors import MigrationError
from payment_cutover import SERVICE_NAME, monitoring, steps
from payment_cutover.connections import open_connections, open_controller_connections
from payment_cutover.dms import DmsReplication
from payment_cutover.postgres_logical import PostgresLogicalReplication
from payment_cutover.settings import Settings, StepRequest, parse_event

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "PaymentMigration"), service=SERVICE_NAME)
VALIDATION_SERVICE = "validation"  # the service dimension of ValidationFailed (lib/stacks/monitoring.py)
CLIENT_CONFIG = client_config(total_max_attempts=3, read_timeout=10)

SIDED_STEPS = {
    "preflight": steps.preflight,
    "checkpoint": steps.checkpoint,
    "catch_up": steps.catch_up,
    "fence": steps.fence,
    "wait_replication": steps.wait_replication,
    "advance_sequences": steps.advance_sequences,
    "switch_replication": steps.switch_replication,
    "prove_fence": steps.prove_fence,
    "open": steps.open_writer,
    "abort": steps.abort,
}


@cache
def aws_clients() -> dict[str, Any]:
    # On first use, not at import: AWS_ENDPOINT_URL is read from the invocation's environment.
    return {name: boto3.client(name, config=CLIENT_CONFIG) for name in ("ssm", "secretsmanager", "dms", "cloudwatch")}


@logger.inject_lambda_context(log_event=True, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        return _handle(event)
    finally:
        # Only a failed step and a measured lag add metrics (publish_metrics puts its own through
        # CloudWatch): most steps have none, and flushing an empty set only prints a warning.
        if metrics.metric_set:
            metrics.flush_metrics()


def _handle(event: Any) -> dict[str, Any]:
    request = parse_event(event)  # InvalidEvent before anything is read or changed
    settings = Settings.from_environment(os.environ)
    logger.append_keys(step=request.step, source=request.source, target=request.target,
                       execution=event.get("execution"))
    try:
        result = run_step(request, settings, aws_clients())
    except MigrationError as error:
        logger.error("step failed", extra={"error": type(error).__name__, "detail": str(error)})
        metrics.add_metric(name=f"CutoverStepFailed{type(error).__name__}", unit=MetricUnit.Count, value=1)
        raise
    if result.get("lag_seconds") is not None:
        metrics.add_metric(name="ReplicationLagSeconds", unit=MetricUnit.Seconds, value=result["lag_seconds"])
    logger.info("step done", extra={"result": result})
    return result


def record_validation(result: dict[str, Any], namespace: str) -> None:
    """The scheduled validation's outcome as the validation Lambda reports its own (ValidationFailed,
    dimension service=validation): the validation-failed alarm hears both."""
    validation_metrics = EphemeralMetrics(namespace=namespace, service=VALIDATION_SERVICE)
    validation_metrics.add_metric(name="ValidationFailed", unit=MetricUnit.Count,
                                  value=0 if result.get("status") == "PASSED" else 1)
    validation_metrics.flush_metrics()


def run_step(request: StepRequest, settings: Settings, clients: dict[str, Any]) -> dict[str, Any]:
    """One step with this invocation's connections (all closed when it returns)."""
    if request.step == "publish_metrics":
        with ExitStack() as stack:
            databases, unreachable = open_controller_connections(settings, clients["secretsmanager"], stack)
            return {"step": request.step, "from": None, "to": None, **monitoring.publish_metrics(
                databases, clients["cloudwatch"], namespace=settings.metrics_namespace,
                slot_names=settings.slot_names, roles=settings.roles, unreachable=unreachable)}
    with ExitStack() as stack:
        databases, admin, publishers = open_connections(settings, clients["secretsmanager"], stack)
        if settings.driver == "dms":
            driver = DmsReplication(clients["dms"], task_arns=settings.task_arns, slot_names=settings.slot_names)
        else:
            driver = PostgresLogicalReplication(controller=databases, admin=admin, publisher_conninfo=publishers,
                                                slot_names=settings.slot_names, publication=settings.publication)
        controller = steps.Controller(
            databases=databases, driver=driver, ssm=clients["ssm"], writer_parameter=settings.writer_parameter,
            roles=settings.roles, schema=settings.schema, tables=settings.tables,
            wait_seconds=request.options.get("timeout_seconds", settings.wait_seconds),
            holder=request.execution or "step-function", max_changed_rows=settings.max_changed_rows,
            count_rows=settings.count_rows, full_every_seconds=settings.full_every_seconds,
            recheck_rounds=settings.recheck_rounds, recheck_seconds=settings.recheck_seconds,
            onprem_application=settings.onprem_application,
            onprem_application_role=settings.onprem_application_role,
            legacy_window_seconds=settings.legacy_window_seconds)
        if request.step == "status":
            result = steps.status(controller)
        elif request.step == "scheduled_validation":
            result = steps.scheduled_validation(controller)
            record_validation(result, settings.metrics_namespace)
        elif request.step == "fence_non_writer":
            result = steps.fence_non_writer(controller)
        elif request.step == "validate_changes":
            result = steps.validate_changes(controller, request.source, request.target,
                                            live_validation=request.options.get("live_validation"))
        elif request.step == "legacy_gate":
            result = steps.legacy_gate(controller, request.source, request.target,
                                       weights=request.options.get("weights", {}),
                                       since=request.options.get("since") or None)
        elif request.step == "set_writer":
            reason = request.options.get("reason") or f"data cutover {request.source} → {request.target}"
            result = steps.set_writer(controller, request.source, request.target, reason)
        else:
            result = SIDED_STEPS[request.step](controller, request.source, request.target)
    return {"step": request.step, "from": request.source, "to": request.target, **result}
