"""Lambda entry point: parse the event and the environment, run the rollback, shape the answer.

Statuses: ROLLED_BACK, ALREADY_ROLLED_BACK, PARTIAL (traffic on-prem, a follow-up failed),
FAILED (traffic not shifted), DRY_RUN, and IGNORED for SNS messages that are not an alarm going
into ALARM (an OK transition, or this function's own notification coming back through the topic
it is subscribed to), which must never trigger a rollback.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payment_rollback import SERVICE_NAME
from payment_rollback.clients import AwsClients, create_clients
from payment_rollback.core import roll_back
from payment_rollback.errors import ConfigurationError, IgnoredEvent, InvalidEventError
from payment_rollback.models import RollbackResult, Settings, Status, parse_event

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(
    namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "PaymentMigration"), service=SERVICE_NAME
)


@cache
def aws_clients() -> AwsClients:
    # Created on first use and kept for the life of the execution environment. Not at import:
    # the endpoint (AWS_ENDPOINT_URL) must be read from the environment the invocation runs in.
    return create_clients()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    errors: list[str] = []
    try:
        request = parse_event(event)
    except IgnoredEvent as ignored:
        result = RollbackResult(status=Status.IGNORED, actions=[f"ignored: {ignored}"])
        return _answer(result)
    except InvalidEventError as error:
        errors.append(f"invalid event: {error}")
    try:
        settings = Settings.from_environment(os.environ)
    except ConfigurationError as error:
        errors.append(f"invalid configuration: {error}")
    if errors:
        return _answer(RollbackResult(status=Status.FAILED, errors=errors))

    logger.info("rollback requested", extra={"request": asdict(request)})
    clients = aws_clients()
    result = roll_back(request, settings, route53=clients.route53, dms=clients.dms, sns=clients.sns)
    return _answer(result)


def _answer(result: RollbackResult) -> dict[str, Any]:
    metrics.add_dimension(name="Status", value=result.status.value)
    metrics.add_metric(name="RollbackInvocations", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="TrafficShifted", unit=MetricUnit.Count, value=1 if result.traffic_shifted else 0
    )
    answer = result.to_dict()
    log = logger.error if result.status in (Status.FAILED, Status.PARTIAL) else logger.info
    log("rollback finished", extra={"result": answer})
    return answer
