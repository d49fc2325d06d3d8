"""Lambda entry: validate the target database against the source and report PASSED/FAILED/ERROR.

    aws lambda invoke --function-name <validation function> \
        --payload '{"tables": ["payments"], "max_diffs_per_table": 20}' out.json

Event keys, all optional (the environment is described in config.Settings):

    tables               table names ("table" or "schema.table"); default every table of SCHEMAS.
                         AWS DMS control tables (schema awsdms, tables awsdms_*) are never compared
    max_diffs_per_table  keys listed per kind of difference (0-10000, default 100); totals are exact
    recheck_seconds      wait before each recheck of the differing keys (0-300; default RECHECK_SECONDS)
    recheck_rounds       rechecks at most (0-20; default RECHECK_ROUNDS). Keys that become equal
                         in a recheck count per table as converged_in_flight, not as differences
    check_sequences      true: a target sequence whose next value its column already holds
                         (identity, serial) fails its table. Sequences are reported either way
    direction            "forward" (source = ONPREM_DB_* database, target = AURORA_DB_*) or "reverse"
                         (swapped: after the data cutover, the old writer is Aurora)
    sequences_only       true: compare only the sequences (check_sequences implied), not the
                         content: a catalog read and an index probe per owned column, whatever the
                         tables' size (the data cutover's check after it advanced them). The
                         report's tables then have source_rows null, and "scope": {"mode": "sequences"}

For tables beyond one invocation, the validation state machine (lib/workflows/validation.py) calls
the same function with an `action`:

    {"action": "plan", "chunk_rows": 20000000, <keys above>}
        -> {"status": "PLANNED", "items": [<a validate_chunk event per chunk>], ...}
    {"action": "validate_chunk", "chunk": <a plan's chunk>, <keys above but tables>}
        -> the report of that key range, naming its chunk
    {"action": "merge", "plan": <the plan's result>, "results": [<each item's report>]}
        -> the report a single run gives

A report: status, message, seconds, direction, recheck_rounds (run), and per table its status,
message, schema_differences, source_rows / target_rows (first pass), rows_checked, the
missing_in_target / extra_in_target / mismatched keys with their totals, converged_in_flight, and
sequences (column, name, source_position and target_position = the value the next nextval()
returns, target_column_max, problem).

Every validation and merge emits the EMF metric ValidationFailed (1 for FAILED or ERROR, 0 for
PASSED) in the namespace POWERTOOLS_METRICS_NAMESPACE (default PaymentMigration) with the dimension
service (default validation), plus MissingInTarget / ExtraInTarget / MismatchedRows per compared
table; plan and validate_chunk emit none (their merge does).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from payment_common.aws import client_config
from payment_common.errors import MigrationError

from .config import InvalidEventError, MergeRequest, PlanRequest, Request, Settings, event_action, parse_event
from .chunks import Chunk
from .databases import open_databases
from .engine import Status, ValidationError, ValidationOptions, plan, validate, validate_sequences
from .merge import failed_plan, merge

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "validation"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "PaymentMigration"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
secrets_manager = boto3.client("secretsmanager", config=client_config(total_max_attempts=3))


@logger.inject_lambda_context
def lambda_handler(event: Any, context) -> dict[str, Any]:
    action = "validate"
    try:
        action = event_action(event)
        result = run(parse_event(event))
    except (InvalidEventError, MigrationError, ValidationError) as error:
        result = error_result(str(error), action, event)
    except Exception as error:  # noqa: BLE001 - the alarm must hear of every failure, expected or not
        logger.exception("validation crashed")
        result = error_result(f"unexpected {type(error).__name__}: {error}", action, event)
    if action in ("validate", "merge"):  # a plan's chunks are counted once, by its merge
        record_metrics(result)
        metrics.flush_metrics()
    log = {Status.PASSED.value: logger.info, Status.FAILED.value: logger.warning,
           "PLANNED": logger.info}.get(result["status"], logger.error)
    log(result["message"], extra={"action": action, "status": result["status"],
                                  "tables": {name: table["message"] for name, table in result["tables"].items()}})
    return result


def run(request: Request) -> dict[str, Any]:
    if isinstance(request, MergeRequest):
        if request.plan_error is not None:
            return {**failed_plan(request.plan_error), "direction": request.direction}
        report = merge(request.chunks, request.results, request.max_diffs_per_table, request.check_sequences)
        return {**report.to_dict(), "direction": request.direction}
    validation = request.validation if isinstance(request, PlanRequest) else request
    settings = Settings.from_environment(os.environ)
    options = settings.options(validation)
    source, target = settings.databases(validation.direction)
    logger.info("connecting", extra={"source": str(source), "target": str(target), "schemas": settings.schemas,
                                     "tables": validation.tables,
                                     "chunk": validation.chunk.to_dict() if validation.chunk else None})
    with open_databases(settings, secrets_manager, validation.direction) as (source_conn, target_conn):
        if isinstance(request, PlanRequest):
            chunks = plan(source_conn, target_conn, options, request.chunk_rows)
            return plan_result(chunks, options, validation.direction)
        compare = validate_sequences if validation.sequences_only else validate
        return {**compare(source_conn, target_conn, options).to_dict(), "direction": validation.direction}


def plan_result(chunks: list[Chunk], options: ValidationOptions, direction: str) -> dict[str, Any]:
    """Each chunk as the complete event of its validate_chunk invocation, every option resolved
    (the environment's defaults included) so that all chunks run alike."""
    shared = {"max_diffs_per_table": options.max_diffs_per_table, "recheck_seconds": options.recheck_seconds,
              "recheck_rounds": options.recheck_rounds, "check_sequences": options.check_sequences,
              "direction": direction}
    per_table: dict[str, int] = {}
    for chunk in chunks:
        per_table[chunk.table] = chunk.count
    return {
        "status": "PLANNED",
        "message": f"{len(chunks)} chunks over {len(per_table)} tables",
        "direction": direction,
        "tables": {},  # the shape every response shares; the plan compares nothing yet
        "chunks_per_table": per_table,
        "items": [{"action": "validate_chunk", "chunk": chunk.to_dict(), **shared} for chunk in chunks],
    }


def error_result(message: str, action: str = "validate", event: Any = None) -> dict[str, Any]:
    result = {"status": Status.ERROR.value, "message": message, "tables": {}}
    if action == "plan":
        result["items"] = []  # the map over a failed plan runs nothing; its merge reports the error
    elif action == "validate_chunk" and isinstance(event, dict) and "chunk" in event:
        result["chunk"] = event["chunk"]  # lets the merge name the chunk that failed
    return result


def record_metrics(result: dict[str, Any]) -> None:
    metrics.add_metric(name="ValidationFailed", unit=MetricUnit.Count,
                       value=0 if result["status"] == Status.PASSED.value else 1)
    for name, table in result["tables"].items():
        if table["source_rows"] is None:
            continue  # content not compared: no counts to report
        table_metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
        table_metrics.add_dimension(name="table", value=name)
        table_metrics.add_metric(name="MissingInTarget", unit=MetricUnit.Count, value=table["missing_in_target_total"])
        table_metrics.add_metric(name="ExtraInTarget", unit=MetricUnit.Count, value=table["extra_in_target_total"])
        table_metrics.add_metric(name="MismatchedRows", unit=MetricUnit.Count, value=table["mismatched_total"])
        table_metrics.flush_metrics()
