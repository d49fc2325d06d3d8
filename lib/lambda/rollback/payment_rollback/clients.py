"""The rollback's and traffic steps' AWS clients, each with its bound on retries
(payment_common.aws: standard retries, 2 s to connect, 5 s to read). Worst case per call, every
attempt timing out: about 35 s for a Route 53 call (4 attempts), 24 s for any other (3).
Throttling alone, the realistic failure, costs seconds.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3

from payment_common.aws import client_config

ROUTE53_ATTEMPTS = 4
FOLLOW_UP_ATTEMPTS = 3
# Reading the fence and the replication direction (payment_rollback.writes): a look, not an action;
# an answer of "cannot tell" beats a long wait, so fewer attempts.
CHECK_ATTEMPTS = 2

# The traffic shift is what the rollback is for: it gets one more attempt than the follow-ups.
ROUTE53_CONFIG = client_config(total_max_attempts=ROUTE53_ATTEMPTS)
FOLLOW_UP_CONFIG = client_config(total_max_attempts=FOLLOW_UP_ATTEMPTS)
CHECK_CONFIG = client_config(total_max_attempts=CHECK_ATTEMPTS)


class AwsClients:
    """Each client is created on first use, so a handler pays only for the services it calls
    (creating a boto3 client costs tens of milliseconds)."""

    def __init__(self) -> None:
        self._cloudwatch_by_region: dict[str, Any] = {}

    @cached_property
    def route53(self) -> Any:
        return boto3.client("route53", config=ROUTE53_CONFIG)

    @cached_property
    def sns(self) -> Any:
        return boto3.client("sns", config=FOLLOW_UP_CONFIG)

    @cached_property
    def ssm(self) -> Any:
        return boto3.client("ssm", config=FOLLOW_UP_CONFIG)

    @cached_property
    def stepfunctions(self) -> Any:
        return boto3.client("stepfunctions", config=FOLLOW_UP_CONFIG)

    @cached_property
    def cloudwatch(self) -> Any:
        """CloudWatch in the function's own region."""
        return boto3.client("cloudwatch", config=FOLLOW_UP_CONFIG)

    @cached_property
    def metrics(self) -> Any:
        """CloudWatch in the function's own region, for reading the fence measurements."""
        return boto3.client("cloudwatch", config=CHECK_CONFIG)

    @cached_property
    def dms(self) -> Any:
        return boto3.client("dms", config=CHECK_CONFIG)

    def cloudwatch_in(self, region: str) -> Any:
        """CloudWatch in another region (Route 53 health-check alarms live in us-east-1)."""
        if region not in self._cloudwatch_by_region:
            self._cloudwatch_by_region[region] = boto3.client(
                "cloudwatch", region_name=region, config=FOLLOW_UP_CONFIG
            )
        return self._cloudwatch_by_region[region]


def create_clients() -> AwsClients:
    return AwsClients()
