"""Lambda entry point behind the ALB (`payment_api.handler.lambda_handler`).

GET  /health          200 {"status": "ok"} | 503 {"status": "unavailable", "reason": ...}
POST /payments        201 created | 200 replay of the same Idempotency-Key and body (header
                      Idempotent-Replayed: true) | 400 bad header/body, naming the field |
                      409 key reused with another body | 422 unknown customer_id | 503
GET  /payments/{id}   200 | 400 id is not a UUID | 404 | 503

Every request goes to the current writer (payment_api.writer). A write the fenced old writer refuses
(read-only, or for lack of privilege once payment_writer is revoked) answers 503 {"error":
"writer_fenced"} with Retry-After: the client retries with its Idempotency-Key. A refusal for lack of
privilege on a side that is not fenced is a missing grant: 500, logged and counted
(DatabasePermissionDenied), not retryable.
"""

from __future__ import annotations

import json
import os
import re
import time
from http import HTTPStatus
from uuid import UUID

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import ALBResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError, parse

from payment_api import payments
from payment_api.errors import (
    DatabaseUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    PaymentApiError,
    PrivilegeRefused,
    WriterFenced,
)
from payment_api.models import PaymentRequest
from payment_api.writer import WriterDatabase
from payment_common.errors import ConfigurationError

SERVICE = "payment-api"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# the schema allows 1..255 characters; visible ASCII keeps keys unambiguous in logs and headers
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PaymentMigration"), service=SERVICE)
app = ALBResolver()

_database: WriterDatabase | None = None
SERVER_ERROR_METRIC = "ServerError"  # lib/stacks/monitoring.py alarms on these two
LATENCY_METRIC = "RequestLatency"
_fence_refusal = False  # this request was refused by a fence (one request at a time per environment)


def database() -> WriterDatabase:
    """The writer's connection holder, created on first use so a warm function keeps its connection."""
    global _database
    if _database is None:
        _database = WriterDatabase.from_environment()
    return _database


@app.get("/health")
def health() -> Response:
    try:
        database().run(payments.check_database)
    except (DatabaseUnavailable, ConfigurationError) as exc:
        metrics.add_metric(name="HealthCheckFailed", unit=MetricUnit.Count, value=1)
        return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": str(exc)})
    except Exception as exc:  # noqa: BLE001 - any failure of the check means "not healthy"
        logger.exception("health check failed")
        metrics.add_metric(name="HealthCheckFailed", unit=MetricUnit.Count, value=1)
        return _json(HTTPStatus.SERVICE_UNAVAILABLE,
                     {"status": "unavailable", "reason": f"database check failed ({type(exc).__name__})"})
    return _json(HTTPStatus.OK, {"status": "ok"})


@app.post("/payments")
def create_payment() -> Response:
    idempotency_key = _idempotency_key()
    request = _payment_request(app.current_event.decoded_body)
    try:
        result = database().run(lambda conn: payments.create_payment(conn, request, idempotency_key), write=True)
    except IdempotencyConflict:
        metrics.add_metric(name="IdempotencyConflict", unit=MetricUnit.Count, value=1)
        raise
    payment = result.payment
    logger.append_keys(payment_id=payment.payment_id)
    if result.created:
        metrics.add_metric(name="PaymentCreated", unit=MetricUnit.Count, value=1)
        logger.info("payment created", extra={"currency": payment.currency})
        return _json(HTTPStatus.CREATED, payment.to_json(), Location=f"/payments/{payment.payment_id}")
    metrics.add_metric(name="PaymentReplayed", unit=MetricUnit.Count, value=1)
    logger.info("idempotent retry answered with the existing payment")
    return _json(HTTPStatus.OK, payment.to_json(), Location=f"/payments/{payment.payment_id}",
                 **{"Idempotent-Replayed": "true"})


@app.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> Response:
    try:
        parsed_id = UUID(payment_id)
    except ValueError:
        raise InvalidRequest.field("payment_id", "must be a UUID") from None
    payment = database().run(lambda conn: payments.get_payment(conn, parsed_id))
    return _json(HTTPStatus.OK, payment.to_json())


