"""Lambda entry: validate the target database against the source and report PASSED/FAILED/ERROR.

    aws lambda invoke --function-name <validation function> \
        --payload '{"tables": ["payments"], "max_diffs_per_table": 20}' out.json

Both event keys are optional; the environment is described in config.Settings. Every invocation
emits the EMF metric ValidationFailed (1 for FAILED or ERROR, 0 for PASSED) in the namespace
POWERTOOLS_METRICS_NAMESPACE (default PaymentMigration) with the dimension service (default
validation), plus MissingInTarget / ExtraInTarget / MismatchedRows per compared table.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from .config import ConfigurationError, InvalidEventError, Settings, ValidationRequest
from .databases import open_databases
from .engine import Status, ValidationError, validate

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "validation"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "PaymentMigration"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
secrets_manager = boto3.client("secretsmanager")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: Any, context) -> dict[str, Any]:
    try:
        request = ValidationRequest.from_event(event)
        settings = Settings.from_environment(os.environ)
        logger.info("validating", extra={"source": str(settings.source), "target": str(settings.target),
                                         "schemas": settings.schemas, "tables": request.tables})
        with open_databases(settings, secrets_manager) as (source, target):
            result = validate(source, target, settings.options(request)).to_dict()
    except (InvalidEventError, ConfigurationError, ValidationError) as error:
        result = error_result(str(error))
    except Exception as error:  # noqa: BLE001 - the alarm must hear of every failure, expected or not
        logger.exception("validation crashed")
        result = error_result(f"unexpected {type(error).__name__}: {error}")
    record_metrics(result)
    log = {Status.PASSED.value: logger.info, Status.FAILED.value: logger.warning}.get(result["status"], logger.error)
    log(result["message"], extra={"status": result["status"],
                                  "tables": {name: table["message"] for name, table in result["tables"].items()}})
    return result


def error_result(message: str) -> dict[str, Any]:
    return {"status": Status.ERROR.value, "message": message, "tables": {}}


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
