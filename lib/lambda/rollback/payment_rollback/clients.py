"""AWS clients with bounded retries and timeouts.

Plain boto3 clients, so the standard AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>) redirect
them to any AWS-compatible endpoint. Retries are botocore's "standard" mode: exponential backoff
with jitter on throttling (Route 53's Throttling and PriorRequestNotComplete included), 5xx and
connection errors. "adaptive" adds client-side rate limiting, which only pays off for clients
sending many requests; this function sends a handful.

Worst case per call, every attempt timing out: attempts x (connect + read) + backoff
(at most 1 + 2 + 4 s for Route 53's 4 attempts, 1 + 2 s for the others' 3), about 35 s for a
Route 53 call and 24 s for DMS or SNS. Throttling alone, the realistic failure, costs seconds.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import boto3
from botocore.config import Config

CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5


def client_config(total_max_attempts: int) -> Config:
    return Config(
        retries={"mode": "standard", "total_max_attempts": total_max_attempts},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
    )


# The traffic shift is what the invocation is for: it gets one more attempt than the follow-ups.
ROUTE53_CONFIG = client_config(total_max_attempts=4)
FOLLOW_UP_CONFIG = client_config(total_max_attempts=3)


class AwsClients(NamedTuple):
    route53: Any
    dms: Any
    sns: Any


def create_clients() -> AwsClients:
    return AwsClients(
        route53=boto3.client("route53", config=ROUTE53_CONFIG),
        dms=boto3.client("dms", config=FOLLOW_UP_CONFIG),
        sns=boto3.client("sns", config=FOLLOW_UP_CONFIG),
    )
