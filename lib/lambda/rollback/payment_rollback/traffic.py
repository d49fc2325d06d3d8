"""Lambda entry point of the controller's traffic steps: set_weights, check_alarms,
replication_alarms, status (events and answers: payment_rollback.traffic_models and .controls).
Handler: payment_rollback.traffic.lambda_handler. Errors raise; their class names are the error
names Step Functions retries or catches (payment_rollback.errors)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from payment_rollback import SERVICE_NAME
from payment_rollback.clients import AwsClients, create_clients
from payment_rollback.controls import run
from payment_rollback.traffic_models import parse_traffic_event

logger = Logger(service=SERVICE_NAME)


@cache
def aws_clients() -> AwsClients:
    # Created on first use, from the environment the invocation runs in (AWS_ENDPOINT_URL).
    return create_clients()


@logger.inject_lambda_context(log_event=True, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_traffic_event(event)
    answer = run(request, os.environ, aws_clients())
    logger.info("traffic step finished", extra={"answer": answer})
    return answer
