"""Lambda entry point of the rollback: parse the event and the environment, run the rollback,
shape the answer.

Statuses: ROLLED_BACK, ALREADY_ROLLED_BACK, PARTIAL (traffic on-prem, the writer rollback or the
notification did not complete, or whether the on-prem writer accepts writes cannot be told),
NO_WRITER (traffic on-prem, but the writer parameter names on-prem and on-prem is fenced: no side
accepts writes), FAILED (traffic not shifted), DRY_RUN, and IGNORED for SNS
messages that are not an alarm going into ALARM (an OK transition, or this function's own
notification coming back through the topic it is subscribed to), which must never trigger a
rollback.

A direct invocation always gets the answer. An SNS-triggered one that ends FAILED, PARTIAL or
NO_WRITER raises RollbackIncompleteError after notifying, so that Lambda retries the event (a retry
looks again) and, when every attempt fails, sends it to the dead-letter queue.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payment_common.errors import ConfigurationError
from payment_rollback import SERVICE_NAME
from payment_rollback.clients import AwsClients, create_clients
from payment_rollback.core import roll_back
from payment_rollback.errors import IgnoredEvent, InvalidEventError, RollbackIncompleteError
from payment_rollback.models import RollbackResult, Settings, Status, is_sns_delivery, parse_event

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(
    namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "PaymentMigration"), service=SERVICE_NAME
)


# The answers that leave work for a human (and, for an SNS delivery, make Lambda retry).
INCOMPLETE = (Status.FAILED, Status.PARTIAL, Status.NO_WRITER)


@cache
def aws_clients() -> AwsClients:
    # Created on first use and kept for the life of the execution environment. Not at import:
    # the endpoint (AWS_ENDPOINT_URL) must be read from the environment the invocation runs in.
    return create_clients()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    retry_on_failure = is_sns_delivery(event)
    errors: list[str] = []
    try:
        request = parse_event(event)
    except IgnoredEvent as ignored:
        result = RollbackResult(status=Status.IGNORED, actions=[f"ignored: {ignored}"])
        return _answer(result, retry_on_failure)
    except InvalidEventError as error:
        errors.append(f"invalid event: {error}")
    try:
        settings = Settings.from_environment(os.environ)
    except ConfigurationError as error:
        errors.append(f"invalid configuration: {error}")
    if errors:
        return _answer(RollbackResult(status=Status.FAILED, errors=errors), retry_on_failure)

    logger.info("rollback requested", extra={"request": asdict(request)})
    result = roll_back(
        request,
        settings,
        aws_clients(),
        seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
        function_name=context.function_name,
    )
    return _answer(result, retry_on_failure)


def _answer(result: RollbackResult, retry_on_failure: bool) -> dict[str, Any]:
    metrics.add_dimension(name="Status", value=result.status.value)
    metrics.add_metric(name="RollbackInvocations", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="TrafficShifted", unit=MetricUnit.Count, value=1 if result.traffic_shifted else 0
    )
    answer = result.to_dict()
    incomplete = result.status in INCOMPLETE
    (logger.error if incomplete else logger.info)("rollback finished", extra={"result": answer})
    if incomplete and retry_on_failure:
        # The metrics are flushed by log_metrics on the way out, exception or not.
        raise RollbackIncompleteError(
            f"rollback {result.status.value}: {'; '.join(result.errors)}; "
            f"weights {answer['weights_after'] or 'unknown'}, writer "
            f"{(result.writer_after or {}).get('writer', 'unknown')}"
        )
    return answer