@app.exception_handler(PaymentApiError)
def _domain_error(exc: PaymentApiError) -> Response:
    if isinstance(exc, WriterFenced):
        global _fence_refusal
        _fence_refusal = True
        metrics.add_metric(name="WriterFenced", unit=MetricUnit.Count, value=1)
        logger.info("write refused by a fenced database")
        return _json(exc.status, exc.to_body(), **{"Retry-After": str(exc.retry_after)})
    if isinstance(exc, PrivilegeRefused):
        # Not the fence (payment_api.writer checked): a grant is missing. Loud, and not retryable.
        metrics.add_metric(name="DatabasePermissionDenied", unit=MetricUnit.Count, value=1)
        logger.error("the database refused the operation for lack of privilege and the side is not fenced: "
                     "a grant is missing (schema/roles.sql)",
                     extra={"side": exc.side, "write": exc.write, "writer_member": exc.writer_member,
                            "detail": exc.detail})
        return _json(exc.status, exc.to_body())
    if isinstance(exc, DatabaseUnavailable):
        metrics.add_metric(name="DatabaseUnavailable", unit=MetricUnit.Count, value=1)
        logger.warning("database unavailable", extra={"reason": exc.reason})
    elif exc.status >= 500:
        logger.error("request failed", extra={"error": exc.code})
    else:
        logger.info("request refused", extra={"error": exc.code, "status": int(exc.status)})
    return _json(exc.status, exc.to_body())


@app.exception_handler(ConfigurationError)
def _configuration_error(exc: ConfigurationError) -> Response:
    """The environment, the secret or the writer parameter is wrong: a deployment fault. Unavailable
    to the client; not retryable for the operator (the log and the metric say so)."""
    metrics.add_metric(name="DatabaseUnavailable", unit=MetricUnit.Count, value=1)
    logger.error("configuration error", extra={"reason": str(exc)})
    return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "configuration_error", "message": str(exc)})


@app.not_found
def _no_route(exc: Exception) -> Response:
    return _json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": "no such route"})


@app.exception_handler(Exception)
def _unexpected_error(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal_error", "message": "internal error"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.APPLICATION_LOAD_BALANCER, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    global _fence_refusal
    _fence_refusal = False
    started = time.perf_counter()
    response = app.resolve(event, context)
    _request_metrics(response.get("statusCode", 500), time.perf_counter() - started)
    return response


def _request_metrics(status: int, seconds: float) -> None:
    """The API's own failure and latency figures, high-resolution (1 s in the embedded format), so
    the rollback's alarms can use 10-second periods: the ALB's and Lambda's own metrics are
    1-minute data. A write a fence refused is the cutover working, not a failure."""
    failed = status >= 500 and not _fence_refusal
    metrics.add_metric(name=SERVER_ERROR_METRIC, unit=MetricUnit.Count, value=1 if failed else 0,
                       resolution=MetricResolution.High)
    metrics.add_metric(name=LATENCY_METRIC, unit=MetricUnit.Milliseconds, value=round(seconds * 1000, 1),
                       resolution=MetricResolution.High)


def _idempotency_key() -> str:
    value = app.current_event.resolved_headers_field.get(IDEMPOTENCY_HEADER)
    if isinstance(value, list):  # target group with multi-value headers
        if len(value) > 1:
            raise InvalidRequest.field(IDEMPOTENCY_HEADER, "must be given once")
        value = value[0] if value else None
    if not value:
        raise InvalidRequest.field(IDEMPOTENCY_HEADER, "header is required: a unique key per payment, reused on retry")
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(value):
        raise InvalidRequest.field(IDEMPOTENCY_HEADER, "must be 1 to 255 visible ASCII characters")
    return value


def _payment_request(body: str | None) -> PaymentRequest:
    try:
        document = json.loads(body or "")
    except ValueError:
        raise InvalidRequest.field("body", "must be a JSON object") from None
    if not isinstance(document, dict):
        raise InvalidRequest.field("body", "must be a JSON object")
    try:
        return parse(event=document, model=PaymentRequest)
    except ValidationError as exc:
        # Only field names and what is wrong: never echo the input (it could be anything).
        raise InvalidRequest([
            (".".join(str(part) for part in error["loc"]) or "body", _problem(error))
            for error in exc.errors(include_url=False, include_input=False)
        ]) from None


def _problem(error: dict) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of a payment"
    if kind.startswith("uuid"):
        return "must be a UUID"
    if kind == "string_pattern_mismatch":
        return "must look like tok_ followed by 8 to 64 letters, digits or underscores"
    return error["msg"]


def _json(status: int, body: dict, **headers: str) -> Response:
    return Response(status_code=int(status), content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body), headers=headers or None)
